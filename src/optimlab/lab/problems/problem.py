"""The problems optimizers are compared on: data + model + loss + metric + target + budget.

Each :class:`Problem` follows AlgoPerf's idea of a workload: a validation metric value to reach
(the *target*) within a step budget, with the default batch size and evaluation interval. All
the data is real and ships inside installed packages (:mod:`optimlab.lab.training.data`); the synthetic
problems (the quadratic and the 2-D functions) need none.

  name             what                                                  target (validation)   budget
  linreg           y = 2x on x = 1..5, model y = w x, MSE, full batch      loss <= 1e-6          500
  linreg-diabetes  linear regression, scikit-learn's diabetes data          R^2 >= 0.48           1000
  logreg-cancer    logistic regression, breast-cancer data, batch 32        accuracy >= 0.98      1000
  mlp-digits       MLP 64-64-10, scikit-learn's 8x8 digits, batch 32        accuracy >= 0.95      2000
  softmax-mnist    softmax regression 784 -> 10, MNIST, batch 128           accuracy >= 0.915     2000
  mlp-mnist        MLP 784-128-10, MNIST, batch 128 (dropout, L2 options)   accuracy >= 0.97      2000
  cnn-fashion      2-layer conv net, Fashion-MNIST, batch 128               accuracy >= 0.87      1500
  quadratic        rotated quadratic, condition number cond (100)          f <= 1e-6 (f(w0)=1)   20 x cond
  rosenbrock       Rosenbrock's valley from (-1.2, 1), jittered by seed     f <= 1e-3             5000

Budgets are optimizer steps. The MNIST and Fashion-MNIST models standardize their input pixels
(:class:`Standardize`). Parameters are given as ``name:key=value,...``, e.g.
``quadratic:cond=1000`` or ``mlp-mnist:dropout=0.2,l2=0.0001``. The fine-tuning problems are in
:mod:`optimlab.lab.problems.finetune`, which builds on this module; every problem, by name, is in
:mod:`optimlab.lab.problems.catalog` (:func:`~optimlab.lab.problems.catalog.get_problem`).

Each problem records, per optimizer of :mod:`optimlab.lab.training.zoo`, its best measured learning rate
(``lrs``: the rate a sweep from seed 0 picked, by the sweep's own rule, from grids half a decade
apart; the measurements are in the comments beside each problem). Every one reaches its target
within the budget except AdamW on linreg and SGD on rosenbrock (see there). Sweeps centre their
grids on these rates.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optimlab.lab.problems.functions2d import Function2D, get_function
from optimlab.lab.training import data as lab_data
from optimlab.lab.training.data import Dataset, Split
from optimlab.lab.training.loop import LossFn, Penalty, Target
from optimlab.lab.training.specs import format_spec
from optimlab.lab.training.zoo import get_optimizer, grid_around

#: ``metric_fn(outputs, targets)`` -> the problem's metric, from the model's outputs on a whole split.
MetricFn = Callable[[Tensor, Tensor], float]
#: Rows per forward pass when evaluating.
EVAL_CHUNK = 500


@dataclass(frozen=True, eq=False)
class Problem:
    """A workload: how to get the data and a fresh model, what to minimise, what to reach.

    ``metric`` is the name of the validation metric, ``target`` the value to reach
    (``>=`` when ``higher_is_better``, else ``<=``), ``max_steps`` the budget, ``batch_size``
    the default batch (None: full batch), ``eval_every`` the evaluation interval in steps.
    ``metric_fn`` computes the metric (None when the metric is the loss itself). ``penalty``
    is a term of the objective added to every training batch's loss (e.g. L2); the reported
    validation and test losses are the data loss alone. ``lrs`` maps optimizer names (of
    :mod:`optimlab.lab.training.zoo`) to a measured learning rate that reaches the target.
    ``revision``: bump it when the data or the model change in a way :attr:`fingerprint`
    cannot see (it sees the model's architecture, the functions and the target, not the data).

    Fine-tuning problems also set: ``param_groups(model, lr)`` -> the optimizer's param groups
    (e.g. a 10x learning rate for a new head, no weight decay for biases and norms; None: every
    parameter at ``lr``), ``hooks(model)`` -> training-loop hooks for each run (e.g. gradient
    clipping), ``schedule``, the schedule spec for runs that name none, and the loop's
    ``accumulate`` (micro-batches per step) and ``autocast`` (dtype or None).
    """

    name: str
    description: str
    loader: Callable[[], Dataset]
    model: Callable[[], nn.Module]
    loss_fn: LossFn
    metric: str
    higher_is_better: bool
    target: float
    max_steps: int
    batch_size: int | None
    eval_every: int
    metric_fn: MetricFn | None = None
    penalty: Penalty | None = None
    lrs: Mapping[str, float] = field(default_factory=dict)
    revision: int = 0
    param_groups: Callable[[nn.Module, float], list[dict[str, Any]]] | None = None
    hooks: Callable[[nn.Module], list[Any]] | None = None
    schedule: str | None = None
    accumulate: int = 1
    autocast: torch.dtype | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lrs", MappingProxyType(dict(self.lrs)))
        if (self.metric == "loss") != (self.metric_fn is None):
            raise ValueError(f"problem {self.name!r}: give metric_fn exactly when the metric is not the loss")

    def load(self) -> Dataset:
        """The train/valid/test splits (read once per process)."""
        return self.loader()

    def optimizer_params(self, model: nn.Module, lr: float) -> list[Any]:
        """What the optimizer steps: this problem's param groups at ``lr`` (fine-tuning: the body
        at ``lr``, the head faster), else every parameter of ``model``."""
        return list(model.parameters()) if self.param_groups is None else self.param_groups(model, lr)

    def loop_hooks(self, model: nn.Module) -> list[Any]:
        """This problem's training-loop hooks for ``model`` (e.g. gradient clipping), or none."""
        return [] if self.hooks is None else self.hooks(model)

    def build_model(self, seed: int) -> nn.Module:
        """A fresh model initialised from ``seed`` (the caller's random state is left alone)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.model()

    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]:
        """``{"loss": ..., metric: ...}`` of ``model`` on ``split`` (eval mode, no gradients).

        One forward pass, in chunks of :data:`EVAL_CHUNK` rows (a whole split at once would
        hold every activation of a conv net in memory); the loss of the concatenated outputs
        is the loss of the whole split. A problem trained under ``autocast`` is evaluated under it
        too (the model as it is trained; bfloat16 halves the evaluation's time on a CPU that
        computes it natively); the loss and metric are computed from float32 outputs.
        """
        was_training = model.training
        model.eval()
        cast = (torch.autocast(split.x.device.type, dtype=self.autocast) if self.autocast is not None
                else contextlib.nullcontext())
        try:
            with torch.no_grad(), cast:
                outputs = torch.cat([model(split.x[i:i + EVAL_CHUNK]).float()
                                     for i in range(0, len(split), EVAL_CHUNK)])
                metrics = {"loss": float(self.loss_fn(outputs, split.y))}
                if self.metric_fn is not None:
                    metrics[self.metric] = float(self.metric_fn(outputs, split.y))
        finally:
            model.train(was_training)
        return metrics

    @property
    def fingerprint(self) -> str:
        """A digest of what determines this problem's results: the model's architecture (its
        repr), the data, loss, metric and penalty functions by name, the target and the
        evaluation interval, and ``revision``. Run keys include it, so results stored for an
        earlier definition of a problem are never taken for results of the current one."""
        return problem_fingerprint(self)

    @property
    def target_spec(self) -> Target:
        """The target as the training loop's :class:`~optimlab.lab.training.loop.Target`."""
        return Target(self.metric, self.target, self.higher_is_better)

    def default_lr(self, optimizer: str) -> float | None:
        """The measured learning rate for ``optimizer`` (None if this problem has none)."""
        get_optimizer(optimizer)  # unknown names raise, listing the valid ones
        return self.lrs.get(optimizer)

    def lr_grid(self, optimizer: str, points: int = 3, per_decade: int = 2) -> tuple[float, ...]:
        """``points`` log-spaced learning rates centred on the measured one for ``optimizer``
        (half a decade apart by default), or the optimizer's generic grid if none was measured."""
        center = self.default_lr(optimizer)
        if center is None:
            return get_optimizer(optimizer).lrs
        return grid_around(center, points, per_decade)


