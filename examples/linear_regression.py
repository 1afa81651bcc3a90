"""Fit y = 2x on x = 1..5 with every classic optimizer: the tutorials' first example, done right.

The model is y = w * x (no bias), w starts at 0, the loss is the mean squared error. Every
optimizer below reaches |w - 2| < 1e-3, with the learning rate and step budget given and
justified next to it. Run it: ``python examples/linear_regression.py``.

The loss, exactly (the numbers every choice below comes from)::

    L(w)   = mean_i (w x_i - 2 x_i)^2 = mean(x^2) * (w - 2)^2 = 11 (w - 2)^2
    L'(w)  = 22 (w - 2)          curvature  L''(w) = 2 mean(x^2) = 22

Batch gradient descent then moves the error e = w - 2 by a fixed factor each step::

    e <- e - lr * 22 e = (1 - 22 lr) e

so it converges iff |1 - 22 lr| < 1, i.e. 0 < lr < 2/22 = 1/11 ~ 0.0909; monotonically for
lr <= 1/22 (= exactly one step at lr = 1/22), oscillating in sign above it, and diverging for
lr > 1/11.

Common mistakes this example avoids:

* Taking the curvature to be mean(x^2) = 11 and so allowing lr < 2/11 ~ 0.18. Differentiating
  the square gives a factor 2: the curvature of the MSE is 2 mean(x^2) = 22 and lr = 0.1, a
  favourite in tutorials, diverges (shown by :func:`learning_rate_table`).
* Summing the squared errors instead of averaging them: the curvature becomes 2 sum(x^2) = 110,
  five times larger, and every safe learning rate five times smaller.
* Forgetting ``zero_grad()``: gradients then add up across steps, so each step uses the sum of
  all past gradients, an undamped momentum that oscillates around w = 2 instead of converging.
  (The lab's training loop, :func:`optimlab.lab.train`, clears them before every step.)
* Integer data: ``torch.arange(1, 6)`` is int64; a model cannot learn from it. Use floats.
* Claiming SGD "never converges with a constant learning rate". That holds when the examples
  disagree at the optimum (noisy labels). Here every example is fitted exactly by w = 2, so the
  stochastic gradient is zero at the solution and SGD converges linearly with a constant lr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import optimlab
from optimlab.lab import Split, StopReason, mean_loss, train

X = torch.arange(1.0, 6.0).unsqueeze(1)  # float: 1., 2., ..., 5. as a column (5 examples, 1 feature)
DATA = Split(X, 2 * X)
TRUE_W = 2.0
#: |w - 2| every optimizer must reach.
TOLERANCE = 1e-3


def make_model() -> nn.Linear:
    """y = w * x with w = 0: a 1x1 linear layer without bias, zero-initialised."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((prediction - target) ** 2).mean()


@dataclass(frozen=True)
class Recipe:
    """An optimizer with the learning rate, batch size and step budget that fit this problem."""

    name: str
    make: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    steps: int
    batch_size: int | None = None  # None: full batch


