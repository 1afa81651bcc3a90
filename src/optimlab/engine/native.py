"""A small compiled helper for the fused path's per-step checks (``native.cpp``).

Confirming that a group is as it was on the last step takes, in Python, about ten calls into
torch's bindings per parameter (~0.1 ms for 148 tensors), as long as the kernel itself takes
for a million parameters; the helper reads the same facts from the tensors in one pass (a few
microseconds). It changes nothing the engine decides: without it, the same checks run in Python
(:meth:`optimlab.engine.fused.Steady.confirm`).

It is a CPython extension built against the running torch, with the system C++ compiler, and
kept in the kernel cache (``$OPTIMLAB_CACHE_DIR`` or ``~/.cache/optimlab``) under a key of its
source, torch's and Python's versions and the flags. The build takes ~15 s, so it never runs in
the step: a process that has stepped for a while without it builds it in a child process that
dies with it (:class:`Helper`), and picks it up when it is there. ``python -m
optimlab.engine.native_build`` builds it and waits (set-up does that); ``OPTIMLAB_NATIVE=0`` turns the
helper off.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType

import torch

from optimlab.engine.cpu import cache_dir, die_with_parent, run_compiler

SOURCE = Path(__file__).with_name("native.cpp")
MODULE_NAME = "_optimlab_native"
#: A build lock older than this is taken for the leftover of a build that died.
STALE_LOCK_S = 600
#: How often a process waiting for a build looks for its result.
POLL_S = 1.0
#: How long a process steps without the helper before it builds it (``OPTIMLAB_NATIVE_BUILD_AFTER``).
BUILD_AFTER_S = float(os.environ.get("OPTIMLAB_NATIVE_BUILD_AFTER", "20"))


def stop(process: subprocess.Popen) -> None:
    """End a child build that is still running (at this process's exit)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def enabled() -> bool:
    return os.environ.get("OPTIMLAB_NATIVE", "1") != "0"


def find_compiler() -> str | None:
    """$CXX, else c++, g++ or clang++ from PATH."""
    for name in ([os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]):
        path = shutil.which(name)
        if path:
            return path
    return None


def torch_dir() -> Path:
    return Path(torch.__file__).resolve().parent


def flags() -> list[str]:
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
    include = torch_dir() / "include"
    return ["-O2", "-std=c++20", "-shared", "-fPIC", "-w", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
            f"-I{include}", f"-I{include / 'torch' / 'csrc' / 'api' / 'include'}",
            f"-I{sysconfig.get_paths()['include']}"]


def link_flags() -> list[str]:
    lib = torch_dir() / "lib"
    return [f"-L{lib}", "-lc10", "-ltorch_cpu", "-ltorch_python", f"-Wl,-rpath,{lib}"]


def library_path() -> Path:
    """Where the helper for this source, torch and Python is kept."""
    key = hashlib.sha256("\0".join([
        SOURCE.read_text(), torch.__version__, str(getattr(torch.version, "git_version", "")), sys.version,
        sysconfig.get_config_var("EXT_SUFFIX") or "", sys.platform, *flags(), *link_flags(),
    ]).encode()).hexdigest()[:32]
    return cache_dir() / f"native-{key}.so"


def unavailable_reason() -> str | None:
    """Why the helper cannot be built here, or None."""
    if not enabled():
        return "turned off (OPTIMLAB_NATIVE=0)"
    if sys.platform != "linux":
        return f"built on Linux only, this is {sys.platform}"
    if not SOURCE.exists():
        return f"its source {SOURCE.name} is not installed with optimlab"
    if find_compiler() is None:
        return "no C++ compiler found (install g++ or clang++, or set CXX)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "Python's C headers are not installed (python3-dev)"
    if not (torch_dir() / "include" / "torch" / "csrc" / "autograd" / "python_variable.h").exists():
        return "this torch ships no C++ headers"
    return None


def build(path: Path | None = None) -> Path:
    """Compile the helper into ``path`` (atomically: other processes never see half a file).

    Raises :class:`~optimlab.engine.cpu.BuildError` (a RuntimeError) with the compiler's message
    if it fails. A build already running in
    another process (its lock younger than :data:`STALE_LOCK_S`) is waited for instead.
    """
    path = path or library_path()
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"optimlab native helper: {reason}")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(".lock")
    while True:
        if path.exists():
            return path
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
                    lock.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            time.sleep(POLL_S)
    try:
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-native-") as work:
            out = Path(work) / "native.so"
            command = [find_compiler() or "c++", *flags(), str(SOURCE), "-o", str(out), *link_flags()]
            run_compiler(command, out, path, timeout=600)
    finally:
        lock.unlink(missing_ok=True)
    return path


