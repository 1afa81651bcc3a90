"""The lab: compare optimizers on real problems.

Problems (:mod:`~optimlab.lab.problems`) are trained by the one training loop
(:mod:`~optimlab.lab.loop`) in runs (:mod:`~optimlab.lab.runs`) that sweeps
(:mod:`~optimlab.lab.sweep`) organise and a SQLite store (:mod:`~optimlab.lab.store`) keeps.
"""

from optimlab.lab.catalog import PROBLEMS, get_problem
from optimlab.lab.data import DataNotFoundError, Dataset, Split, mnist
from optimlab.lab.loop import Evaluation, Loop, StepRecord, StopReason, Target, TrainResult, train
from optimlab.lab.metrics import accuracy, mean_loss
from optimlab.lab.problems import Problem
from optimlab.lab.runs import RunConfig, RunResult, execute
from optimlab.lab.specs import UnknownNameError
from optimlab.lab.store import Store
from optimlab.lab.sweep import SweepResult, SweepSpec, run_sweep, summarize
from optimlab.lab.zoo import OPTIMIZERS, make_optimizer

__all__ = ["OPTIMIZERS", "PROBLEMS", "DataNotFoundError", "Dataset", "Evaluation", "Loop", "Problem", "RunConfig",
           "RunResult", "Split", "StepRecord", "StopReason", "Store", "SweepResult", "SweepSpec", "Target",
           "TrainResult", "UnknownNameError", "accuracy", "execute", "get_problem", "make_optimizer", "mean_loss",
           "mnist", "run_sweep", "summarize", "train"]
