"""The lab: compare optimizers on real problems.

Four parts, each importing only the ones before it:

* :mod:`~optimlab.lab.training`: the one training loop, the data it trains on, metrics, the
  optimizers by name (the zoo) and the ``name:key=value`` specs;
* :mod:`~optimlab.lab.problems`: the problems (data + model + loss + metric + target + budget),
  the fine-tuning problems and the catalog of every problem by name;
* :mod:`~optimlab.lab.running`: runs, sweeps, checkpoints, schedules by name and the SQLite
  store that keeps every run;
* :mod:`~optimlab.lab.report`: the sweep report (tables, plots, HTML, recommendation), the
  learning-rate range test and 2-D trajectories.

This module exports the names most code needs.
"""

from optimlab.lab.problems.catalog import PROBLEMS, get_problem
from optimlab.lab.problems.problem import Problem
from optimlab.lab.running.runs import RunConfig, RunResult, execute
from optimlab.lab.running.store import Store
from optimlab.lab.running.sweep import SweepResult, SweepSpec, run_sweep, summarize
from optimlab.lab.training.data import DataNotFoundError, Dataset, Split, mnist
from optimlab.lab.training.loop import (
    Evaluation,
    Loop,
    StepRecord,
    StopReason,
    Target,
    TrainResult,
    train,
)
from optimlab.lab.training.metrics import accuracy, mean_loss
from optimlab.lab.training.specs import UnknownNameError
from optimlab.lab.training.zoo import OPTIMIZERS, make_optimizer

__all__ = ["OPTIMIZERS", "PROBLEMS", "DataNotFoundError", "Dataset", "Evaluation", "Loop", "Problem", "RunConfig",
           "RunResult", "Split", "StepRecord", "StopReason", "Store", "SweepResult", "SweepSpec", "Target",
           "TrainResult", "UnknownNameError", "accuracy", "execute", "get_problem", "make_optimizer", "mean_loss",
           "mnist", "run_sweep", "summarize", "train"]
