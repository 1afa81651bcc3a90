"""optimlab: the gradient-descent family of optimizers, written once, verified, fast.

Drop-in :class:`torch.optim.Optimizer` classes whose math is a chain of small per-tensor
transforms (:mod:`optimlab.transforms`) run by one engine (:mod:`optimlab.engine`).
"""

from optimlab.core import Chain, Transform, chain
from optimlab.optimizer import Optimizer
from optimlab.optimizers import (
    ASGD,
    LBFGS,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Muon,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
    SparseAdam,
)

__version__ = "0.1.0"

__all__ = ["ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Chain", "LBFGS", "Muon", "NAdam", "Optimizer", "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam", "Transform", "chain"]
