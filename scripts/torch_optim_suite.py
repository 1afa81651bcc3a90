#!/usr/bin/env python3
"""Run torch's own optimizer tests against torch's classes and against optimlab's twins.

torch's ``test/test_optim.py`` (class ``TestOptimRenewed``) is driven by ``optim_db`` in
``torch.testing._internal.common_optimizers``, which ships in the torch wheel: each entry names
an optimizer class with the configurations and error cases to test it on. This script runs the
file with pytest twice, on the CPU:

1. as it is (the baseline: torch's classes);
2. with every entry's ``optim_cls`` replaced by optimlab's class of the same name, by a pytest
   plugin loaded before the test module is imported (configurations and error cases untouched);

and prints, per optimizer, how many tests passed with torch, how many with optimlab, and the
tests that pass with torch but not with optimlab.

    python scripts/torch_optim_suite.py --tests /path/to/test_optim.py
    python scripts/torch_optim_suite.py --tests /path/to/test_optim.py -k Adam --json
    python scripts/torch_optim_suite.py --tests T --keep logs/ --baseline-xml logs/torch.xml

The test file is not part of the wheel: give the path of a copy of torch's ``test/test_optim.py``.
It needs the ``expecttest`` package (torch's test utilities import it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_NAME = "optimlab_twins_plugin"

#: Loaded by pytest (``-p``) before collection, so before the test module reads ``optim_db``.
PLUGIN_SOURCE = '''\
"""Points every optim_db entry at optimlab's class of the same name."""
import optimlab
from torch.testing._internal import common_optimizers

for info in common_optimizers.optim_db:
    name = info.optim_cls.__name__
    twin = getattr(optimlab, name, None)
    if twin is None:
        raise RuntimeError(f"optimlab has no twin of torch.optim.{name}")
    info.optim_cls = twin
'''

#: Test ids end in ``_<Optimizer>_cpu_<dtype>`` (torch's device-type instantiation).
OPTIMIZER_IN_NAME = re.compile(r"_([A-Za-z]+)_cpu_[a-z0-9]+$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", required=True, type=Path, help="path to torch's test/test_optim.py")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, passed to both runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    parser.add_argument("--keep", type=Path, help="folder for each run's JUnit XML and pytest output")
    parser.add_argument("--baseline-xml", type=Path,
                        help="JUnit XML of an earlier baseline run to reuse instead of running torch's classes")
    args = parser.parse_args(argv)
    if not args.tests.is_file():
        parser.error(f"--tests: expected the path of torch's test_optim.py, got {args.tests} (no such file)")
    if args.baseline_xml is not None and not args.baseline_xml.is_file():
        parser.error(f"--baseline-xml: expected a JUnit XML file, got {args.baseline_xml} (no such file)")
    if importlib.util.find_spec("expecttest") is None:
        parser.error("torch's test utilities need the expecttest package: pip install expecttest")
    return args


def run_pytest(tests: Path, keyword: str | None, work: Path, label: str, twins: bool) -> Path:
    """Run the file once; returns the JUnit XML it wrote. Output goes to ``<label>.log``."""
    xml_path = work / f"{label}.xml"
    (work / "pytest.ini").write_text("[pytest]\n")  # keeps any project's pytest settings out
    cmd = [sys.executable, "-m", "pytest", str(tests.resolve()), "-q", "-c", str(work / "pytest.ini"),
           "--rootdir", str(work), "-p", "no:cacheprovider", f"--junitxml={xml_path}"]
    if keyword:
        cmd += ["-k", keyword]
    if twins:
        cmd += ["-p", PLUGIN_NAME]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTORCH_TESTING_DEVICE_ONLY_FOR="cpu",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    paths = [str(ROOT / "src"), str(work)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    with open(work / f"{label}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    # 0: all passed, 1: some failed; anything else means the run itself broke.
    if rc not in (0, 1) or not xml_path.is_file():
        tail = (work / f"{label}.log").read_text()[-3000:]
        raise SystemExit(f"pytest ({label}) exited with status {rc}:\n{tail}")
    return xml_path


def outcomes(xml_path: Path) -> dict[str, str]:
    """Test name -> "passed", "failed" or "skipped", from a JUnit XML file."""
    result = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            result[case.get("name")] = "failed"
        elif "skipped" in kinds:
            result[case.get("name")] = "skipped"
        else:
            result[case.get("name")] = "passed"
    return result


def optimizer_of(test_name: str) -> str:
    found = OPTIMIZER_IN_NAME.search(test_name)
    return found.group(1) if found else "(none)"


def figures(torch_runs: dict[str, str], optimlab_runs: dict[str, str]) -> dict[str, dict]:
    """Per optimizer: tests run, passed with torch, passed with optimlab, failing only with optimlab."""
    table: dict[str, dict] = {}
    for name in sorted(set(torch_runs) | set(optimlab_runs)):
        row = table.setdefault(optimizer_of(name), {"tests": 0, "torch_passed": 0, "optimlab_passed": 0,
                                                    "failing_only_with_optimlab": []})
        row["tests"] += 1
        row["torch_passed"] += torch_runs.get(name) == "passed"
        row["optimlab_passed"] += optimlab_runs.get(name) == "passed"
        if torch_runs.get(name) == "passed" and optimlab_runs.get(name) != "passed":
            row["failing_only_with_optimlab"].append(name)
    return dict(sorted(table.items(), key=lambda item: item[0].lower()))


def format_table(table: dict[str, dict]) -> str:
    lines = [f"{'optimizer':<12} {'tests':>5} {'torch':>6} {'optimlab':>8} {'only optimlab fails':>20}"]
    totals = [0, 0, 0, 0]
    for name, row in table.items():
        cells = [row["tests"], row["torch_passed"], row["optimlab_passed"], len(row["failing_only_with_optimlab"])]
        totals = [a + b for a, b in zip(totals, cells)]
        lines.append(f"{name:<12} {cells[0]:>5} {cells[1]:>6} {cells[2]:>8} {cells[3]:>20}")
    lines.append(f"{'total':<12} {totals[0]:>5} {totals[1]:>6} {totals[2]:>8} {totals[3]:>20}")
    failing = [(name, test) for name, row in table.items() for test in row["failing_only_with_optimlab"]]
    if failing:
        lines.append("\npassing with torch, failing with optimlab:")
        lines += [f"  {name}: {test}" for name, test in failing]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="torch-optim-suite-") as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{PLUGIN_NAME}.py").write_text(PLUGIN_SOURCE)
        baseline = args.baseline_xml or run_pytest(args.tests, args.keyword, work, "torch", twins=False)
        twins = run_pytest(args.tests, args.keyword, work, "optimlab", twins=True)
        torch_runs, optimlab_runs = outcomes(baseline), outcomes(twins)
        if args.baseline_xml is not None:  # a reused baseline may cover more tests than this -k run
            torch_runs = {name: torch_runs[name] for name in optimlab_runs if name in torch_runs}
        table = figures(torch_runs, optimlab_runs)
    print(json.dumps(table, indent=2) if args.json else format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
