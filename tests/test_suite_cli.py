"""``optimlab suite`` end to end on a tiny configuration: the report (in Chromium), the JSON, and
a suite killed mid-trial (SIGKILL) that resumes from its storage to the same numbers as one that
was never interrupted, with no trial or run done twice."""

from __future__ import annotations

import json
import math
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from optimlab.lab.suite.storage import finished_trials, open_study
from optimlab.lab.suite.studies import tpe_options
from optimlab.lab.suite.workers import claim, run_trials, worker_name
from tests.processes import group, wait_until
from tests.test_faults import environment

TINY = ["suite", "--problems", "logreg-cancer,linreg-diabetes", "--optimizers", "adam", "--trials", "3",
        "--seeds", "2", "--max-steps", "40", "--quiet", "--name", "tiny"]
TRACKS = ("adam", "adamw+warmup-cosine")
WORKLOADS = ("logreg-cancer", "linreg-diabetes")

#: Runs the command, pausing inside the PAUSE_AT-th optimizer step the suite times, so that the
#: test can kill it there: in the middle of a trial.
LAUNCHER = '''
import pathlib, sys, time
import torch
torch.set_num_threads(1)
from optimlab import cli
from optimlab.lab.suite import measure
pause_at, marker = int(sys.argv[1]), pathlib.Path(sys.argv[2])
original, calls = measure.StepTimer.after_step, [0]
def after_step(self, loop):
    calls[0] += 1
    if calls[0] == pause_at:
        marker.write_text("paused")
        time.sleep(600)
    return original(self, loop)
measure.StepTimer.after_step = after_step
sys.exit(cli.main(sys.argv[3:]))
'''


def argv(folder: Path, report: bool = True) -> list[str]:
    return [*TINY, "--db", str(folder / "db.sqlite"), "--out", str(folder), "--json", str(folder / "summary.json"),
            *([] if report else ["--no-report"])]


