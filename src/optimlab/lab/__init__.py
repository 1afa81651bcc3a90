"""The lab: datasets, the training loop, and metrics, for comparing optimizers on real problems."""

from optimlab.lab.data import DataNotFoundError, Dataset, Split, mnist
from optimlab.lab.loop import Evaluation, StepRecord, StopReason, TrainResult, train
from optimlab.lab.metrics import accuracy, mean_loss

__all__ = ["DataNotFoundError", "Dataset", "Evaluation", "Split", "StepRecord", "StopReason", "TrainResult",
           "accuracy", "mean_loss", "mnist", "train"]
