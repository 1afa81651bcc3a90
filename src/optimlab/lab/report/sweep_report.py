"""The sweep report: one self-contained HTML file plus its PNG plots.

``write_report(store, sweep, out_dir)`` reads a sweep from the results store
(:class:`optimlab.lab.running.store.Store`), summarizes it with :func:`optimlab.lab.running.sweep.summarize`
(the same best-lr choice and ranking the sweep used) and writes into ``out_dir``:

* ``index.html``: the recommendation (sentences generated from the numbers,
  :func:`optimlab.lab.report.recommend.recommendation`), the ranked table, the plots and every run.
  The PNGs are embedded as base64 ``data:`` URIs, so the file can be mailed or archived alone;
* ``curves_steps.png``, ``curves_seconds.png``: training loss and validation metric against
  optimizer steps and against training seconds (median over seeds, min-max band) at each
  optimizer's best learning rate;
* ``steps_to_target.png``: steps and seconds to the target, ranked;
* ``lr_sensitivity.png``: best validation metric against the learning rate, diverged rates marked.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optimlab.lab.report import plots as report_plots
from optimlab.lab.report.plots import Entry
from optimlab.lab.report.recommend import (
    Goal,
    fmt_seconds,
    fmt_steps,
    lrs_diverged,
    recommendation,
)
from optimlab.lab.training.zoo import fmt_lr

PLOTS = [
    ("curves_steps.png", "Training loss and validation metric vs optimizer steps"),
    ("curves_seconds.png", "Training loss and validation metric vs training time"),
    ("steps_to_target.png", "Steps and seconds to the target, ranked"),
    ("lr_sensitivity.png", "Learning-rate sensitivity: the best validation metric at each learning rate"),
]


def goal_of(result: Any, runs: Sequence[Mapping[str, Any]]) -> Goal:
    """The :class:`Goal` of a sweep: metric, direction and target from its summary, the step
    budget from its runs (None if they differ), the description from the problem registry."""
    from optimlab.lab.problems.catalog import get_problem

    budgets = {r["max_steps"] for r in runs}
    try:
        description = get_problem(result.problem).description
    except (KeyError, ValueError):  # a problem no longer registered: the numbers still stand
        description = ""
    return Goal(problem=result.problem, metric=result.metric, higher_is_better=result.higher_is_better,
                target=result.target, max_steps=budgets.pop() if len(budgets) == 1 else None,
                description=description)


def planned_runs(spec: Mapping[str, Any] | None, ranked: Sequence[Any]) -> int | None:
    """How many runs the sweep's spec plans (None if the store has no spec): per optimizer, its
    grid times the grid seeds, plus the extra seeds of its best rate (none when every rate of a
    complete grid diverged, as the sweep then skips that phase)."""
    if not spec or "grids" not in spec:
        return None
    seeds = list(spec.get("seeds") or [])
    extra = [s for s in spec.get("best_seeds") or [] if s not in seeds]
    done = {s.optimizer: s for s in ranked}
    total = 0
    for name, grid in spec["grids"].items():
        total += len(grid) * len(seeds)
        s = done.get(name)
        all_diverged = s is not None and s.best_lr is None and len(s.by_lr) == len(grid)
        total += 0 if all_diverged else len(extra)
    return total


def entries(ranked: Sequence[Any], runs: Sequence[Mapping[str, Any]],
            curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Entry]:
    """Each optimizer's summary with the curves and spreads of its runs at the best lr."""
    out = []
    for s in ranked:
        at_best = [r for r in runs if r["optimizer"] == s.optimizer and s.best_lr is not None and r["lr"] == s.best_lr]
        kept = tuple(curves.get(r["key"], []) for r in at_best if not r["diverged"])
        steps = [r["steps_to_target"] for r in at_best if r["steps_to_target"] is not None]
        seconds = [r["seconds_to_target"] for r in at_best if r["seconds_to_target"] is not None]
        out.append(Entry(s, kept, sum(1 for r in at_best if r["diverged"]),
                         (min(steps), max(steps)) if steps else None,
                         (min(seconds), max(seconds)) if seconds else None))
    return out