#: Fingerprints name a problem's functions by module; these modules are named as they were when the
#: lab was flat, so that the run keys (and the stored results) outlive the move into its parts.
KEYED_MODULE_NAMES = {
    "optimlab.lab.training.data": "optimlab.lab.data",
    "optimlab.lab.training.loop": "optimlab.lab.loop",
    "optimlab.lab.training.metrics": "optimlab.lab.metrics",
    "optimlab.lab.training.specs": "optimlab.lab.specs",
    "optimlab.lab.training.zoo": "optimlab.lab.zoo",
    "optimlab.lab.problems.catalog": "optimlab.lab.catalog",
    "optimlab.lab.problems.finetune": "optimlab.lab.finetune_problems",
    "optimlab.lab.problems.functions2d": "optimlab.lab.functions2d",
    "optimlab.lab.problems.pretrained": "optimlab.lab.pretrained",
    "optimlab.lab.problems.problem": "optimlab.lab.problems",
}


def qualified(function: Any) -> str:
    if function is None:
        return "none"
    if isinstance(function, functools.partial):
        return f"partial({qualified(function.func)}, {function.args!r}, {function.keywords!r})"
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    module = getattr(function, "__module__", "")
    return f"{KEYED_MODULE_NAMES.get(module, module)}.{name}"


