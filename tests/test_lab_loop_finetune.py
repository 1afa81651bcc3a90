"""The training loop's fine-tuning options: gradient accumulation, autocast, hooks, resume."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import optimlab
from optimlab.finetune import (
    EarlyStopping,
    GradientClipping,
    GradualUnfreezing,
    trainable_count,
)
from optimlab.lab import Split, StopReason, train
from optimlab.lab.training.loop import Loop


def classification(n: int = 40, features: int = 6, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return Split(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long())


def mlp(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))


def accuracy_of(data: Split):
    def evaluate(model):
        out = model(data.x)
        return {"loss": float(F.cross_entropy(out, data.y)), "accuracy": float((out.argmax(1) == data.y).float().mean())}
    return evaluate


class Calls:
    """A hook that records what it sees."""

    def __init__(self) -> None:
        self.before, self.after, self.evaluations = [], [], []

    def before_step(self, loop: Loop) -> None:
        self.before.append((loop.step, all(p.grad is not None for p in loop.model.parameters())))

    def after_step(self, loop: Loop) -> None:
        self.after.append(loop.step)

    def after_evaluation(self, loop: Loop, evaluation) -> bool:
        self.evaluations.append(evaluation.step)
        return False


@pytest.mark.parametrize("micro, accumulate", [(4, 5), (5, 2), (1, 20)])
def test_accumulated_micro_batches_take_the_step_of_their_union(micro, accumulate):
    data = classification(n=20)
    a, b = mlp(), mlp()
    ra = train(a, F.cross_entropy, optimlab.SGD(a.parameters(), lr=0.5), data, batch_size=micro * accumulate,
               steps=3, shuffle=False)
    rb = train(b, F.cross_entropy, optimlab.SGD(b.parameters(), lr=0.5), data, batch_size=micro,
               accumulate=accumulate, steps=3, shuffle=False)
    assert rb.steps == 3 and rb.steps_per_epoch == ra.steps_per_epoch
    assert rb.losses == pytest.approx(ra.losses, rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_an_epochs_last_step_takes_the_micro_batches_left_weighted_by_rows():
    # 10 rows in micro-batches of 3 -> 4 micro-batches (3, 3, 3, 1); accumulate 3 -> steps of (3,3,3), (1).
    data = classification(n=10)
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, x):
            seen.append(len(x))
            return self.net(x)

    model = Spy()
    result = train(model, F.cross_entropy, optimlab.SGD(model.parameters(), lr=0.1), data, batch_size=3,
                   accumulate=3, epochs=2, shuffle=False)
    assert result.steps_per_epoch == 2 and result.steps == 4
    assert seen == [3, 3, 3, 1] * 2
    twin = mlp()
    twin.load_state_dict(model.net.state_dict())  # the recorded loss of a step is the mean over its rows
    reference = mlp()
    ref = train(reference, F.cross_entropy, optimlab.SGD(reference.parameters(), lr=0.1), data, batch_size=9,
                epochs=2, shuffle=False)
    assert result.losses == pytest.approx(ref.losses, rel=1e-5)


def test_accumulation_adds_the_penalty_once_per_step():
    data = classification(n=12)
    l2 = lambda m: 0.5 * sum((p ** 2).sum() for p in m.parameters())  # noqa: E731
    a, b = mlp(), mlp()
    ra = train(a, F.cross_entropy, optimlab.SGD(a.parameters(), lr=0.1), data, batch_size=12, steps=2,
               shuffle=False, penalty=l2)
    rb = train(b, F.cross_entropy, optimlab.SGD(b.parameters(), lr=0.1), data, batch_size=4, accumulate=3,
               steps=2, shuffle=False, penalty=l2)
    assert rb.losses == pytest.approx(ra.losses, rel=1e-5)


def test_accumulation_stops_on_a_non_finite_micro_batch_without_stepping():
    data = Split(torch.tensor([[1.0], [2.0], [float("nan")], [4.0]]), torch.zeros(4, 1))
    model = nn.Linear(1, 1)
    before = copy.deepcopy(model.state_dict())
    result = train(model, F.mse_loss, optimlab.SGD(model.parameters(), lr=0.1), data, batch_size=1,
                   accumulate=4, steps=5, shuffle=False)
    assert result.stop_reason is StopReason.DIVERGED and result.steps == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_autocast_runs_the_forward_pass_in_bfloat16_and_keeps_float32_weights():
    dtypes = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 2)

        def forward(self, x):
            out = self.lin(x)
            dtypes.append(out.dtype)
            return out

    model = Probe()
    result = train(model, F.cross_entropy, optimlab.AdamW(model.parameters(), lr=1e-2), classification(),
                   batch_size=10, steps=4, autocast=torch.bfloat16)
    assert result.steps == 4 and dtypes == [torch.bfloat16] * 4
    assert all(p.dtype == torch.float32 for p in model.parameters())
    train(model, F.cross_entropy, optimlab.AdamW(model.parameters(), lr=1e-2), classification(), batch_size=10,
          steps=1)
    assert dtypes[-1] == torch.float32


def test_hooks_are_called_in_their_places():
    data = classification()
    model = mlp()
    calls = Calls()
    train(model, F.cross_entropy, optimlab.SGD(model.parameters(), lr=0.1), data, batch_size=10, steps=6,
          evaluate=accuracy_of(data), eval_every=3, hooks=[calls])
    assert calls.before == [(i, True) for i in range(6)]  # before the step: gradients ready, step not counted
    assert calls.after == [1, 2, 3, 4, 5, 6]
    assert calls.evaluations == [0, 3, 6]


def test_clipping_hook_caps_the_update():
    data = classification()
    model = mlp()
    start = [p.detach().clone() for p in model.parameters()]
    clip = GradientClipping(1e-3)
    train(model, lambda out, y: 1000 * F.cross_entropy(out, y), optimlab.SGD(model.parameters(), lr=1.0), data,
          batch_size=None, steps=1, hooks=[clip])
    moved = torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(model.parameters(), start)))
    assert clip.last_norm > 1e-3 and clip.clipped == 1
    assert float(moved) == pytest.approx(1e-3, rel=1e-3)  # SGD with lr 1 moves by the clipped gradient


def test_early_stopping_hook_stops_the_run():
    data = classification()
    model = mlp()
    stopper = EarlyStopping("accuracy", patience=2)
    result = train(model, F.cross_entropy, optimlab.SGD(model.parameters(), lr=0.0), data, batch_size=10,
                   steps=100, evaluate=accuracy_of(data), eval_every=2, hooks=[stopper])  # lr 0: never improves
    assert result.stop_reason is StopReason.EARLY_STOP
    assert result.steps == 4 and [e.step for e in result.evaluations] == [0, 2, 4]
    assert "EarlyStopping stopped the run after 4 steps" in result.message


def test_gradual_unfreezing_hook_trains_the_head_first():
    data = classification()
    model = mlp()
    unfreezing = GradualUnfreezing(model, [["3"], ["0"]], every=3)
    first = model[0].weight.detach().clone()
    counts = []

    class Count:
        def after_step(self, loop):
            counts.append(trainable_count(loop.model))

    train(model, F.cross_entropy, optimlab.AdamW(model.parameters(), lr=0.1), data, batch_size=10, steps=2,
          hooks=[unfreezing, Count()])
    assert torch.equal(model[0].weight, first)  # frozen for the first 3 steps
    train(model, F.cross_entropy, optimlab.AdamW(model.parameters(), lr=0.1), data, batch_size=10, steps=2,
          hooks=[unfreezing, Count()])
    assert not torch.equal(model[0].weight, first)
    assert counts == [34, 34, 34 + 6 * 16 + 16, 34 + 6 * 16 + 16]


@pytest.mark.parametrize("stop_at", [3, 4, 6])  # mid-epoch, at an epoch's end, later epoch
def test_resume_continues_exactly_where_the_run_stopped(stop_at):
    data, valid = classification(n=40), classification(n=20, seed=1)
    kwargs = dict(batch_size=10, steps=10, seed=3, evaluate=accuracy_of(valid), eval_every=2)

    def setup():
        model = mlp(dropout=0.3)  # dropout: the global RNG must be restored as well
        opt = optimlab.AdamW(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.1, total_iters=10)
        return model, opt, sched

    model, opt, sched = setup()
    torch.manual_seed(7)
    full = train(model, F.cross_entropy, opt, data, scheduler=sched, **kwargs)

    saved = {}

    class StopAndSave:
        def after_step(self, loop):
            if loop.step == stop_at:
                saved.update(loop=loop.state_dict(), model=copy.deepcopy(loop.model.state_dict()),
                             opt=copy.deepcopy(loop.optimizer.state_dict()), sched=loop.scheduler.state_dict())
                return True
            return False

    first, opt1, sched1 = setup()
    torch.manual_seed(7)
    part = train(first, F.cross_entropy, opt1, data, scheduler=sched1, hooks=[StopAndSave()], **kwargs)
    assert part.steps == stop_at and part.stop_reason is StopReason.EARLY_STOP

    again, opt2, sched2 = setup()
    again.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    torch.manual_seed(12345)  # whatever the caller's RNG: the saved one is restored
    rest = train(again, F.cross_entropy, opt2, data, scheduler=sched2, resume=saved["loop"], **kwargs)
    assert rest.stop_reason is StopReason.MAX_STEPS and rest.steps == 10
    assert rest.losses == full.losses
    assert [e.step for e in rest.evaluations] == [e.step for e in full.evaluations]
    assert [e.metrics for e in rest.evaluations] == [e.metrics for e in full.evaluations]
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)
    assert rest.seconds >= part.seconds


def test_resume_with_accumulation_mid_epoch():
    data = classification(n=40)
    kwargs = dict(batch_size=5, accumulate=2, steps=8, seed=1)
    model = mlp()
    full = train(model, F.cross_entropy, optimlab.SGD(model.parameters(), lr=0.1), data, **kwargs)
    saved = {}

    class Stop:
        def after_step(self, loop):
            if loop.step == 3:
                saved.update(loop=loop.state_dict(), model=copy.deepcopy(loop.model.state_dict()))
                return True

    first = mlp()
    train(first, F.cross_entropy, optimlab.SGD(first.parameters(), lr=0.1), data, hooks=[Stop()], **kwargs)
    again = mlp()
    again.load_state_dict(saved["model"])
    rest = train(again, F.cross_entropy, optimlab.SGD(again.parameters(), lr=0.1), data, resume=saved["loop"],
                 **kwargs)
    assert rest.losses == full.losses
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_finetune_options_are_checked():
    data, model = classification(), mlp()
    opt = optimlab.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="accumulate must be an int >= 1 \\(micro-batches per step\\), got 0"):
        train(model, F.cross_entropy, opt, data, steps=1, accumulate=0)
    with pytest.raises(TypeError, match="autocast must be None or a torch.dtype.*got 'bf16'"):
        train(model, F.cross_entropy, opt, data, steps=1, autocast="bf16")
    with pytest.raises(TypeError, match="has none of the methods before_step, after_step, after_evaluation"):
        train(model, F.cross_entropy, opt, data, steps=1, hooks=[object()])
    with pytest.raises(ValueError, match="resume must be a Loop.state_dict"):
        train(model, F.cross_entropy, opt, data, steps=1, resume={"steps": 1})


def test_progress_bar_shows_the_loss_and_the_validation_metrics(monkeypatch):
    import tqdm.auto

    bars = []

    class Bar:  # records what the loop puts on the bar (tqdm's own drawing depends on timing)
        def __init__(self, **kwargs):
            self.kwargs, self.n, self.postfixes = kwargs, kwargs.get("initial", 0), []
            bars.append(self)

        def update(self, n):
            self.n += n

        def set_postfix(self, values, refresh=True):
            self.postfixes.append(dict(values))

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    data = classification()
    model = mlp()
    train(model, F.cross_entropy, optimlab.SGD(model.parameters(), lr=0.1), data, batch_size=10, steps=8,
          evaluate=accuracy_of(data), eval_every=4, progress=True)
    (bar,) = bars
    assert bar.kwargs["total"] == 8 and bar.n == 8
    last = bar.postfixes[-1]
    assert set(last) == {"loss", "valid_loss", "valid_accuracy"}
