"""The optimizers as named recipes: torch.optim's signatures and defaults, optimlab's math.

Each class only says which transforms a parameter group chains together; the math lives in
:mod:`optimlab.transforms` and the loop in :mod:`optimlab.engine`. Batch, stochastic and
mini-batch gradient descent are all :class:`SGD`: they differ in the batches fed to it.
Every optimizer is one entry of :data:`optimlab.optimizers.registry.REGISTRY`.

``foreach`` and ``fused`` are accepted (and stored, so checkpoints match torch's) but do not
choose the code path: optimlab's engine chooses. What each of torch's implementation flags
(these two, ``differentiable``, ``capturable``) does here: :mod:`optimlab.flags`.
"""

from optimlab.optimizers.adadelta import Adadelta
from optimlab.optimizers.adafactor import Adafactor
from optimlab.optimizers.adagrad import Adagrad
from optimlab.optimizers.adam import Adam, AdamW
from optimlab.optimizers.adam_variants import Adamax, NAdam, RAdam
from optimlab.optimizers.asgd import ASGD
from optimlab.optimizers.lbfgs import LBFGS
from optimlab.optimizers.muon import Muon
from optimlab.optimizers.rmsprop import RMSprop
from optimlab.optimizers.rprop import Rprop
from optimlab.optimizers.sgd import SGD
from optimlab.optimizers.sparse_adam import SparseAdam

__all__ = ["ASGD", "LBFGS", "SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Muon", "NAdam", "RAdam",
           "RMSprop", "Rprop", "SparseAdam"]
