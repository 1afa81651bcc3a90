"""scripts/torch_optim_suite.py: an optim_db-driven test file run against torch's classes and
against optimlab's, through the script's pytest plugin, and its per-optimizer figures."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "torch_optim_suite.py"


def load_script():
    spec = importlib.util.spec_from_file_location("torch_optim_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


suite = load_script()

#: A test file written as torch's is: optim_db through ``@optims``, one class per device type.
OPTIM_DB_TESTS = textwrap.dedent('''
    import torch
    from torch.testing._internal.common_device_type import instantiate_device_type_tests
    from torch.testing._internal.common_optimizers import optim_db, optims
    from torch.testing._internal.common_utils import TestCase


    class TestWhichClass(TestCase):
        @optims(optim_db, dtypes=[torch.float32])
        def test_class_is_torchs(self, device, dtype, optim_info):
            self.assertTrue(optim_info.optim_cls.__module__.startswith("torch.optim"))

        @optims(optim_db, dtypes=[torch.float32])
        def test_configs_are_torchs(self, device, dtype, optim_info):
            # optim_db's own configurations construct the class the entry now names
            for optim_input in optim_info.optim_inputs_func(device=device):
                if optim_input.kwargs.get("capturable"):
                    continue
                params = [torch.nn.Parameter(torch.ones(2, 2))]
                optim_info.optim_cls(params, **optim_input.kwargs)


    instantiate_device_type_tests(TestWhichClass, globals(), only_for="cpu")
''')


def junit(cases: dict[str, str]) -> str:
    body = {"passed": "", "failed": "<failure message='x'/>", "skipped": "<skipped message='cuda'/>",
            "error": "<error message='x'/>"}
    rows = "".join(f"<testcase classname='T' name='{name}'>{body[kind]}</testcase>" for name, kind in cases.items())
    return f"<testsuites><testsuite name='pytest'>{rows}</testsuite></testsuites>"


def test_outcomes_and_figures_per_optimizer(tmp_path: Path) -> None:
    torch_xml, optimlab_xml = tmp_path / "torch.xml", tmp_path / "optimlab.xml"
    torch_xml.write_text(junit({"test_a_Adam_cpu_float32": "passed", "test_a_AdamW_cpu_float32": "passed",
                                "test_b_Adam_cpu_float32": "passed", "test_c_Adam_cpu_float32": "skipped",
                                "test_d_SGD_cpu_float64": "failed"}))
    optimlab_xml.write_text(junit({"test_a_Adam_cpu_float32": "passed", "test_a_AdamW_cpu_float32": "error",
                                   "test_b_Adam_cpu_float32": "failed", "test_c_Adam_cpu_float32": "skipped",
                                   "test_d_SGD_cpu_float64": "passed"}))
    torch_runs, optimlab_runs = suite.outcomes(torch_xml), suite.outcomes(optimlab_xml)
    assert torch_runs["test_c_Adam_cpu_float32"] == "skipped" and optimlab_runs["test_a_AdamW_cpu_float32"] == "failed"
    table = suite.figures(torch_runs, optimlab_runs)
    assert list(table) == ["Adam", "AdamW", "SGD"]
    assert table["Adam"] == {"tests": 3, "torch_passed": 2, "optimlab_passed": 1,
                             "failing_only_with_optimlab": ["test_b_Adam_cpu_float32"]}
    assert table["AdamW"]["failing_only_with_optimlab"] == ["test_a_AdamW_cpu_float32"]
    assert table["SGD"] == {"tests": 1, "torch_passed": 0, "optimlab_passed": 1, "failing_only_with_optimlab": []}
    text = suite.format_table(table)
    assert "total" in text and "Adam: test_b_Adam_cpu_float32" in text


def test_arguments_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        suite.main(["--tests", str(tmp_path / "missing.py")])
    assert exit_info.value.code == 2
    assert "--tests: expected the path of torch's test_optim.py" in capsys.readouterr().err


def test_optim_db_entries_point_at_optimlab_in_the_second_run(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Both runs through real pytest: torch's classes first, then optimlab's, patched into
    optim_db before the test module is imported; ``-k`` reaches both runs."""
    pytest.importorskip("expecttest", reason="torch's test utilities import expecttest (the test extra)")
    tests = tmp_path / "test_which_class.py"
    tests.write_text(OPTIM_DB_TESTS)
    assert suite.main(["--tests", str(tests), "-k", "Rprop or Muon", "--json", "--keep", str(tmp_path / "logs")]) == 0
    table = json.loads(capsys.readouterr().out)
    assert sorted(table) == ["Muon", "Rprop"]
    for name, row in table.items():
        assert row["tests"] == 2 and row["torch_passed"] == 2 and row["optimlab_passed"] == 1, (name, row)
        assert row["failing_only_with_optimlab"] == [f"test_class_is_torchs_{name}_cpu_float32"]
    assert (tmp_path / "logs" / "optimlab.xml").is_file() and (tmp_path / "logs" / "torch.log").is_file()