_fingerprints: dict[int, tuple[Problem, str]] = {}


def problem_fingerprint(problem: Problem) -> str:
    cached = _fingerprints.get(id(problem))
    if cached is not None and cached[0] is problem:
        return cached[1]
    try:
        architecture = repr(problem.build_model(0))
    except lab_data.DataNotFoundError:  # a pretrained model not installed: no run can use this key
        architecture = "not installed"
    parts = [problem.name, architecture, qualified(problem.loader), qualified(problem.loss_fn),
             qualified(problem.metric_fn), problem.metric, str(problem.higher_is_better), repr(problem.target),
             str(problem.eval_every), repr(getattr(problem.penalty, "strength", problem.penalty is not None)),
             str(problem.revision)]
    if (problem.param_groups, problem.hooks, problem.schedule, problem.accumulate, problem.autocast) != \
            (None, None, None, 1, None):
        # only for the problems that set them: the other problems keep their fingerprints (and stored runs)
        parts += [qualified(problem.param_groups), qualified(problem.hooks), str(problem.schedule),
                  str(problem.accumulate), str(problem.autocast)]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    _fingerprints[id(problem)] = (problem, digest)
    return digest


# -- losses and metrics (module level: plain functions, picklable) ------------------------------

def mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements."""
    return F.mse_loss(output, target)


def binary_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Logistic loss on raw scores (log-sigmoid inside: stable for large scores)."""
    return F.binary_cross_entropy_with_logits(logits, target)


def mean_value(output: Tensor, target: Tensor) -> Tensor:
    """For problems whose model returns the objective itself (the quadratic, the 2-D functions)."""
    return output.mean()


def accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Fraction of rows whose highest score (argmax of the logits) is the label."""
    return float((outputs.argmax(dim=1) == targets).float().mean())


def binary_accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Fraction of examples whose score has the sign of the label (score > 0 <=> y = 1)."""
    return float(((outputs > 0).float() == targets).float().mean())


def r2(outputs: Tensor, targets: Tensor) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``: 1 is a perfect fit, 0 is as good as
    predicting the split's mean."""
    residual = ((outputs - targets) ** 2).sum()
    total = ((targets - targets.mean()) ** 2).sum()
    return float(1 - residual / total)


# -- models -------------------------------------------------------------------------------------

