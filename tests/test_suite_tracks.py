"""The suite's tracks come from the registry, and its command refuses bad names in one line."""

from __future__ import annotations

import pytest

from optimlab import cli
from optimlab.lab.suite.problems import workload
from optimlab.lab.suite.runner import one_workload_each, run_suite
from optimlab.lab.suite.setup import QUICK_OPTIMIZERS, suite_spec
from optimlab.lab.suite.tracks import BASELINE, optimizer_kwargs, registry_tracks
from optimlab.lab.training.zoo import REFUSED, registry_name
from optimlab.optimizers.registry import ENTRIES


def test_every_registry_optimizer_is_a_track_or_skipped_with_its_reason():
    tracks, skipped = registry_tracks()
    names = [t.name for t in tracks]
    assert names[-1] == BASELINE and tracks[-1].schedule == "warmup-cosine"
    for entry in ENTRIES:
        name = registry_name(entry)
        assert (name in names) != (name in skipped)
        if name in names:
            track = tracks[names.index(name)]
            assert dict(track.search_space) == {k: tuple(v) for k, v in entry.search_space.items()}
            assert set(track.defaults) == set(entry.search_space)
    assert skipped == {k: v for k, v in REFUSED.items() if k in skipped} and "sparseadam" in skipped


def test_search_space_names_become_optimizer_arguments():
    assert optimizer_kwargs("adam", {"lr": 0.01, "beta2": 0.99}) == (0.01, {"betas": [0.9, 0.99]})
    assert optimizer_kwargs("sgd", {"lr": 0.1, "momentum": 0.9}) == (0.1, {"momentum": 0.9})
    with pytest.raises(ValueError, match="does not take"):
        optimizer_kwargs("adagrad", {"lr": 0.1, "beta2": 0.9})


def test_the_quick_suite_has_five_workloads_and_six_optimizers_or_more(tmp_path):
    spec, _ = suite_spec("quick", db=tmp_path / "db.sqlite")
    assert len(spec.workloads) >= 5 and len(spec.tracks) == len(QUICK_OPTIMIZERS) + 1 >= 7
    assert spec.n_trials == 6 and spec.seeds == (1, 2, 3) and spec.storage.startswith("sqlite:///")
    full, _ = suite_spec("full", db=tmp_path / "db.sqlite")
    assert len(full.tracks) == len(registry_tracks()[0]) and full.seeds == tuple(range(1, 11))
    assert full.name != spec.name  # the name follows the settings, so a rerun resumes its own suite


@pytest.mark.parametrize("argv, message", [
    (["--optimizers", "nope"], "unknown optimizer 'nope'"),
    (["--optimizers", "sparseadam"], "'sparseadam' cannot run in the lab: it takes sparse gradients"),
    (["--problems", "nope"], "unknown problem 'nope'"),
    (["--trials", "0"], "--trials"),
    (["--jobs", "0"], "--jobs"),
    (["--worker", "--jobs", "2"], "--jobs cannot be given to a worker"),
])
def test_bad_arguments_are_usage_errors_naming_the_argument(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["suite", "--quick", *argv, "--db", str(tmp_path / "db.sqlite"), "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "db.sqlite").exists()  # nothing written


def test_several_jobs_take_the_costliest_workloads_first_under_the_suites_own_names(tmp_path):
    spec, _ = suite_spec("full", db=tmp_path / "db.sqlite")
    parts = one_workload_each(spec)
    assert sorted(p.workloads[0].problem for p in parts) == sorted(w.problem for w in spec.workloads)
    costs = [p.workloads[0].step_seconds * p.workloads[0].budget for p in parts]
    assert costs == sorted(costs, reverse=True)
    assert all(p.name == spec.name and p.tracks == spec.tracks and p.seeds == spec.seeds for p in parts)
    assert workload("cnn-fashion") == workload("cnn-fashion", 800)  # the cost is no part of a workload's identity
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="jobs must be an int >= 1"):
            run_suite(spec, jobs=jobs)


def test_every_workload_is_named_by_its_canonical_spec_and_keeps_its_budget():
    from optimlab.lab import get_problem
    from optimlab.lab.suite.problems import FULL, SUITE_FINETUNE

    for known in FULL:
        assert get_problem(known.problem).name == known.problem
        assert workload(known.problem) == known and workload(known.problem).step_seconds == known.step_seconds
    # written in any order, a spec finds the suite's workload: its budget, not the problem's own
    reordered = "finetune-sentiment:top_layers=1,train=512,valid=256,test=128,max_length=32,batch=16,target=0.7"
    assert workload(reordered) == workload(SUITE_FINETUNE) and workload(reordered).budget == 32


def test_problem_specs_with_parameters_pass_through_a_comma_separated_list(tmp_path):
    from optimlab.lab.running.arguments import specs_list

    assert specs_list("mlp-digits, quadratic:cond=1000,dim=5,rosenbrock") == [
        "mlp-digits", "quadratic:cond=1000,dim=5", "rosenbrock"]
    assert specs_list("a:x=1,y=2,b:z=3") == ["a:x=1,y=2", "b:z=3"]
    assert specs_list("") == []
    args = cli.build_parser().parse_args(["suite", "--problems", "quadratic:cond=1000,dim=5,logreg-cancer"])
    spec, _ = suite_spec("full", problems=specs_list(args.problems), db=tmp_path / "db.sqlite")
    assert [w.problem for w in spec.workloads] == ["quadratic:cond=1000.0,dim=5", "logreg-cancer"]