def kill_mid_trial(folder: Path, step: int) -> None:
    launcher, marker = folder / "launch.py", folder / "paused"
    folder.mkdir(parents=True, exist_ok=True)
    launcher.write_text(LAUNCHER)
    process = subprocess.Popen([sys.executable, str(launcher), str(step), str(marker), *argv(folder, False)],
                               env=environment(), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        wait_until(lambda: marker.exists() or process.poll() is not None, "the suite to pause mid-trial")
        if process.poll() is not None:
            pytest.fail(f"the suite ended before step {step}: {process.communicate()}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    wait_until(lambda: not group(process.pid), "the killed suite's processes to end", limit=15)


def trial_states(db: Path) -> dict[str, list[tuple[str, str]]]:
    """study name -> [(state, params as JSON)] of its trials, read with plain SQL."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT s.study_name, t.state, t.trial_id FROM trials t JOIN studies s "
                            "ON s.study_id = t.study_id").fetchall()
        params = {}
        for trial_id, name, value in conn.execute("SELECT trial_id, param_name, param_value FROM trial_params"):
            params.setdefault(trial_id, []).append((name, value))
    out: dict[str, list[tuple[str, str]]] = {}
    for study, state, trial_id in rows:
        out.setdefault(study, []).append((state, json.dumps(sorted(params.get(trial_id, [])))))
    return out


def run_to_the_end(folder: Path, argv: list[str]) -> str:
    """``optimlab argv`` in a process of its own, to the end (a module's fixture, so not in this
    process, whose capture and working folder belong to each test); returns what it printed."""
    done = subprocess.run([sys.executable, "-m", "optimlab", *argv], env=environment(), cwd=folder,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


def step_numbers(summary: dict) -> dict:
    """Everything in the JSON that does not depend on the clock."""
    keep = ("values", "seeds", "reached", "steps")
    return {t: {w: {s: {k: data["workloads"][w][s][k] for k in keep} for s in ("tuned", "default")}
                for w in WORKLOADS} | {"score": data["score"], "score_self_tuning": data["score_self_tuning"]}
            for t, data in summary["tracks"].items()}


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> dict[str, Path]:
    reference = tmp_path_factory.mktemp("reference")
    run_to_the_end(reference, argv(reference))
    resumed = tmp_path_factory.mktemp("resumed")
    kill_mid_trial(resumed, 150)
    before = trial_states(resumed / "db.sqlite")
    output = run_to_the_end(resumed, [*argv(resumed, False), "--jobs", "2"])  # resumed in two processes
    again = run_to_the_end(resumed, argv(resumed, False))
    return {"reference": reference, "resumed": resumed, "before": before, "output": output, "again": again}


def test_jobs_share_out_the_workloads_and_give_the_numbers_of_one_process(tmp_path):
    small = ["--trials", "2", "--seeds", "1", "--max-steps", "20"]
    summaries = {}
    for jobs in ("1", "2"):
        folder = tmp_path / f"jobs{jobs}"
        folder.mkdir()
        printed = run_to_the_end(folder, [*argv(folder, False), *small, "--jobs", jobs])
        assert ("2 jobs" in printed) == (jobs == "2")
        summaries[jobs] = json.loads((folder / "summary.json").read_text())
    assert step_numbers(summaries["2"]) == step_numbers(summaries["1"])
    assert trial_states(tmp_path / "jobs2" / "db.sqlite").keys() == trial_states(tmp_path / "jobs1" / "db.sqlite").keys()


@pytest.mark.slow
def test_the_json_summary_has_every_track_and_workload(suites):
    summary = json.loads((suites["reference"] / "summary.json").read_text())
    assert set(summary["tracks"]) == set(TRACKS)
    for data in summary["tracks"].values():
        assert 0 <= data["score"] <= 1 and set(data["workloads"]) == set(WORKLOADS)
        for entry in data["workloads"].values():
            assert entry["trials"] == 3 and entry["tuned"]["seeds"] == 2
            steps = entry["tuned"]["steps"]
            if entry["tuned"]["reached"]:
                assert steps["low"] is None or steps["low"] <= steps["mean"] <= steps["high"]
    assert "Overall:" in summary["recommendation"]["overall"]["text"]
    assert "AdamW + cosine" in summary["recommendation"]["overall"]["text"] or \
        "baseline" in summary["recommendation"]["overall"]["text"]


@pytest.mark.slow
def test_a_killed_suite_resumes_to_the_same_numbers_with_nothing_done_twice(suites):
    before = suites["before"]
    done_before = sum(state in ("COMPLETE", "PRUNED") for trials in before.values() for state, _ in trials)
    assert 0 < done_before < len(TRACKS) * len(WORKLOADS) * 3, "killed in the middle of the tuning"
    assert sum(state == "RUNNING" for trials in before.values() for state, _ in trials) == 1
    reference = json.loads((suites["reference"] / "summary.json").read_text())
    resumed = json.loads((suites["resumed"] / "summary.json").read_text())
    assert step_numbers(resumed) == step_numbers(reference)
    after = trial_states(suites["resumed"] / "db.sqlite")
    for study, trials in after.items():
        done = [params for state, params in trials if state in ("COMPLETE", "PRUNED")]
        if study.endswith("/runs"):
            assert len(done) == len(TRACKS) * 2 * 2  # tuned and default, 2 seeds, each once
        else:
            assert len(done) == 3 and len(set(done)) == 3, study  # three trials, none repeated
        for state, params in before.get(study, []):
            if state in ("COMPLETE", "PRUNED"):
                assert (state, params) in trials  # what was finished was kept, not redone
    assert "0 trials and runs done now" in suites["again"]


@pytest.mark.slow
def test_the_report_is_written_with_its_plots_and_tables(suites):
    folder = suites["reference"] / "tiny"
    page = (folder / "index.html").read_text(encoding="utf-8")
    for name in ("profiles.png", "curves_logreg-cancer.png", "lr_linreg-diabetes.png"):
        assert (folder / name).stat().st_size > 10_000
        assert f'data-file="{name}"' in page
    for anchor in ('id="recommendation"', 'id="scores"', 'id="time-to-target"', 'id="self-tuning"'):
        assert anchor in page


def test_run_trials_continues_to_the_count_and_draws_as_an_uninterrupted_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.sqlite'}"
    spec, tpe = {"n_trials": 4, "seed": 3}, tpe_options(4)

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 1e-3, 1.0, log=True)

    study = open_study(url, "s", spec, seed=3, tpe=tpe)
    assert run_trials(study, objective, 2) == 2
    again = open_study(url, "s", spec, seed=3, tpe=tpe)
    assert run_trials(again, objective, 4) == 2 and run_trials(again, objective, 4) == 0
    assert len(again.trials) == 4
    # the k-th trial's parameters depend on the finished trials only, not on who ran them
    fresh = open_study(f"sqlite:///{tmp_path / 'other.sqlite'}", "s", spec, seed=3, tpe=tpe)
    run_trials(fresh, objective, 4)
    assert [t.params for t in fresh.trials] == [t.params for t in again.trials]


def test_a_trial_of_a_killed_process_is_run_again_before_any_new_one(tmp_path):
    """A process of this machine that is gone has lost its trial at once (no grace period to wait):
    its retry, with the same parameters, takes its place, and the trials after it draw what an
    uninterrupted study draws."""
    spec, tpe = {"n_trials": 5, "seed": 1}, tpe_options(5)

    def objective(trial: optuna.Trial) -> float:
        return (math.log10(trial.suggest_float("x", 1e-3, 1.0, log=True)) + 1.5) ** 2

    reference = open_study(f"sqlite:///{tmp_path / 'reference.sqlite'}", "s", spec, seed=1, tpe=tpe)
    run_trials(reference, objective, 5)
    study = open_study(f"sqlite:///{tmp_path / 'killed.sqlite'}", "s", spec, seed=1, tpe=tpe)
    run_trials(study, objective, 2)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost = claim(study, 5)
    lost.suggest_float("x", 1e-3, 1.0, log=True)
    lost.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")  # as if that process had claimed it
    assert run_trials(study, objective, 5) == 3
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert trials[3].system_attrs["failed_trial"] == 2 and trials[3].params == trials[2].params
    assert [t.params for t in finished_trials(trials)] == [t.params for t in reference.trials]
    assert [t.value for t in finished_trials(trials)] == [t.value for t in reference.trials]


def suite_probe() -> str:
    from tests.test_report_browser import probe_script

    return probe_script({
        "tuned_rows": 'document.querySelectorAll("#time-to-target tbody tr").length',
        "self_tuning_rows": 'document.querySelectorAll("#self-tuning tbody tr").length',
        "score_rows": 'document.querySelectorAll("#scores tbody tr").length',
        "recommendation": 'document.querySelector("#recommendation").innerText.length',
    })


@pytest.mark.slow
def test_the_report_renders_in_chromium(suites, tmp_path):
    from tests import test_report_browser as browser

    if browser.CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package chromium)")
    page = suites["reference"] / "tiny" / "index.html"
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", suite_probe() + "</body>"), encoding="utf-8")
    done = browser.chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = browser.re.search(r'<pre id="browser-check">([^<]*)</pre>', done.stdout)
    assert found, f"the probe did not run; chromium said: {done.stderr[-2000:]}"
    rendered = json.loads(found.group(1))
    images = 1 + 2 * len(WORKLOADS)  # the profiles; per workload, curves and lr sensitivity
    assert rendered == {**rendered, "images": images, "decoded": images, "laid_out": images,
                        "tuned_rows": len(TRACKS), "self_tuning_rows": len(TRACKS), "score_rows": len(TRACKS)}
    assert rendered["recommendation"] > 100


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_naming_this_process_that_it_did_not_claim_is_lost(tmp_path):
    """A process restarted with the pid of the one that was killed (a container's) finds that one's
    trial RUNNING under its own name: not one it runs, so lost at once, and run again first."""
    study = open_study(f"sqlite:///{tmp_path / 'optuna.sqlite'}", "s", {"n_trials": 2}, seed=0, tpe=tpe_options(2))
    left = study.ask()  # as the earlier process did, before it was killed
    x = left.suggest_float("x", 1e-3, 1.0, log=True)
    left.set_user_attr("worker", worker_name())
    seen = []
    assert run_trials(study, lambda trial: seen.append(trial.suggest_float("x", 1e-3, 1.0, log=True)) or 0.0, 2) == 2
    assert seen[0] == x and [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