class Quadratic(nn.Module):
    """``f(w) = 1/2 w^T A w`` with ``A = Q diag(eigenvalues) Q^T``; returns f once per input row."""

    def __init__(self, matrix: Tensor, start: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)
        self.w = nn.Parameter(start.clone())

    def forward(self, x: Tensor) -> Tensor:
        return (0.5 * self.w @ self.matrix @ self.w).expand(len(x))


class Point2D(nn.Module):
    """A point ``w`` in the plane; returns ``function(w)`` once per input row."""

    def __init__(self, function: Function2D, start: Tensor) -> None:
        super().__init__()
        self.function = function
        self.w = nn.Parameter(start.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.function.at(self.w).expand(len(x))


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed scalars: the pixels' mean and standard deviation over the
    training split (as torchvision's MNIST examples normalise). Centred inputs make the first
    layer's curvature far better conditioned: every optimizer here reaches the MNIST targets in
    about half the steps it needs on raw [0, 1] pixels."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


#: Pixel mean and standard deviation of the training splits (checked by the tests).
MNIST_STATS = (0.1304, 0.3073)
FASHION_STATS = (0.2855, 0.3528)


def mlp(sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLU (and dropout, if > 0) between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        if i > 0:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def small_cnn() -> nn.Sequential:
    """28x28 -> conv 3x3 (8) -> ReLU -> pool 2 -> conv 3x3 (16) -> ReLU -> pool 2 -> linear 784 -> 10,
    on standardized pixels.

    About 0.3 M multiply-adds per image. The kernels are kept channels-last, so the convolutions
    and poolings run in that layout: a training step of a batch of 128 takes 10 ms on one CPU core
    where the default layout takes 19 ms (max pooling alone took 40% of it), and an evaluation
    half the time. The values are the same up to float rounding; the optimizers step the
    channels-last kernels as they step any strided tensor.
    """
    return nn.Sequential(
        Standardize(*FASHION_STATS), nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).to(memory_format=torch.channels_last)


class L2:
    """``penalty(model) = strength / 2 * sum of squared weights`` (matrices and kernels; biases
    are not penalised). Its gradient is ``strength * w``: L2 regularization as part of the
    objective, which every optimizer then minimises (unlike decoupled weight decay)."""

    def __init__(self, strength: float) -> None:
        self.strength = strength

    def __call__(self, model: nn.Module) -> Tensor:
        return 0.5 * self.strength * sum((p**2).sum() for p in model.parameters() if p.ndim > 1)


# -- data for the synthetic problems ----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def line_data() -> Dataset:
    """y = 2x on x = 1..5: the same five points serve as train, valid and test (no noise)."""
    x = torch.arange(1.0, 6.0).unsqueeze(1)
    split = Split(x, 2 * x)
    return Dataset("line", split, split, split)


@functools.lru_cache(maxsize=None)
def no_data() -> Dataset:
    """One dummy row: the model of a synthetic problem *is* the objective."""
    split = Split(torch.zeros(1, 1), torch.zeros(1))
    return Dataset("none", split, split, split)


def zero_line() -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def quadratic_model(cond: float, dim: int, rotate: bool) -> nn.Module:
    """Eigenvalues log-spaced from ``1 / cond`` to 1 (so lr < 2 is stable for gradient descent
    whatever ``cond``), rotated by a fixed random orthogonal matrix (drawn from seed 1234: the
    same problem for every run) unless ``rotate`` is false; the start is drawn from the run's
    seed and scaled so that ``f(w0) = 1``."""
    eigenvalues = torch.logspace(-math.log10(cond), 0.0, dim, dtype=torch.float64)
    if rotate:
        q, _ = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64,
                                           generator=torch.Generator().manual_seed(1234)))
        matrix = q @ torch.diag(eigenvalues) @ q.T
    else:
        matrix = torch.diag(eigenvalues)
    start = torch.randn(dim, dtype=torch.float64)
    start = start / torch.sqrt(0.5 * start @ matrix @ start)
    return Quadratic(matrix.float(), start.float())


def point_model(name: str, jitter: float) -> nn.Module:
    function = get_function(name)
    start = torch.tensor(function.start) + jitter * torch.randn(2)
    return Point2D(function, start)


# -- the registry -------------------------------------------------------------------------------

def linreg() -> Problem:
    # L(w) = 11 (w - 2)^2 (examples/linear_regression.py): the loss is 44 at w = 0, and 1e-6
    # means |w - 2| < 3e-4. Measured steps to the target: sgd 8, momentum 94, nesterov 13,
    # adagrad 16, rmsprop 92, adam 135; AdamW never gets there: its decoupled decay moves the
    # fixed point off w = 2 (the loss levels off at 7e-4).
    return Problem("linreg", "y = 2x on x = 1..5, model y = w x from w = 0, mean squared error, full batch",
                   line_data, zero_line, mse, "loss", False, 1e-6, max_steps=500, batch_size=None, eval_every=1,
                   lrs={"sgd": 0.0316, "momentum": 0.01, "nesterov": 0.0316, "adagrad": 1.0, "rmsprop": 0.0316,
                        "adam": 0.0316, "adamw": 0.0316})


def linreg_diabetes() -> Problem:
    # Least squares reaches R^2 = 0.493 on the validation split; the target asks for 0.48. The
    # Hessian's eigenvalues span 0.018 .. 7.9 (collinear blood-serum features), so gradient
    # descent needs lr < 2 / 7.9 = 0.25. Steps to the target: sgd 10, momentum 16, nesterov 3,
    # adagrad 8, rmsprop 8, adam 17, adamw 17.
    return Problem("linreg-diabetes", "linear regression on scikit-learn's diabetes data (10 standardized "
                   "features, 442 patients), mean squared error, full batch; metric R^2",
                   lab_data.diabetes, lambda: nn.Linear(10, 1), mse, "r2", True, 0.48, max_steps=1000,
                   batch_size=None, eval_every=1, metric_fn=r2,
                   lrs={"sgd": 0.1, "momentum": 0.01, "nesterov": 0.1, "adagrad": 0.316, "rmsprop": 0.0316,
                        "adam": 0.0316, "adamw": 0.0316})


def logreg_cancer() -> Problem:
    # Nearly separable: every optimizer gets 111 of the 113 validation tumours right within a
    # few steps at its best rate (sgd 1, momentum 2, nesterov 6, adagrad 3, rmsprop 4, adam 7,
    # adamw 7): a quick convex problem for tests and demonstrations.
    return Problem("logreg-cancer", "logistic regression on scikit-learn's breast-cancer data (30 standardized "
                   "features, 569 tumours), batch 32: convex",
                   lab_data.breast_cancer, lambda: nn.Sequential(nn.Linear(30, 1), nn.Flatten(0)),
                   binary_cross_entropy, "accuracy", True, 0.98, max_steps=1000, batch_size=32, eval_every=1,
                   metric_fn=binary_accuracy,
                   lrs={"sgd": 1.0, "momentum": 0.316, "nesterov": 0.316, "adagrad": 1.0, "rmsprop": 0.0316,
                        "adam": 0.0316, "adamw": 0.0316})


def mlp_digits(hidden: int = 64) -> Problem:
    # Steps to 0.95 validation accuracy at the best rates: sgd 160, momentum 240, nesterov 160,
    # adagrad 240, rmsprop 160, adam 120, adamw 160 (about a second each on one core).
    name = format_spec("mlp-digits", {"hidden": hidden} if hidden != 64 else {})
    return Problem(name, f"MLP 64-{hidden}-10 (ReLU) on scikit-learn's 8x8 digits (1,797 images), batch 32",
                   lab_data.digits, lambda: mlp((64, hidden, 10)), F.cross_entropy, "accuracy", True, 0.95,
                   max_steps=2000, batch_size=32, eval_every=20, metric_fn=accuracy,
                   lrs={"sgd": 1.0, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.0316, "rmsprop": 0.01,
                        "adam": 0.0316, "adamw": 0.0316})


#: Measured on softmax-mnist (seed 0, steps to 0.915 validation accuracy; the model levels off
#: near 0.92): sgd 0.1 (600; 0.0316: 700, 0.316: 1400), momentum 0.01 (300; 0.00316: 700, 0.0316:
#: 500, 0.1 misses), nesterov 0.01 (300, same neighbours), adagrad 0.0316 (300; 0.01: 500, 0.1: 800),
#: rmsprop 0.001 (300; 0.000316: 700, 0.00316: 800), adam and adamw 0.00316 (300; 0.001: 400,
#: 0.01: 700, 0.0316 misses). Measured with evaluations every 100 steps.
SOFTMAX_MNIST_LRS = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.0316, "rmsprop": 0.001,
                     "adam": 0.00316, "adamw": 0.00316}