# Why each setting (e = w - 2 is the error, h = 22 the curvature, e0 = -2):
RECIPES = [
    # e <- 0.78 e per step (lr h = 0.22): |e| = 2 * 0.78^t < 1e-3 after 31 steps. After 100 it would be
    # 3e-11; float32 stops at its resolution near 2 (2.4e-7), as do all the runs here.
    Recipe("batch GD", lambda p: optimlab.SGD(p, lr=0.01), steps=100),
    # One example a step: e <- (1 - 2 lr x_i^2) e. Stable for every example iff lr < 1/max(x^2) =
    # 1/25 = 0.04, stricter than batch GD's 1/11 because the example x = 5 alone has curvature 50.
    # At lr = 0.01 an epoch multiplies e by 0.98 * 0.92 * 0.82 * 0.68 * 0.5 ~ 0.25, in any order;
    # 20 epochs = 100 steps.
    Recipe("SGD (1 example/step)", lambda p: optimlab.SGD(p, lr=0.01), steps=100, batch_size=1),
    # Batches of 2 (5 = 2 + 2 + 1: three steps an epoch). A pair's curvature is at most
    # (16 + 25) = 41 and the single leftover's at most 50, so again lr < 0.04; 40 epochs.
    Recipe("mini-batch GD (batch 2)", lambda p: optimlab.SGD(p, lr=0.01), steps=120, batch_size=2),
    # Heavy ball: e_{t+1} = (1 + m - lr h) e_t - m e_{t-1}. With m = 0.9 the roots are complex with
    # modulus sqrt(m) = 0.949: slower than plain GD (0.78). On a 1-D problem (condition number 1)
    # there is nothing for momentum to accelerate; it pays off on ill-conditioned problems.
    # Stable for lr h < 2 (1 + m). 2 * 0.949^300 ~ 3e-7.
    Recipe("momentum (heavy ball)", lambda p: optimlab.SGD(p, lr=0.01, momentum=0.9), steps=300),
    # EMA form, b <- m b + (1 - m) g: with lr / (1 - m) = 0.1 it follows heavy ball's recurrence
    # from the second step on (see momentum_first_steps); only its first step differs.
    Recipe("momentum (EMA form)", lambda p: optimlab.SGD(p, lr=0.1, momentum=0.9, dampening=0.9), steps=300),
    # Nesterov: e_{t+1} = (1 + m)(1 - lr h) e_t - m (1 - lr h) e_{t-1}; complex roots of modulus
    # sqrt(m (1 - lr h)) = sqrt(0.9 * 0.78) = 0.838 per step: 2 * 0.838^200 ~ 1e-15.
    Recipe("Nesterov", lambda p: optimlab.SGD(p, lr=0.01, momentum=0.9, nesterov=True), steps=200),
    # Adagrad's step is lr * g / sqrt(sum of g^2): the first step is exactly lr whatever the
    # gradient's scale, and later ones shrink like lr / sqrt(t) while g stays alike. So lr is a
    # distance in w: the common default 0.01 covers ~0.01 * 2 sqrt(t), some 10^4 steps to travel 2.
    # lr = 0.5 arrives in a few steps; then g -> 0, the sum stops growing, and the end is plain
    # GD with the frozen rate lr / sqrt(sum).
    Recipe("Adagrad", lambda p: optimlab.Adagrad(p, lr=0.5), steps=200),
    # RMSprop divides by sqrt of an average (alpha = 0.99) of g^2 started at 0: the first step is
    # lr / sqrt(1 - alpha) = 10 lr, later ones about lr while |g| is steady: ~200 steps to travel
    # 2 at lr = 0.01, then |g| falls faster than sqrt(v) and the steps shrink to zero.
    Recipe("RMSprop", lambda p: optimlab.RMSprop(p, lr=0.01), steps=500),
    # Adam's steps are about lr long (bias-corrected moments): at lr = 0.1 it reaches w ~ 2 in ~20
    # steps, overshoots (beta1 = 0.9 is momentum) and settles to float32's resolution by 300.
    Recipe("Adam", lambda p: optimlab.Adam(p, lr=0.1), steps=300),
]


@dataclass(frozen=True)
class Fit:
    name: str
    w: float
    loss: float  # full-data MSE at the learned w
    steps: int
    stop_reason: StopReason

    @property
    def error(self) -> float:
        return abs(self.w - TRUE_W)

    @property
    def ok(self) -> bool:
        return self.error < TOLERANCE  # False for nan too


def fit(recipe: Recipe, seed: int = 0) -> Fit:
    """Train a fresh zero-initialised model with ``recipe`` through the lab's training loop."""
    model = make_model()
    result = train(model, mse, recipe.make(list(model.parameters())), DATA,
                   batch_size=recipe.batch_size, steps=recipe.steps, seed=seed)
    return Fit(recipe.name, model.weight.item(), mean_loss(model, mse, DATA), result.steps, result.stop_reason)


def fit_all(seed: int = 0) -> list[Fit]:
    return [fit(recipe, seed) for recipe in RECIPES]


