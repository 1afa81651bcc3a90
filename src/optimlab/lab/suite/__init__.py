"""``optimlab suite``: which optimizer, which learning rate, answered with AlgoPerf's protocol.

Modules, each using only the ones before it::

    problems  tracks  ->  measure  ->  studies  ->  protocol  ->  stats  summary  ->  verdict
        ->  export  plots  ->  report    runner  setup

* :mod:`.problems`: the workloads (a lab problem, its target, the suite's step budget);
* :mod:`.tracks`: what is compared (every registry optimizer, and AdamW + warm-up cosine);
* :mod:`.measure`: one run, timed per step (robust seconds), scored for the tuner;
* :mod:`.studies`: Optuna studies: open, objective from a study's spec, run trials;
* :mod:`.protocol`: tuning rounds, then the best and default settings re-run with seeds;
* :mod:`.summary` / :mod:`.stats`: intervals, performance profiles, scores;
* :mod:`.verdict`: the recommendation and its comparison with the baseline;
* :mod:`.export` / :mod:`.plots` / :mod:`.report`: the JSON summary and the HTML report;
* :mod:`.runner`: it all, with a progress bar; :mod:`.setup`: the command's options to a suite.
"""
