"""Hypothesis strategies: shapes, parameter layouts and hyperparameters valid for torch.optim.

Hyperparameters are drawn over the options' whole ranges, with zero drawn often for the
options whose zero switches a code path (momentum, weight decay, lr decay, ...). Two limits
keep the *comparison* well conditioned rather than hiding anything:

* centered RMSprop divides by ``sqrt(n - m^2)``, which cancels exactly when ``alpha = 0``
  (``n = g^2``, ``m = g``); there ``alpha`` is drawn from [0.1, 0.999], elsewhere from [0, 0.999];
* ``eps`` is drawn from [1e-10, 1e-3]: a zero ``eps`` divides 0 by 0 on a zero gradient.

``conditioned=True`` asks for the regime in which float32 can resolve a 50-step run to 1e-5
(float64 tests use the full ranges). Outside it, torch.optim's own float32 run is measurably
further than 1e-5 from its float64 run, so no implementation could be held to 1e-5 there:

* the second-moment decay (RMSprop ``alpha``, Adam ``beta2``) is at least 0.5. With a decay
  near 0 the step is ``~ g / (|g| + eps)``, a smoothed sign of ``g`` whose slope near ``g = 0``
  is ``1/eps``: a rounding difference in ``weight_decay * p`` reaches the step multiplied by up to
  ``1/eps`` (measured: 4e-5 for RMSprop with ``alpha = 0``). A larger decay keeps the past
  gradients in the denominator; it also bounds the cancellation in centered RMSprop's
  ``n - m^2`` (exact at ``alpha = 0``);
* Adam: ``beta1 <= beta2``, so ``beta1^2 < beta2`` and the step ``mhat / sqrt(vhat)`` is bounded
  (Cauchy-Schwarz; Kingma & Ba 2015, Sec. 2.1). With ``beta2 ~ 0 < beta1`` it is ``~ m / |g|``,
  unbounded, and amplifies rounding (measured: torch float32 vs float64 3e-3).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.helpers import LAYOUTS

lrs = st.floats(1e-4, 0.3)
weight_decays = st.one_of(st.just(0.0), st.floats(1e-4, 0.1))
epss = st.floats(1e-10, 1e-3)
rates = st.floats(0.0, 0.999)
momenta = st.floats(0.05, 0.99)
seeds = st.integers(0, 2**31 - 1)

shapes = st.one_of(
    st.just(()),
    st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
)


@st.composite
def param_specs(draw: Any, min_size: int = 2, max_size: int = 4) -> list[tuple[tuple[int, ...], str]]:
    """``(shape, layout)`` for a few parameters; at least one is 0-d and one is non-contiguous."""
    specs = draw(st.lists(st.tuples(shapes, st.sampled_from(LAYOUTS)), min_size=min_size, max_size=max_size))
    specs[0] = ((), "contiguous")
    specs[-1] = (draw(st.lists(st.integers(2, 5), min_size=2, max_size=3).map(tuple)),
                 draw(st.sampled_from(LAYOUTS[1:])))
    return specs


def pick(draw: Any, fixed: dict[str, Any], key: str, strategy: st.SearchStrategy) -> Any:
    """``fixed[key]`` if given (drawn from, if it is a strategy), else a value drawn from ``strategy``."""
    value = fixed.get(key, strategy)
    return draw(value) if isinstance(value, st.SearchStrategy) else value


@st.composite
def hyperparams(draw: Any, name: str, conditioned: bool = False, **fixed: Any) -> dict[str, Any]:
    """A complete, torch-valid set of hyperparameters for ``name`` (well conditioned for
    float32 if ``conditioned``, see the module's docstring).

    ``fixed`` pins options by value (a strategy as a value is drawn from); for SGD and RMSprop
    ``momentum=True`` asks for a drawn non-zero momentum (``False``: zero).
    """
    hp = {"lr": pick(draw, fixed, "lr", lrs), "weight_decay": pick(draw, fixed, "weight_decay", weight_decays),
          "maximize": pick(draw, fixed, "maximize", st.booleans())}
    if name == "SGD":
        nesterov = pick(draw, fixed, "nesterov", st.booleans())
        with_momentum = nesterov or pick(draw, fixed, "momentum", st.booleans())
        dampening = 0.0 if nesterov else pick(draw, fixed, "dampening", st.one_of(st.just(0.0), st.floats(0.0, 1.0)))
        hp.update(nesterov=nesterov, momentum=draw(momenta) if with_momentum else 0.0, dampening=dampening)
    elif name == "Adagrad":
        hp.update(lr_decay=draw(st.one_of(st.just(0.0), st.floats(0.0, 0.5))),
                  initial_accumulator_value=draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0))),
                  eps=draw(epss))
    elif name == "RMSprop":
        centered = pick(draw, fixed, "centered", st.booleans())
        with_momentum = pick(draw, fixed, "momentum", st.booleans())
        lowest_alpha = 0.5 if conditioned else 0.1 if centered else 0.0
        hp.update(centered=centered, alpha=pick(draw, fixed, "alpha", st.floats(lowest_alpha, 0.999)), eps=draw(epss),
                  momentum=draw(momenta) if with_momentum else 0.0)
    elif name in ("Adam", "AdamW"):
        beta1 = draw(rates)
        beta2 = draw(st.floats(max(beta1, 0.5), 0.999) if conditioned else rates)
        hp.update(betas=(beta1, beta2), eps=draw(epss), amsgrad=pick(draw, fixed, "amsgrad", st.booleans()))
        if name == "Adam":
            hp["decoupled_weight_decay"] = pick(draw, fixed, "decoupled_weight_decay", st.booleans())
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    return hp


#: The options that choose a different code path, one variant each, so every path is run
#: whatever hypothesis draws for the rest.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {"momentum": False}),
    ("SGD", {"momentum": True, "nesterov": False}),
    ("SGD", {"nesterov": True}),
    ("Adagrad", {}),
    *[("RMSprop", {"centered": c, "momentum": m}) for c in (False, True) for m in (False, True)],
    *[("Adam", {"amsgrad": a, "decoupled_weight_decay": d}) for a in (False, True) for d in (False, True)],
    *[("AdamW", {"amsgrad": a}) for a in (False, True)],
]


#: The optimizers :func:`hyperparams` draws for (tests/test_parity_torch.py's deep draw).
DRAWN: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in VARIANTS))


def variant_id(variant: tuple[str, dict[str, Any]]) -> str:
    name, flags = variant
    return name + "".join(f"-{k}={v}" for k, v in flags.items())
