"""What every plot of the lab shares (reports, lr-find, trajectories): colours, saving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Fixed colours for the classic optimizers (matplotlib's tab10), so every picture matches.
COLORS = {"sgd": "#1f77b4", "momentum": "#ff7f0e", "nesterov": "#2ca02c", "adagrad": "#d62728",
          "rmsprop": "#9467bd", "adam": "#8c564b", "adamw": "#e377c2"}
#: For other names, in order of appearance.
EXTRA_COLORS = ("#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
                "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")


def color_map(names: Sequence[str]) -> dict[str, str]:
    """name -> colour: the fixed colour of a classic optimizer, else the next extra colour."""
    extra = iter(EXTRA_COLORS * (1 + len(names) // len(EXTRA_COLORS)))
    return {name: COLORS.get(name) or next(extra) for name in dict.fromkeys(names)}


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders made as needed) and free it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
