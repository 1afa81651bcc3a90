"""Training: one model trained by one optimizer on one split, by the lab's one training loop.

The in-memory data sets (:mod:`.data`), the loop (:mod:`.loop`), metrics over a whole split
(:mod:`.metrics`), the optimizers by name with their learning-rate grids (:mod:`.zoo`), and the
``name:key=value`` spec strings everything in the lab is named by (:mod:`.specs`). Imports no other
part of the lab.
"""
