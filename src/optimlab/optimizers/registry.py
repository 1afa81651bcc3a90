"""Every optimizer of optimlab, one entry each: what the tests, benchmarks and docs iterate over.

An entry names the class, its independent reference (a drop-in twin in torch.optim, or a
reference written from the paper under ``tests/reference/``), the constructor configurations
to test, the tolerances it is held to, and what parameters it takes. Adding an optimizer is
its math (:mod:`optimlab.transforms`), its class (this package) and one entry here: the
parity, state-dict, property and speed tests, the step benchmark and the documentation table
then take it in without another change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from optimlab.optimizer import Optimizer
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

#: Relative error (tests/helpers.py defines it) allowed against the reference after 50 steps.
TOLERANCE = MappingProxyType({torch.float64: 1e-10, torch.float32: 1e-5})


@dataclass(frozen=True)
class Entry:
    """One optimizer and how it is checked."""

    cls: type[Optimizer]
    #: Where its numbers come from: ``"torch.optim.X"`` (a drop-in twin in the installed torch)
    #: or ``"tests.reference.module.Class"`` (a float64 reference written from the paper).
    reference: str
    #: The paper (or other primary source) of the algorithm.
    paper: str
    #: Constructor keyword arguments the tests run, each against the reference; together they
    #: reach every option (every flag, every branch a value of zero switches).
    configs: tuple[Mapping[str, Any], ...]
    tolerance: Mapping[torch.dtype, float] = field(default_factory=lambda: dict(TOLERANCE))
    #: Complex parameters are optimized (as pairs of reals, as torch.optim does).
    complex_params: bool = True
    #: The fewest dimensions a parameter may have (Muon: 2, matrices).
    min_dim: int = 0
    #: ``step`` needs a closure that re-evaluates the loss (L-BFGS).
    needs_closure: bool = False
    #: torch's twin allows one parameter group only (L-BFGS).
    single_group: bool = False
    #: Steps all parameters as one flat vector, its state on the first parameter (L-BFGS), rather
    #: than each parameter on its own: a missing gradient counts as zeros, it does not skip the
    #: parameter, and the other parameters have no state.
    one_vector: bool = False
    #: Every step is proportional to the group's current ``lr``: ``lr=0`` stands still, and an lr
    #: written into a group takes effect at the next step. False where ``lr`` only sets where the
    #: step sizes start (Rprop: each parameter's first step size, adapted from there).
    lr_scales_steps: bool = True
    #: Gradients are sparse (SparseAdam: embeddings' rows); the tests feed sparse gradients.
    sparse_grads: bool = False
    #: torch's own error cases (optim_db's ``optim_error_inputs_func``, by description) that this
    #: optimizer answers differently on purpose -> why.
    error_differences: Mapping[str, str] = field(default_factory=dict)
    #: torch's configurations (optim_db's ``optim_inputs_func``, by description) whose numbers
    #: differ from torch's on purpose, beyond :attr:`tolerance` -> (relative error allowed after
    #: a few steps, why).
    rounding_differences: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    #: The hyperparameters worth tuning, for the lab: name -> (low, high), searched on a log scale.
    search_space: Mapping[str, tuple[float, float]] = field(default_factory=lambda: {"lr": (1e-5, 1.0)})

    @property
    def name(self) -> str:
        return self.cls.__name__

    def __post_init__(self) -> None:
        object.__setattr__(self, "configs", tuple(MappingProxyType(dict(c)) for c in self.configs))
        object.__setattr__(self, "tolerance", MappingProxyType(dict(self.tolerance)))
        object.__setattr__(self, "search_space", MappingProxyType(dict(self.search_space)))
        object.__setattr__(self, "error_differences", MappingProxyType(dict(self.error_differences)))
        object.__setattr__(self, "rounding_differences", MappingProxyType(dict(self.rounding_differences)))

    def twin(self) -> type[torch.optim.Optimizer] | None:
        """The torch.optim class this is a drop-in for, if the installed torch has it."""
        module, _, name = self.reference.rpartition(".")
        return getattr(torch.optim, name, None) if module == "torch.optim" else None


ENTRIES: tuple[Entry, ...] = (
    Entry(SGD, "torch.optim.SGD", "Robbins & Monro 1951; Polyak 1964; Sutskever et al. 2013", (
        dict(lr=0.1),
        dict(lr=0.05, momentum=0.9, weight_decay=0.01),
        dict(lr=0.05, momentum=0.9, dampening=0.9),
        dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True),
    ), search_space={"lr": (1e-4, 1.0), "momentum": (0.5, 0.99)}),
    Entry(Adagrad, "torch.optim.Adagrad", "Duchi, Hazan & Singer 2011", (
        dict(lr=0.1),
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
        dict(lr=0.1, eps=1e-6, maximize=True),
    ), search_space={"lr": (1e-3, 1.0)}),
    Entry(RMSprop, "torch.optim.RMSprop", "Tieleman & Hinton 2012; Graves 2013", (
        dict(lr=0.01),
        dict(lr=0.01, alpha=0.9, momentum=0.9, weight_decay=0.01),
        dict(lr=0.01, centered=True, maximize=True),
        dict(lr=0.01, centered=True, momentum=0.5),
    ), search_space={"lr": (1e-5, 0.1)}),
    Entry(Adam, "torch.optim.Adam", "Kingma & Ba 2015; Reddi et al. 2018", (
        dict(lr=0.01),
        dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ), search_space={"lr": (1e-5, 0.1), "beta2": (0.9, 0.9999)}),
    Entry(AdamW, "torch.optim.AdamW", "Loshchilov & Hutter 2019", (
        dict(lr=0.01),
        dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True),
    ), search_space={"lr": (1e-5, 0.1), "weight_decay": (1e-4, 0.3)}),
    Entry(Adadelta, "torch.optim.Adadelta", "Zeiler 2012", (
        dict(),
        dict(lr=0.5, rho=0.95, weight_decay=0.1),
        dict(eps=1e-4, weight_decay=0.1, maximize=True),
    ), search_space={"lr": (1e-2, 10.0)}),
    # torch.optim.Adafactor refuses complex parameters. The 3-D parameter of the test is
    # factored over its last two dimensions; lr=0.5 reaches rho_t = 1/sqrt(t) (t > 4), and the
    # large eps reach both floors (eps1 on the variance estimate, eps2 on the parameter's RMS).
    Entry(Adafactor, "torch.optim.Adafactor", "Shazeer & Stern 2018", (
        dict(),
        dict(lr=0.01, weight_decay=0.1),
        dict(weight_decay=0.1, maximize=True),
        dict(beta2_decay=-1.0, d=1.5),
        dict(lr=0.5, eps=(1.0, 2.0)),
    ), complex_params=False, search_space={"lr": (1e-4, 1.0)}),
    # t0=10 starts the averaging (mu < 1) within the 50 steps; lambd=0 skips the decay term.
    Entry(ASGD, "torch.optim.ASGD", "Polyak & Juditsky 1992; Bottou 2012", (
        dict(),
        dict(lr=0.02, lambd=0.1),
        dict(t0=10, alpha=0.5, weight_decay=0.1),
        dict(lambd=0.0, t0=0, maximize=True),
    ), search_space={"lr": (1e-4, 1.0)}),
    # The last configuration's bounds are reached from both sides.
    Entry(Rprop, "torch.optim.Rprop", "Riedmiller & Braun 1993", (
        dict(),
        dict(lr=2e-4, etas=(0.5, 1.5)),
        dict(step_sizes=(2e-6, 100), maximize=True),
        dict(lr=0.1, step_sizes=(0.01, 0.2)),
    ), lr_scales_steps=False, search_space={"lr": (1e-5, 0.1)}),
    Entry(NAdam, "torch.optim.NAdam", "Dozat 2016", (
        dict(lr=0.01),
        dict(lr=0.01, betas=(0.8, 0.99), momentum_decay=6e-3, weight_decay=0.1),
        dict(lr=0.01, momentum_decay=0, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        dict(lr=0.01, eps=1e-6, weight_decay=0.1, maximize=True),
    ), search_space={"lr": (1e-5, 0.1), "beta2": (0.9, 0.9999)}),
    Entry(RAdam, "torch.optim.RAdam", "Liu et al. 2020", (
        dict(lr=0.01),  # momentum SGD for 5 steps, then rectified
        dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        # rho_inf = 4: never rectified, and the rectifier's formula would divide by zero
        dict(lr=0.01, betas=(0.9, 0.6), maximize=True),
    ), search_space={"lr": (1e-5, 0.1), "beta2": (0.9, 0.9999)}),
    Entry(Adamax, "torch.optim.Adamax", "Kingma & Ba 2015", (
        dict(lr=0.01),
        dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, maximize=True),
    ), search_space={"lr": (1e-4, 0.1)}),
    Entry(Muon, "torch.optim.Muon", "Jordan et al. 2024; Liu et al. 2025", (
        dict(),
        # A float64 tensor: torch rounds lr * ratio and 1 - lr * weight_decay to the tensor's dtype,
        # optimlab computes them in double (a float32 lr: tests/test_muon.py).
        dict(lr=torch.tensor(0.02, dtype=torch.float64), weight_decay=0.2, momentum=0.8),
        dict(lr=0.02, nesterov=False, momentum=0.0, weight_decay=0.0, adjust_lr_fn="match_rms_adamw"),
        dict(lr=0.02, ns_steps=6, ns_coefficients=(3.4, -4.7, 2.0), eps=1e-3, adjust_lr_fn="original"),
    ), complex_params=False, min_dim=2, search_space={"lr": (1e-4, 0.1), "momentum": (0.8, 0.99)},
        error_differences={"only support 2D parameters": "a weight of more than two dimensions (a convolution "
                           "kernel) is orthogonalized as the matrix (shape[0], -1)"},
        rounding_differences={"Tensor lr": (1e-6, "torch rounds lr * ratio and 1 - lr * weight_decay to the float32 "
                                            "tensor lr's dtype every step; optimlab computes them in double")}),
    Entry(LBFGS, "torch.optim.LBFGS", "Liu & Nocedal 1989; Nocedal & Wright 2006", (
        # A few iterations per step, so that the run is still converging when its state is saved.
        dict(),
        dict(max_iter=1),
        dict(lr=0.5, history_size=3, max_iter=3),
        dict(lr=torch.tensor(0.1), tolerance_grad=1e-6, max_iter=4, max_eval=30),
        dict(line_search_fn="strong_wolfe", max_iter=2, max_eval=10),
        dict(line_search_fn="strong_wolfe", history_size=2, max_iter=5, max_eval=6, tolerance_change=1e-6),
    ), needs_closure=True, single_group=True, one_vector=True, search_space={"lr": (1e-2, 1.0)}),
    # Sparse gradients over the first dimension (an embedding's rows), some rows named twice,
    # some gradients naming none.
    Entry(SparseAdam, "torch.optim.SparseAdam", "Kingma & Ba 2015 (lazy on sparse rows, as torch.optim.SparseAdam)", (
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        # A float64 tensor: torch rounds lr * sqrt(1 - beta2^t) / (1 - beta1^t) to the tensor's dtype,
        # optimlab computes it in double (optim_db's float32 one: rounding_differences).
        dict(lr=torch.tensor(0.01, dtype=torch.float64), maximize=True),
    ), complex_params=False, min_dim=1, sparse_grads=True, search_space={"lr": (1e-4, 0.1)},
        rounding_differences={"Tensor lr": (1e-6, "torch rounds the step size lr * sqrt(1 - beta2^t) / (1 - beta1^t) "
                                            "to the float32 tensor lr's dtype every step; optimlab computes it in "
                                            "double")}),
)

#: name -> entry, in the order of :data:`ENTRIES`.
REGISTRY: Mapping[str, Entry] = MappingProxyType({entry.name: entry for entry in ENTRIES})


def entry(name: str) -> Entry:
    """The entry of the optimizer called ``name`` (its class name, e.g. ``"AdamW"``)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no optimizer {name!r} in optimlab's registry; known: {', '.join(REGISTRY)}") from None