def write_report(store: Any, sweep: str, out_dir: str | Path) -> Path:
    """Write the report of ``sweep`` into ``out_dir`` and return the path of its ``index.html``."""
    from optimlab.lab.running.sweep import summarize

    runs = store.runs(sweep)
    if not runs:
        known = [s["name"] for s in store.sweeps()]
        raise ValueError(f"write_report: no runs stored for sweep {sweep!r}; stored sweeps: "
                         f"{', '.join(map(repr, known)) if known else 'none'}")
    result = summarize(store, sweep)
    ranked = result.ranking()
    goal = goal_of(result, runs)
    plotted = entries(ranked, runs, store.curves(sweep))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report_plots.curves_figure(plotted, goal, "step", out / "curves_steps.png")
    report_plots.curves_figure(plotted, goal, "seconds", out / "curves_seconds.png")
    report_plots.target_bars_figure(plotted, goal, out / "steps_to_target.png")
    report_plots.sensitivity_figure(plotted, goal, out / "lr_sensitivity.png")
    info = store.sweep(sweep)
    planned = planned_runs(info["spec"] if info else None, ranked)
    index = out / "index.html"
    index.write_text(render(sweep, goal, ranked, runs, out, planned), encoding="utf-8")
    return index


def ranked_rows(ranked: Sequence[Any], goal: Goal) -> list[dict[str, str]]:
    """The ranked table as text cells (the CLI prints the same table)."""
    rows = []
    for rank, s in enumerate(ranked, start=1):
        reached = round(s.reached * s.runs)
        rows.append({
            "rank": str(rank),
            "optimizer": s.label,
            "best lr": ("none" if s.by_lr else "not run") if s.best_lr is None else fmt_lr(s.best_lr),
            "reached target": f"{reached}/{s.runs} seeds",
            "steps to target": "not reached" if s.steps_to_target is None else fmt_steps(s.steps_to_target),
            "seconds to target": fmt_seconds(s.seconds_to_target),
            f"best valid {goal.metric}": goal.fmt(s.best_valid),
            f"final valid {goal.metric}": goal.fmt(s.final_valid),
            f"test {goal.metric}": goal.fmt(s.test_metric),
            "lrs diverged": f"{lrs_diverged(s)}/{len(s.by_lr)}",
        })
    return rows


def text_table(rows: Sequence[Mapping[str, str]]) -> str:
    """Rows as a plain aligned text table (for terminals)."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def embed(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def esc(value: Any) -> str:
    return html.escape(str(value))


def run_rows(runs: Sequence[Mapping[str, Any]], goal: Goal, labels: Mapping[str, str]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    cells = []
    for r in sorted(runs, key=lambda r: (r["optimizer"], r["lr"], r["seed"])):
        cells.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in (
            labels.get(r["optimizer"], r["optimizer"]), fmt_lr(r["lr"]), r["seed"], r["phase"] or "",
            r["stop_reason"], r["steps"], num(r["seconds"], ".2f"), num(r["steps_to_target"], "d"),
            goal.fmt(r["best_valid"]), goal.fmt(r["final_valid"]), goal.fmt(r["test_metric"]))) + "</tr>")
    return "\n".join(cells)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1320px;
       padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em; }
.meta { color: #555; }
.warning { background: #fff4e5; border-left: 5px solid #ff7f0e; padding: 0.6em 1.2em; }
.recommendation { background: #eef6ee; border-left: 5px solid #2ca02c; padding: 0.8em 1.2em; }
.recommendation p { margin: 0.35em 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.93em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.65em; text-align: right; }
th { background: #f3f3f3; } td:nth-child(2), th:nth-child(2) { text-align: left; }
#runs td:first-child, #runs th:first-child { text-align: left; }
tr.winner td { background: #f1f9f1; font-weight: 600; }
figure { margin: 1.4em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.92em; }
dt { font-weight: 600; } dd { margin: 0 0 0.5em 1.2em; }
"""