def load(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(path))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    module.set_types(torch.Tensor, torch.nn.Parameter)
    return module


class Helper:
    """The helper of this process: loaded, waiting to be built, being built, or unavailable.

    A missing helper is built by a child process, and only once this process has been
    stepping for :data:`BUILD_AFTER_S` seconds: a short script never pays for a build (it
    would compete for the cores), a long run soon gains the helper. The child dies with this
    process (a parent-death signal on Linux, and a terminate at exit), and a build it leaves
    unfinished leaves no file behind.
    """

    def __init__(self) -> None:
        self.module: ModuleType | None = None
        self.path: Path | None = None
        self.builder: subprocess.Popen | None = None
        self.next_look = 0.0
        self.build_at: float | None = None
        self.reason: str | None = "not looked for yet"
        self.looked = False
        self.lock = threading.Lock()

    def get(self) -> ModuleType | None:
        if self.module is not None or (self.looked and self.builder is None and self.build_at is None):
            return self.module
        now = time.monotonic()
        if self.looked and now < self.next_look:
            return None
        with self.lock:  # optimizers stepping in several threads start one build, not several
            if not self.looked:
                self.looked = True
                self.first_look()
            elif self.build_at is not None and now >= self.build_at:
                self.build_at = None
                self.start_build()
            elif self.builder is not None:
                self.next_look = now + POLL_S
                if self.builder.poll() is not None:
                    self.builder = None
                    self.try_load("the build did not produce the helper")
        return self.module

    def first_look(self) -> None:
        self.reason = unavailable_reason()
        if self.reason:
            return
        self.path = library_path()
        if self.path.exists():
            self.try_load("the cached helper did not load")
            return
        self.build_at = time.monotonic() + BUILD_AFTER_S
        self.next_look = self.build_at
        self.reason = f"not built yet (a build starts after {BUILD_AFTER_S:g} s of steps)"

    def start_build(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # this optimlab, installed or not
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        try:
            self.builder = subprocess.Popen([sys.executable, "-m", "optimlab.engine.native_build", "--background"],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, env=env,
                                            preexec_fn=die_with_parent if sys.platform == "linux" else None)
        except OSError as error:  # never let the helper stop a step
            self.reason = f"the build could not start: {error}"
            return
        atexit.register(stop, self.builder)
        self.reason = "being built"
        self.next_look = time.monotonic() + POLL_S

    def try_load(self, failure: str) -> None:
        try:
            assert self.path is not None
            self.module = load(self.path)
            self.reason = None
        except (OSError, ImportError, AttributeError, AssertionError) as error:
            self.reason = f"{failure}: {error}"


_helper = Helper()


def helper() -> ModuleType | None:
    """The loaded helper, or None (not built yet, being built, or unavailable: see :func:`status`)."""
    return _helper.module if _helper.module is not None else _helper.get()


def status() -> str:
    """One line on the helper of this process."""
    if _helper.module is not None:
        return f"loaded from {_helper.path}"
    return _helper.reason or "not loaded"


def main(argv: list[str] | None = None) -> int:
    """Build the helper now (if it is not in the cache) and say where it is."""
    argv = sys.argv[1:] if argv is None else argv
    quiet = "--background" in argv
    if quiet:
        if hasattr(os, "nice"):
            os.nice(19)  # started by a training process: leave the cores to it
        # Ended with its parent (SIGTERM): unwind, so the build removes its lock and temporary files.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        path = build()
        load(path)
    except (RuntimeError, OSError, ImportError) as error:
        if not quiet:
            print(f"optimlab native helper not built; steps check groups in Python instead: {error}",
                  file=sys.stderr)
        return 1
    if not quiet:
        print(f"optimlab native helper: {path}")
    return 0

