"""Running: runs, sweeps and the results store.

One run of a problem (:mod:`.runs`), resumable from its checkpoints (:mod:`.checkpoint`), with a
learning-rate schedule by name (:mod:`.schedule_specs`); sweeps over optimizers, learning rates
and seeds (:mod:`.sweep`); the SQLite store that keeps every run (:mod:`.store`); the
``optimlab finetune`` command (:mod:`.finetune_run`) and the argument types of the commands
(:mod:`.arguments`). Built on :mod:`optimlab.lab.problems` and :mod:`optimlab.lab.training`.
"""