def render(sweep: str, goal: Goal, ranked: Sequence[Any], runs: Sequence[Mapping[str, Any]], out: Path,
           planned: int | None = None) -> str:
    rows = ranked_rows(ranked, goal)
    head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
    body = "\n".join(("<tr class=\"winner\">" if r["rank"] == "1" else "<tr>") +
                     "".join(f"<td>{esc(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
    sentences = "".join(f"<p>{esc(s)}</p>" for s in recommendation(ranked, goal))
    figures = "\n".join(
        f'<figure><img src="{embed(out / name)}" alt="{esc(caption)}" data-file="{esc(name)}">'
        f"<figcaption>{esc(caption)} (also saved as <code>{esc(name)}</code>).</figcaption></figure>"
        for name, caption in PLOTS)
    labels = {s.optimizer: s.label for s in ranked}
    seeds = sorted({r["seed"] for r in runs})
    created = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    budget = f", budget {goal.max_steps} steps" if goal.max_steps else ""
    direction = ">=" if goal.higher_is_better else "<="
    incomplete = ""
    if planned is not None and len(runs) < planned:
        incomplete = (f'<p class="warning" id="incomplete">Incomplete: {len(runs)} of the {planned} planned runs are '
                      "stored (the sweep was interrupted). Run the same command again to finish it; finished runs "
                      "are not redone.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>optimlab: {esc(sweep)} ({esc(goal.problem)})</title>
<style>{STYLE}</style></head>
<body>
<h1>Which optimizer for {esc(goal.problem)}?</h1>
<p class="meta">{esc(goal.description)}. Sweep <code>{esc(sweep)}</code>: {len(runs)} runs of {len(ranked)}
optimizers, seeds {esc(", ".join(map(str, seeds)))}. Target: validation {esc(goal.metric)} {direction}
{esc(goal.fmt(goal.target))}{esc(budget)}. Written {esc(created)} by optimlab.</p>
{incomplete}

<h2>Recommendation</h2>
<div class="recommendation" id="recommendation">{sentences}</div>

<h2>Ranking</h2>
<table id="ranking"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<p class="meta">Medians over the seeds at each optimizer's best learning rate, chosen on the validation split from
the grid (a rate where a run diverged never wins). Ranked by the share of seeds reaching the target, then median
steps to it, then best validation {esc(goal.metric)}. "lrs diverged": rates of the grid where at least one run
diverged. The test {esc(goal.metric)} is measured once, on the trained models; it never chose anything.</p>

<h2>Plots</h2>
{figures}

<h2>How to read this</h2>
<dl>
<dt>Steps to target</dt><dd>Optimizer steps until the validation {esc(goal.metric)} first reached
{esc(goal.fmt(goal.target))}, checked at every evaluation; a seed that never did counts as infinitely slow, so the
median exists only when more than half the seeds reached it.</dd>
<dt>Seconds</dt><dd>Wall-clock training time, evaluation excluded. It depends on the machine and its load; steps
do not.</dd>
<dt>Bands</dt><dd>Median over seeds, band from the minimum to the maximum. Runs stop at the target, so a curve
ends where its first seed stopped; dots mark each seed's last evaluation.</dd>
<dt>Diverged</dt><dd>The training loss became non-finite or exploded (over 1000 times its first value); the run
was stopped and recorded as diverged.</dd>
</dl>

<details><summary>All {len(runs)} runs</summary>
<table id="runs"><thead><tr><th>optimizer</th><th>lr</th><th>seed</th><th>phase</th><th>stop</th><th>steps</th>
<th>seconds</th><th>steps to target</th><th>best valid</th><th>final valid</th><th>test</th></tr></thead><tbody>
{run_rows(runs, goal, labels)}
</tbody></table></details>
</body></html>
"""
