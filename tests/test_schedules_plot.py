"""optimlab.schedules.plot and the gallery script of the docs."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from optimlab import schedules as S

ROOT = Path(__file__).resolve().parent.parent


def test_plot_draws_each_schedule_as_its_values():
    cos, warm = S.cosine(0.1, 100), S.sequence(S.linear_warmup(0.1, 10), S.cosine(0.1, 90))
    figure = S.plot({"cosine": cos, "warm-up, cosine": warm}, 120, title="two", log=False)
    ax = figure.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["cosine", "warm-up, cosine"]
    assert list(lines[0].get_ydata()) == S.trace(cos, 120) and list(lines[1].get_xdata()) == list(range(120))
    assert ax.get_title() == "two" and ax.get_xlabel() == "step"


def test_plot_defaults_saves_and_draws_into_given_axes(tmp_path):
    figure = S.plot(S.one_cycle(0.1, 500))
    assert len(figure.axes[0].get_lines()[0].get_ydata()) == 500  # the schedule's own length
    path = tmp_path / "one.png"
    S.plot([S.cosine(0.1, 50), S.exponential(0.1, 0.9)], path=str(path), log=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.axes[0].get_yscale() == "linear"
    from matplotlib.figure import Figure

    ax = Figure().subplots(1, 2)[1]
    assert S.plot(S.constant(1.0), 10, ax=ax) is ax.figure and len(ax.get_lines()) == 1


def test_plot_feeds_metrics_to_a_copy_of_a_plateau():
    plateau = S.reduce_on_plateau(1.0, factor=0.5, patience=0)
    metrics = [3.0, 2.0, 2.0, 2.0, 1.0]
    figure = S.plot(plateau, metrics=metrics)
    assert list(figure.axes[0].get_lines()[0].get_ydata()) == [1.0, 1.0, 1.0, 0.5, 0.25]
    assert plateau(0) == 1.0 and plateau.state.count == 0  # the schedule itself is untouched
    with pytest.raises(ValueError, match="metrics"):
        S.plot(plateau, 10)
    with pytest.raises(TypeError, match="not a Schedule"):
        S.plot({"x": 0.1})


def test_gallery_script_writes_the_docs_picture(tmp_path, monkeypatch):
    out = tmp_path / "gallery.png"
    monkeypatch.setattr(sys, "argv", ["schedule_gallery.py", str(out)])
    runpy.run_path(str(ROOT / "scripts" / "schedule_gallery.py"), run_name="__main__")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 50_000 < len(data) < 500_000
    assert (ROOT / "docs" / "gallery" / "schedules.png").exists()