def learning_rate_table(steps: int = 1000) -> list[tuple[float, Fit]]:
    """Batch GD across the stability limit lr = 1/11: where it converges, oscillates, diverges."""
    rates = [0.01, 1 / 22, 0.09, 1 / 11 + 1e-3, 0.1]
    return [(lr, fit(Recipe(f"lr={lr:.4f}", lambda p, lr=lr: optimlab.SGD(p, lr=lr), steps=steps)))
            for lr in rates]


def momentum_first_steps(steps: int = 3) -> dict[str, list[float]]:
    """The first changes of w under heavy-ball and EMA-form momentum (read through the loop's
    evaluate callback after every step).

    optimlab (like torch.optim.SGD) starts the buffer at the first gradient, b_1 = g_1, and
    applies dampening only from the second step: b_t = m b_{t-1} + (1 - dampening) g_t. Hence:

    * at the same lr, the EMA form's first step *equals* heavy ball's, and its later steps are
      smaller (it adds (1 - m) g instead of g), about 1 - m = 10x smaller once the buffer fills;
    * at lr / (1 - m) the EMA form follows heavy ball's recurrence dw_t = m dw_{t-1} - lr g_t
      from the second step on, but its first step is 1 / (1 - m) = 10x larger.

    (A textbook EMA started from zero would make the first step (1 - m) = 10x *smaller*: yet
    another method. Write down which one you mean.)
    """
    forms = {
        "heavy ball    lr=0.01": dict(lr=0.01, momentum=0.9),
        "EMA form      lr=0.01": dict(lr=0.01, momentum=0.9, dampening=0.9),
        "EMA form      lr=0.10": dict(lr=0.1, momentum=0.9, dampening=0.9),
    }
    moves = {}
    for name, options in forms.items():
        model = make_model()
        result = train(model, mse, optimlab.SGD(model.parameters(), **options), DATA, steps=steps,
                       evaluate=lambda m: {"w": m.weight.item()}, eval_every=1)
        ws = [e.metrics["w"] for e in result.evaluations]
        moves[name] = [after - before for before, after in zip(ws, ws[1:])]
    return moves


def report(fits: list[Fit]) -> None:
    """Print the fits, then batch GD across its stability limit, then the two forms of momentum."""
    print("y = 2x on x = 1..5, model y = w x, w0 = 0, MSE (curvature 22: batch GD needs lr < 1/11)\n")
    print(f"{'optimizer':<26}{'batch':>6}{'steps':>7}{'final loss':>13}{'w':>12}{'|w - 2|':>11}")
    batches = {r.name: "all" if r.batch_size is None else r.batch_size for r in RECIPES}
    for f in fits:
        print(f"{f.name:<26}{batches.get(f.name, '?'):>6}{f.steps:>7}{f.loss:>13.3e}{f.w:>12.7f}{f.error:>11.2e}  "
              f"{'ok' if f.ok else 'MISSED'}")

    print("\nbatch GD across the stability limit lr = 1/11 = 0.0909 (budget 1000 steps):")
    for lr, f in learning_rate_table():
        outcome = (f"diverged: loss not finite at step {f.steps + 1}" if f.stop_reason is StopReason.DIVERGED
                   else f"w = {f.w:.9g} after {f.steps} steps")
        print(f"  lr = {lr:.4f}  error factor 1 - 22 lr = {1 - 22 * lr:+.3f}  ->  {outcome}")

    g1 = 22 * (0.0 - TRUE_W)
    print(f"\nfirst changes of w with momentum 0.9 (first gradient g1 = {g1:g}):")
    for name, moves in momentum_first_steps().items():
        print(f"  {name}: " + ", ".join(f"{m:+.4f}" for m in moves))
    print("  heavy ball and the EMA form share the first step at equal lr (the buffer starts at g1);\n"
          "  at lr / (1 - m) the EMA form matches heavy ball's later steps but its first is 10x larger.")


def main() -> int:
    fits = fit_all()
    report(fits)
    missed = [f.name for f in fits if not f.ok]
    print(f"\nMISSED |w - 2| < {TOLERANCE:g}: {', '.join(missed)}" if missed
          else f"\nevery optimizer reached |w - 2| < {TOLERANCE:g}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