def softmax_mnist() -> Problem:
    return Problem("softmax-mnist", "multinomial logistic regression 784 -> 10 on MNIST, batch 128: convex",
                   lab_data.mnist, lambda: nn.Sequential(Standardize(*MNIST_STATS), nn.Linear(784, 10)),
                   F.cross_entropy, "accuracy", True, 0.915,
                   max_steps=2000, batch_size=128, eval_every=50, metric_fn=accuracy, lrs=SOFTMAX_MNIST_LRS)


#: Measured on mlp-mnist (seed 0, half-decade grids, steps to 0.97 validation accuracy in brackets):
#: sgd 0.316 (800; 0.1: 1500; 1.0 stalls at 0.67), momentum 0.0316 (700; 0.01: 1500, 0.1: 900),
#: nesterov 0.0316 (700; 0.01: 1500, 0.1: 1000), adagrad 0.0316 (1100; 0.01: 1800, 0.1 misses: 0.966),
#: rmsprop 0.00316 (1000; 0.001: 1100, 0.01 misses: 0.962), adam 0.00316 (900; 0.001: 1100, 0.01 misses:
#: 0.964), adamw 0.00316 (1000; 0.001: 1100, 0.01 misses: 0.966).
MLP_MNIST_LRS = {"sgd": 0.316, "momentum": 0.0316, "nesterov": 0.0316, "adagrad": 0.0316, "rmsprop": 0.00316,
                 "adam": 0.00316, "adamw": 0.00316}


