"""optimlab: the gradient-descent family of optimizers, written once, verified, fast.

Drop-in :class:`torch.optim.Optimizer` classes whose math is a chain of small per-tensor
transforms (:mod:`optimlab.transforms`) run by one engine (:mod:`optimlab.engine`).
"""

from optimlab.core import Chain, Transform, chain
from optimlab.optimizer import Optimizer
from optimlab.optimizers import LBFGS, SGD, Adagrad, Adam, AdamW, Muon, RMSprop

__version__ = "0.1.0"

__all__ = ["LBFGS", "SGD", "Adagrad", "Adam", "AdamW", "Chain", "Muon", "Optimizer", "RMSprop", "Transform", "chain"]
