"""``optimlab suite``: which optimizer, which learning rate, answered with AlgoPerf's protocol.

Modules, each using only the ones before it::

    problems  tracks  ->  measure  ->  studies    storage  ->  workers    ->  protocol
        ->  stats  summary  ->  verdict  ->  export  plots  ->  report    runner  setup

* :mod:`.problems`: the workloads (a lab problem, its target, the suite's step budget);
* :mod:`.tracks`: what is compared (every registry optimizer, and AdamW + warm-up cosine);
* :mod:`.measure`: one run, timed per step (robust seconds), scored for the tuner;
* :mod:`.studies`: a tuning study's spec, and its objective, pruner and TPE options rebuilt from it;
* :mod:`.storage`: the storage URL checked, the storage opened with heartbeats, studies opened or joined;
* :mod:`.workers`: trials claimed under a lock, so any number of processes share a study's budget;
* :mod:`.protocol`: tuning rounds, then the best and default settings re-run with seeds;
* :mod:`.summary` / :mod:`.stats`: intervals, performance profiles, scores;
* :mod:`.verdict`: the recommendation and its comparison with the baseline;
* :mod:`.export` / :mod:`.plots` / :mod:`.report`: the JSON summary and the HTML report;
* :mod:`.runner`: it all, with a progress bar; :mod:`.setup`: the command's options to a suite.
"""