def mlp_mnist(hidden: int = 128, dropout: float = 0.0, l2: float = 0.0) -> Problem:
    if not 0 <= dropout < 1:
        raise ValueError(f"mlp-mnist: dropout must be in [0, 1), got {dropout!r}")
    if not 0 <= l2 < math.inf:
        raise ValueError(f"mlp-mnist: l2 must be a finite number >= 0, got {l2!r}")
    if hidden < 1:
        raise ValueError(f"mlp-mnist: hidden must be >= 1, got {hidden!r}")
    params = {k: v for k, v in (("hidden", hidden), ("dropout", dropout), ("l2", l2))
              if v != {"hidden": 128, "dropout": 0.0, "l2": 0.0}[k]}
    extras = "".join([f", dropout {dropout:g}" if dropout else "", f", L2 {l2:g}" if l2 else ""])
    return Problem(format_spec("mlp-mnist", params),
                   f"MLP 784-{hidden}-10 (ReLU{extras}) on MNIST, batch 128",
                   lab_data.mnist, lambda: nn.Sequential(Standardize(*MNIST_STATS), mlp((784, hidden, 10), dropout)),
                   F.cross_entropy, "accuracy", True,
                   0.97, max_steps=2000, batch_size=128, eval_every=100, metric_fn=accuracy,
                   penalty=L2(l2) if l2 else None, lrs=MLP_MNIST_LRS)


