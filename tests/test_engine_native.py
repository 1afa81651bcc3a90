"""The native helper for steady steps (optimlab.engine.native): the same decisions as the
Python checks it replaces, on every kind of change between steps, and its build and loading."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import optimlab
from optimlab import engine

SHAPES = [(4, 3), (7,), (1,), (40,), (5, 2)]


@pytest.fixture(scope="module")
def built() -> Path:
    """The helper library in the default cache (built there by set-up, else built now)."""
    reason = engine.native.unavailable_reason()
    if reason:
        pytest.skip(f"no native helper here: {reason}")
    return engine.native.build()


@pytest.fixture(scope="module")
def native(built: Path) -> Any:
    return engine.native.load(built)


def steady_group(dtype: torch.dtype = torch.float32) -> tuple[Any, list[torch.nn.Parameter], Any]:
    params = [torch.nn.Parameter(torch.randn(s, dtype=dtype)) for s in SHAPES]
    opt = optimlab.SGD(params, lr=0.01, momentum=0.9)
    with engine.using("auto"):
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
    steady = engine.fused.group_cache(work_of(opt)).steady
    assert steady is not None, "three plain steps make a steady group"
    return opt, params, steady


def work_of(opt: Any) -> Any:
    group = opt.param_groups[0]
    return engine.collect(opt.transform_for(group), group, opt.state, opt.counts_steps, opt.owner, str)


class Sub(torch.Tensor):
    pass


def new_grads(params: list) -> None:
    for p in params:
        p.grad = torch.randn_like(p)


def retype_grad(params: list) -> None:
    params[1].grad.data = params[1].grad.data.double()


def noncontiguous_grad(params: list) -> None:
    params[0].grad = torch.randn(3, 4).t()


def sparse_grad(params: list) -> None:
    params[3].grad = torch.randn(40).to_sparse()


def subclass_grad(params: list) -> None:
    params[4].grad = torch.randn(5, 2).as_subclass(Sub)


def moved_param(params: list) -> None:
    params[2].data = params[2].data.clone()


def shrunk_param(params: list) -> None:
    params[3].data = params[3].data[:20]


def retyped_param(params: list) -> None:
    params[1].data = params[1].data.double()
    params[1].grad = torch.randn(7, dtype=torch.float64)


def transposed_param(params: list) -> None:
    params[4].data = params[4].data.t()  # the same address and size, no longer contiguous


def nothing(params: list) -> None:
    pass


CHANGES = [nothing, new_grads, retype_grad, noncontiguous_grad, sparse_grad, subclass_grad, moved_param,
           shrunk_param, retyped_param, transposed_param]
ACCEPTED = {nothing, new_grads}


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__)
def test_native_and_python_checks_decide_alike(native: Any, monkeypatch: Any, change: Any) -> None:
    decisions = {}
    for which in ("python", "native"):
        opt, params, steady = steady_group()
        change(params)
        work = work_of(opt)
        monkeypatch.setattr(engine.native, "helper", lambda: native if which == "native" else None)
        batch = steady.confirm(work)
        decisions[which] = batch is not None
        if batch is not None:
            n = len(params)
            assert list(steady.pointer_array[n:2 * n]) == [p.grad.data_ptr() for p in params]
            assert list(steady.pointer_array[:n]) == [p.data_ptr() for p in params]
    assert decisions["native"] == decisions["python"] == (change in ACCEPTED)


def test_native_confirm_rejects_malformed_calls(native: Any) -> None:
    opt, params, steady = steady_group()
    work = work_of(opt)
    pointers, numels, dtype = (steady.pointer_array.buffer_info()[0], steady.numel_array.buffer_info()[0],
                               native.scalar_type(params[0]))
    grads = [p.grad for p in params]
    assert native.confirm(list(params), grads, steady.params, pointers, numels, dtype)
    assert not native.confirm(list(params), grads[:-1], steady.params, pointers, numels, dtype)
    assert not native.confirm(tuple(params), grads, steady.params, pointers, numels, dtype)
    assert not native.confirm(list(params), [None] + grads[1:], steady.params, pointers, numels, dtype)
    assert not native.confirm(list(params), ["x"] + grads[1:], steady.params, pointers, numels, dtype)
    assert not native.confirm(list(params), grads, steady.params, pointers, numels,
                              native.scalar_type(torch.zeros(1, dtype=torch.float64)))
    assert not native.confirm(list(params), grads, steady.params, 0, numels, dtype)
    with pytest.raises(TypeError):
        native.confirm(list(params), grads)
    with pytest.raises(TypeError):
        native.scalar_type("not a tensor")
    assert work.params == params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_training_with_the_helper_matches_eager(native: Any, monkeypatch: Any, dtype: torch.dtype) -> None:
    monkeypatch.setattr(engine.native, "helper", lambda: native)
    results = []
    for path in ("eager", "auto"):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, dtype=dtype)) for s in SHAPES]
        opt = optimlab.AdamW(params, lr=0.01)
        with engine.using(path):
            for step in range(6):
                torch.manual_seed(100 + step)
                new_grads(params)
                opt.step()
        results.append(params)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-5,
                                   atol=1e-6)


# -- build and loading ------------------------------------------------------------------------
def test_turned_off_by_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("OPTIMLAB_NATIVE", "0")
    assert "OPTIMLAB_NATIVE=0" in engine.native.unavailable_reason()
    helper = engine.native.Helper()
    assert helper.get() is None and "OPTIMLAB_NATIVE=0" in helper.reason
    with pytest.raises(RuntimeError, match="OPTIMLAB_NATIVE=0"):
        engine.native.build()


def test_a_cached_helper_is_loaded_without_building(built: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))
    engine.native.library_path().parent.mkdir(parents=True)
    shutil.copy(built, engine.native.library_path())
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("nothing to build"))
    helper = engine.native.Helper()
    module = helper.get()
    assert module is not None and hasattr(module, "confirm") and helper.reason is None


def test_a_missing_helper_is_built_by_a_child_once_the_process_has_stepped_a_while(
        built: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """The step never waits for the compiler: the first look notes the time, a look after
    BUILD_AFTER_S starts a build in a child process that dies with this one, and a later look,
    once the build has put the library in place, loads it."""
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(engine.native, "POLL_S", 0.0)
    monkeypatch.setattr(engine.native, "BUILD_AFTER_S", 0.0)
    target = engine.native.library_path()
    started = []

    class FakeBuild:
        def __init__(self, command: list, **options: Any) -> None:
            started.append((command, options))
            self.done = False

        def poll(self) -> int | None:
            return 0 if self.done else None

    monkeypatch.setattr(subprocess, "Popen", FakeBuild)
    helper = engine.native.Helper()
    assert helper.get() is None and helper.reason.startswith("not built yet") and not started
    assert helper.get() is None and helper.reason == "being built"
    (command, options), = started
    assert command == [sys.executable, "-m", "optimlab.engine.native_build", "--background"]
    assert "start_new_session" not in options, "the build belongs to this process"
    assert options["preexec_fn"] is engine.cpu.die_with_parent
    package_root = str(Path(engine.native.__file__).resolve().parents[2])
    assert options["env"]["PYTHONPATH"].split(os.pathsep)[0] == package_root
    assert helper.get() is None  # still building
    target.parent.mkdir(parents=True)
    shutil.copy(built, target)
    helper.builder.done = True
    assert helper.get() is not None and helper.reason is None
    assert len(started) == 1


def test_a_short_script_never_starts_a_build(tmp_path: Path, monkeypatch: Any) -> None:
    if engine.native.unavailable_reason():
        pytest.skip(engine.native.unavailable_reason())
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(engine.native, "BUILD_AFTER_S", 3600.0)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("a build in a short script"))
    helper = engine.native.Helper()
    for _ in range(1000):
        assert helper.get() is None


def native_builds() -> list[int]:
    """Processes of this machine running the helper's background build."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"optimlab.engine.native_build" in command and b"--background" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_no_build_outlives_the_program_that_started_it(tmp_path: Path) -> None:
    """A program that ends while its helper build runs takes the build (and its compiler) with
    it, and the build leaves no lock or temporary file behind."""
    if engine.native.unavailable_reason():
        pytest.skip(engine.native.unavailable_reason())
    script = tmp_path / "short.py"
    script.write_text(
        "import sys, time\n"
        "from optimlab import engine\n"
        "helper = engine.native.Helper()\n"
        "helper.get(); helper.get()\n"
        "assert helper.builder is not None, helper.reason\n"
        "print(helper.builder.pid, flush=True)\n"
        "time.sleep(1.0)\n"  # the build is under way
        "import os; os._exit(0)\n")  # no atexit: the parent-death signal alone must end it
    env = {**os.environ, "OPTIMLAB_CACHE_DIR": str(tmp_path / "cache"), "OPTIMLAB_NATIVE_BUILD_AFTER": "0",
           "PYTHONPATH": str(Path(engine.native.__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    builder = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (Path(f"/proc/{builder}").exists() or builder in native_builds()):
        time.sleep(0.05)
    assert not Path(f"/proc/{builder}").exists() or b"Z" in (Path(f"/proc/{builder}") / "stat").read_bytes().split()[2:3]
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*")] if (tmp_path / "cache").exists() else []
    assert not [name for name in leftovers if name.endswith(".lock") or name.startswith(".build-")], leftovers


def test_a_failed_build_leaves_the_python_checks(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(engine.native, "POLL_S", 0.0)
    monkeypatch.setattr(engine.native, "BUILD_AFTER_S", 0.0)
    if engine.native.unavailable_reason():
        pytest.skip(engine.native.unavailable_reason())

    class FailedBuild:
        def __init__(self, *args: Any, **options: Any) -> None:
            pass

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(subprocess, "Popen", FailedBuild)
    helper = engine.native.Helper()
    assert helper.get() is None and helper.get() is None  # noted, then the build started
    assert helper.get() is None and "did not produce" in helper.reason
    assert helper.builder is None and helper.get() is None  # not tried again in this process


def test_a_compiler_error_is_reported_and_leaves_no_file(tmp_path: Path, monkeypatch: Any) -> None:
    if engine.native.unavailable_reason():
        pytest.skip(engine.native.unavailable_reason())
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(engine.native, "SOURCE", broken)
    target = tmp_path / "out" / "native-x.so"
    with pytest.raises(RuntimeError, match="broken.cpp"):
        engine.native.build(target)
    assert not target.exists() and not target.with_suffix(".lock").exists()
    assert [p.name for p in target.parent.iterdir()] == []


def test_a_stale_lock_is_taken_over(tmp_path: Path, monkeypatch: Any) -> None:
    if engine.native.unavailable_reason():
        pytest.skip(engine.native.unavailable_reason())
    target = tmp_path / "native-y.so"
    lock = target.with_suffix(".lock")
    lock.write_text("12345")
    old = time.time() - engine.native.STALE_LOCK_S - 10
    os.utime(lock, (old, old))
    ran = []

    def fake_run(command: list, **options: Any) -> Any:
        ran.append(command)
        Path(command[command.index("-o") + 1]).write_bytes(b"built")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert engine.native.build(target) == target
    assert target.read_bytes() == b"built" and not lock.exists() and len(ran) == 1


@pytest.mark.slow
def test_the_detached_build_produces_a_working_helper(tmp_path: Path, monkeypatch: Any) -> None:
    """The real thing, once: a process with an empty cache starts the build, goes on without
    the helper, and loads it when the detached build has put it in place (~15 s of compiling)."""
    if engine.native.unavailable_reason():
        pytest.skip(engine.native.unavailable_reason())
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(engine.native, "POLL_S", 0.2)
    monkeypatch.setattr(engine.native, "BUILD_AFTER_S", 0.0)
    helper = engine.native.Helper()
    assert helper.get() is None and helper.get() is None and helper.reason == "being built"
    helper.builder.wait(timeout=300)
    time.sleep(0.3)
    module = helper.get()
    assert module is not None, helper.reason
    assert engine.native.library_path().exists() and not engine.native.library_path().with_suffix(".lock").exists()
    opt, params, steady = steady_group()
    monkeypatch.setattr(engine.native, "helper", lambda: module)
    assert steady.confirm(work_of(opt)) is not None


def test_a_build_that_cannot_start_leaves_the_python_checks(tmp_path: Path, monkeypatch: Any) -> None:
    if engine.native.unavailable_reason():
        pytest.skip(engine.native.unavailable_reason())
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))

    def no_process(*args: Any, **options: Any) -> None:
        raise OSError("no such interpreter")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(engine.native, "BUILD_AFTER_S", 0.0)
    helper = engine.native.Helper()
    assert helper.get() is None and helper.get() is None and "could not start" in helper.reason
    assert helper.get() is None


def test_a_missing_source_is_a_reason_not_an_error(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(engine.native, "SOURCE", tmp_path / "gone.cpp")
    if sys.platform == "linux":
        assert "not installed" in engine.native.unavailable_reason()
    assert engine.native.Helper().get() is None
