"""The sweep report: files, embedded plots, the ranked table and the generated recommendation."""

from __future__ import annotations

import base64
import re
from types import SimpleNamespace

import pytest

from optimlab.lab.report.recommend import Goal, recommendation
from optimlab.lab.report.sweep_report import ranked_rows, text_table, write_report
from optimlab.lab.running.store import Store
from optimlab.lab.running.sweep import summarize
from tests import report_data as rd

PLOTS = ("curves_steps.png", "curves_seconds.png", "steps_to_target.png", "lr_sensitivity.png")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    with Store(folder / "results.sqlite") as store:
        rd.fill(store)
        index = write_report(store, rd.SWEEP, folder / "out")
        ranked = summarize(store, rd.SWEEP).ranking()
    return index, index.read_text(encoding="utf-8"), ranked


def test_writes_the_page_and_every_plot(report):
    from PIL import Image

    index, page, _ = report
    assert index.name == "index.html"
    for name in PLOTS:
        path = index.parent / name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 1000
            assert len(image.convert("RGB").getcolors(1 << 20)) > 200, name  # drawn, not blank


def test_the_page_is_self_contained(report):
    index, page, _ = report
    sources = re.findall(r'<img src="([^"]+)"[^>]*data-file="([^"]+)"', page)
    assert [name for _, name in sources] == list(PLOTS)
    for source, name in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]) == (index.parent / name).read_bytes()
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: no external file or URL


def test_ranked_table_follows_the_numbers(report):
    _, page, ranked = report
    assert [s.optimizer for s in ranked] == ["adam", "momentum", "sgd", "adagrad"]
    rows = re.findall(r"<tr(?: class=\"winner\")?><td>(\d)</td><td>([^<]+)</td><td>([^<]+)</td><td>[^<]+</td>"
                      r"<td>([^<]+)</td>", page)
    assert [(rank, lr, steps) for rank, _, lr, steps in rows] == [
        ("1", "0.001", "1100"), ("2", "0.03", "1300"), ("3", "0.1", "1800"), ("4", "0.01", "not reached")]
    assert [rd.expected_steps(s.optimizer) for s in ranked] == [1100, 1300, 1800, None]
    assert '<tr class="winner"><td>1</td><td>Adam</td>' in page


def test_recommendation_is_built_from_the_numbers(report):
    _, page, _ = report
    text = re.search(r'<div class="recommendation" id="recommendation">(.*?)</div>', page, re.S).group(1)
    assert "Adam reached 97.00% validation accuracy fastest: median 1100 steps" in text
    assert "at lr 0.001" in text and "97.50% test accuracy" in text  # seed 1's final 0.977 - 0.002
    assert "Within 20% of it: SGD + momentum 0.9 (1300 steps, lr 0.03)." in text  # 1300 <= 1.2 x 1100
    assert "more slowly (median steps): SGD (1800)" in text
    assert "Did not reach the target within 2000 steps: Adagrad (best 95.00% at lr 0.01)." in text
    assert "Diverged at some learning rates: SGD at 1 of 3." in text


def test_every_run_is_listed(report):
    _, page, _ = report
    table = re.search(r'<table id="runs">(.*?)</table>', page, re.S).group(1)
    assert table.count("<tr>") == 1 + 4 * 5  # header + (3 grid + 2 best) runs per optimizer
    assert table.count("<td>diverged</td>") == 1


def goal(**overrides):
    return Goal(**{"problem": "p", "metric": "accuracy", "higher_is_better": True, "target": 0.9, "max_steps": 500,
                   **overrides})


def summary(name, steps=None, best=0.8, lr=0.1, by_lr=None, seconds=None):
    if by_lr is None:  # one learning rate tried, as if the sweep's grid had one point
        by_lr = (SimpleNamespace(lr=lr, steps_to_target=steps, diverged=0.0 if lr is not None else 1.0),)
    return SimpleNamespace(optimizer=name, label=name.upper(), best_lr=lr, runs=3, reached=1.0 if steps else 0.0,
                           steps_to_target=steps, seconds_to_target=seconds, best_valid=best, final_valid=best,
                           test_metric=best, by_lr=by_lr)


def test_recommendation_when_nobody_reached_the_target():
    sentences = recommendation([summary("adam", best=0.85), summary("sgd", best=0.6, lr=None)], goal())
    assert sentences[0] == ("No optimizer reached 90.00% validation accuracy within 500 steps. The best median "
                            "validation accuracy was 85.00%, by ADAM at lr 0.1.")
    assert sentences[1] == "Did not reach the target within 500 steps: SGD (diverged at every learning rate tried)."


def test_recommendation_for_a_lower_is_better_metric():
    points = (SimpleNamespace(lr=0.1, steps_to_target=40, diverged=0.0),
              SimpleNamespace(lr=1.0, steps_to_target=None, diverged=1.0))
    sentences = recommendation([summary("sgd", steps=40, best=1e-7, by_lr=points, seconds=0.01)],
                               goal(metric="loss", higher_is_better=False, target=1e-6))
    assert sentences[0].startswith("SGD reached 1e-06 validation loss fastest: median 40 steps (0.01 s")
    assert sentences[-1].startswith("Diverged at some learning rates: SGD at 1 of 2.")


def test_unknown_sweep_names_the_stored_ones(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        rd.fill(store, sweep="first")
        with pytest.raises(ValueError, match="no runs stored for sweep 'second'; stored sweeps: 'first'"):
            write_report(store, "second", tmp_path / "out")


def test_text_table_aligns_columns(report):
    _, _, ranked = report
    table = text_table(ranked_rows(ranked, goal(target=rd.TARGET)))
    lines = table.splitlines()
    assert lines[0].startswith("rank  optimizer ") and set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:3] == ["1", "Adam", "0.001"]
    starts = [line.index("3/3") for line in lines[2:5]]
    assert len(set(starts)) == 1  # the "reached target" column lines up


def test_an_interrupted_sweep_says_so(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        rd.fill(store)  # every run of the four optimizers; rmsprop, also planned, has none yet
        grids = {**{name: sorted(taus) for name, taus in rd.TAUS.items()}, "rmsprop": [1e-4, 1e-3, 1e-2]}
        store.save_sweep(rd.SWEEP, rd.PROBLEM, {"optimizers": [*rd.TAUS, "rmsprop"], "grids": grids, "seeds": [0],
                                                "best_seeds": [1, 2]})
        page = write_report(store, rd.SWEEP, tmp_path / "out").read_text(encoding="utf-8")
    assert "Incomplete: 20 of the 25 planned runs are stored" in page  # 5 optimizers x (3 lrs + 2 seeds)
    assert "Not run yet (the sweep is incomplete): RMSprop." in page
    assert "<td>RMSprop</td><td>not run</td>" in page


def test_a_complete_sweep_has_no_warning(report):
    _, page, _ = report
    assert 'id="incomplete"' not in page and "Not run yet" not in page


@pytest.mark.parametrize("low, high", [(0.66, 0.79), (0.2, 0.97), (0.965, 0.975), (0.9991, 0.9996)])
def test_accuracy_axes_label_at_least_three_levels_inside_the_data(low, high):
    import numpy as np

    from optimlab.lab.report.plots import metric_axis, pyplot

    plt = pyplot()
    figure, ax = plt.subplots()
    try:
        goal = Goal("p", "accuracy", True, (low + high) / 2)
        assert metric_axis(ax, goal, [np.array([low, high])]) == "logit scale"
        bottom, top = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if bottom <= t <= top]
        assert len(ticks) >= 3, ticks
        assert bottom <= low and high <= top
    finally:
        plt.close(figure)