#: Measured on cnn-fashion (seed 0, three rates half a decade apart per optimizer, steps to 0.87
#: validation accuracy): sgd 0.316 (600; 0.1: 800, 0.0316: 1500), momentum 0.0316 (500; 0.01: 800,
#: 0.1: 1300), nesterov 0.0316 (300; 0.01: 600, 0.1: 500), adagrad 0.0316 (1200; 0.01: 1300, 0.1:
#: 1500), rmsprop 0.00316 (600; 0.001: 800, 0.000316 misses: 0.861), adam 0.01 (300; 0.00316: 500,
#: 0.001: 1100), adamw 0.01 (300; 0.00316: 400, 0.001: 1100). For sgd, rmsprop, adam and adamw the
#: best rate is the largest one tried.
CNN_FASHION_LRS = {"sgd": 0.316, "momentum": 0.0316, "nesterov": 0.0316, "adagrad": 0.0316, "rmsprop": 0.00316,
                   "adam": 0.01, "adamw": 0.01}


def cnn_fashion() -> Problem:
    return Problem("cnn-fashion", "small conv net (2 conv layers, 8 and 16 channels) on Fashion-MNIST, batch 128",
                   lab_data.fashion_mnist, small_cnn, F.cross_entropy, "accuracy", True, 0.87,
                   max_steps=1500, batch_size=128, eval_every=100, metric_fn=accuracy, lrs=CNN_FASHION_LRS)


def quadratic(cond: float = 100.0, dim: int = 20, rotate: bool = True) -> Problem:
    # The oscillation case: gradient descent needs lr < 2 / lambda_max = 2; near that limit the
    # top mode flips sign every step, while the bottom mode shrinks only by (1 - lr / cond).
    # Steps to f <= 1e-6 at cond = 100: sgd 360 (lr 1), momentum 130, nesterov 90, adagrad
    # 180, rmsprop 1070, adam 120, adamw 120. (Other condition numbers keep the rates but not
    # the step counts.)
    if not 1 <= cond < math.inf:
        raise ValueError(f"quadratic: cond must be a finite number >= 1, got {cond!r}")
    if dim < 2:
        raise ValueError(f"quadratic: dim must be >= 2, got {dim!r}")
    params = {k: v for k, v in (("cond", cond), ("dim", dim), ("rotate", rotate))
              if v != {"cond": 100.0, "dim": 20, "rotate": True}[k]}
    return Problem(format_spec("quadratic", params),
                   f"{'rotated ' if rotate else ''}quadratic 1/2 w^T A w in {dim} dimensions, eigenvalues from "
                   f"1/{cond:g} to 1 (condition number {cond:g}); start with f = 1",
                   no_data, lambda: quadratic_model(cond, dim, rotate), mean_value, "loss", False, 1e-6,
                   max_steps=max(500, math.ceil(20 * cond)), batch_size=None, eval_every=10,
                   lrs={"sgd": 1.0, "momentum": 0.316, "nesterov": 1.0, "adagrad": 3.16, "rmsprop": 0.00316,
                        "adam": 0.316, "adamw": 0.316})


def rosenbrock() -> Problem:
    # Steps to f <= 1e-3 (seed 0): momentum 130, nesterov 620, adam 680, adamw 910, adagrad 3730,
    # rmsprop 3760; plain gradient descent crawls along the valley (f = 0.0036 after 5000 steps
    # at lr 1e-3, and lr 1e-2 diverges: the valley's walls have curvature ~1000).
    return Problem("rosenbrock", "Rosenbrock's valley (1 - x)^2 + 100 (y - x^2)^2 from (-1.2, 1), jittered by "
                   "0.1 times a normal draw from the seed; minimum 0 at (1, 1)",
                   no_data, lambda: point_model("rosenbrock", 0.1), mean_value, "loss", False, 1e-3,
                   max_steps=5000, batch_size=None, eval_every=10,
                   lrs={"sgd": 0.001, "momentum": 0.00316, "nesterov": 0.001, "adagrad": 0.316, "rmsprop": 0.001,
                        "adam": 0.0316, "adamw": 0.0316})


def describe(problem: Problem) -> dict[str, Any]:
    """The problem's settings as plain data (for stores and reports)."""
    return {"name": problem.name, "description": problem.description, "metric": problem.metric,
            "higher_is_better": problem.higher_is_better, "target": problem.target,
            "max_steps": problem.max_steps, "batch_size": problem.batch_size, "eval_every": problem.eval_every,
            "lrs": dict(problem.lrs)}
