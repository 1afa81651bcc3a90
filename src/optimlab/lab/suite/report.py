"""The suite's HTML report: one self-contained file (plots embedded) plus its PNGs.

Sections: the recommendation, the performance profiles with each track's scores, the
time-to-target tables (tuned and self-tuning; mean and 95% interval over the seeds, steps and
robust seconds, noisy timings flagged), and per workload the curves of every track's tuned
setting and the learning-rate sensitivity of its trials. Page layout and image embedding are
those of ``compare``'s report (:mod:`optimlab.lab.report.sweep_report`).
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

from optimlab.lab.report.sweep_report import STYLE, embed, esc
from optimlab.lab.suite.plots import profiles_figure, workload_figures

EXTRA_STYLE = """
#scores td:first-child, #scores th:first-child, .ttt td:first-child, .ttt th:first-child { text-align: left; }
td.noisy { background: #fff4e5; } td.miss { color: #999; } tr.baseline td { font-style: italic; }
"""


def cell(entry: dict[str, Any]) -> tuple[str, str]:
    """A time-to-target cell: steps mean [interval], robust seconds, seeds reached; its class."""
    steps, seconds = entry["steps"], entry["seconds"]
    if steps["mean"] is None:
        return f"never ({entry['seeds']} seeds)", "miss"
    span = "" if steps["low"] is None else f" [{steps['low']:.0f}&ndash;{steps['high']:.0f}]"
    secs = "" if seconds["mean"] is None else f"<br>{seconds['mean']:.3g} s" + (
        "" if seconds["low"] is None else f" [{seconds['low']:.2g}&ndash;{seconds['high']:.2g}]")
    noisy = " (noisy timing)" if entry["noisy"] else ""
    text = f"{steps['mean']:.0f}{span}{secs}{noisy}<br><small>{entry['reached']}/{entry['seeds']} seeds</small>"
    return text, "noisy" if entry["noisy"] else ""


def time_table(summary: dict[str, Any], setting: str, table_id: str) -> str:
    workloads = summary["workloads"]
    scores = summary["profiles"]["tuned_steps" if setting == "tuned" else "self_tuning_steps"]["scores"]
    head = "<th>track</th><th>score</th>" + "".join(
        f"<th>{esc(w)}<br><small>{esc(d['metric'])} {'&ge;' if d['higher_is_better'] else '&le;'} "
        f"{d['target']:g}, {d['budget']} steps</small></th>" for w, d in workloads.items())
    rows = []
    for track in sorted(summary["tracks"], key=lambda t: -scores[t]):
        cells = "".join(f'<td class="{cls}">{text}</td>' for text, cls in
                        (cell(d["tracks"][track][setting]) for d in workloads.values()))
        kind = ' class="baseline"' if summary["tracks"][track]["schedule"] != "constant" else ""
        rows.append(f"<tr{kind}><td>{esc(track)}</td><td>{scores[track]:.2f}</td>{cells}</tr>")
    return (f'<table class="ttt" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows)
            + "\n</tbody></table>")


def scores_table(summary: dict[str, Any]) -> str:
    p = summary["profiles"]
    rows = "\n".join(
        f"<tr><td>{esc(t)}</td><td>{esc(info['label'])}</td>"
        f"<td>{p['tuned_steps']['scores'][t]:.3f}</td><td>{p['tuned_seconds']['scores'][t]:.3f}</td>"
        f"<td>{p['self_tuning_steps']['scores'][t]:.3f}</td></tr>"
        for t, info in sorted(summary["tracks"].items(), key=lambda kv: -p["tuned_steps"]["scores"][kv[0]]))
    return ('<table id="scores"><thead><tr><th>track</th><th>optimizer</th><th>score, tuned (steps)</th>'
            "<th>score, tuned (seconds)</th><th>score, self-tuning (steps)</th></tr></thead><tbody>\n"
            + rows + "\n</tbody></table>")


def figure(folder: Path, name: str, caption: str) -> str:
    return (f'<figure><img src="{embed(folder / name)}" alt="{esc(caption)}" data-file="{esc(name)}">'
            f"<figcaption>{esc(caption)} (also saved as <code>{esc(name)}</code>).</figcaption></figure>")


def render(summary: dict[str, Any], verdicts: dict[str, Any], folder: Path, skipped: dict[str, str]) -> str:
    profile = figure(folder, "profiles.png", "Performance profiles: the fraction of workloads each track solves "
                     "within tau times the fastest track (score in brackets: area under the profile / 3)")
    per_workload = "\n".join(
        f"<h3>{esc(name)}</h3>\n" + "\n".join(figure(folder, f, c) for f, c in figs)
        for name, figs in ((w["problem"], workload_figures(summary, w, folder)) for w in summary["workloads"].values()))
    sentences = "".join(f"<p>{esc(v['text'])}</p>" for v in verdicts["workloads"])
    skipped_text = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in skipped.items())
    created = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>optimlab suite: {esc(summary['suite'])}</title>
<style>{STYLE}{EXTRA_STYLE}</style></head>
<body>
<h1>Which optimizer, which learning rate?</h1>
<p class="meta">Suite <code>{esc(summary['suite'])}</code>: {len(summary['workloads'])} workloads, {len(summary['tracks'])}
tracks, {summary['n_trials']} tuning trials per track and workload (Optuna TPE, median pruner), the tuned and the default
setting re-run with seeds {esc(', '.join(map(str, summary['seeds'])))}. Written {esc(created)} by optimlab.</p>

<h2>Recommendation</h2>
<div class="recommendation" id="recommendation"><p><strong>{esc(verdicts['overall']['text'])}</strong></p>
{sentences}</div>

<h2>Performance profiles and scores</h2>
{profile}
{scores_table(summary)}

<h2>Time to target, tuned</h2>
<p class="meta">Steps to the target: mean over the seeds that reached it [95% interval]; below it the robust seconds
(median step time x steps) [95% interval]. A timing whose step times varied more than 1.5x over the seeds, or whose
wall time exceeded its CPU time 1.5x, is marked noisy and left out of the seconds profile.</p>
{time_table(summary, 'tuned', 'time-to-target')}

<h2>Time to target, self-tuning (each optimizer at its defaults, no tuning)</h2>
{time_table(summary, 'default', 'self-tuning')}

<h2>Per workload</h2>
{per_workload}

<h2>Not in the suite</h2>
<ul id="skipped">{skipped_text or '<li>none: every registry optimizer ran</li>'}</ul>
</body></html>
"""


def write_suite_report(summary: dict[str, Any], verdicts: dict[str, Any], folder: str | Path,
                       skipped: dict[str, str]) -> Path:
    """Write ``index.html`` and the PNGs into ``folder``; the page through a temporary file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    profiles_figure(summary, folder / "profiles.png")
    page = render(summary, verdicts, folder, skipped)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".index.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(page)
    os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is for reading
    os.replace(temporary, folder / "index.html")
    return folder / "index.html"
