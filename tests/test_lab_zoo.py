"""The lab's optimizers come from the registry: every entry is offered by name (or refused, saying
why), works in the lab's training loop, and ``optimlab compare`` runs the ones that need help
(Muon beside AdamW, L-BFGS through a closure) end to end."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import optimlab
from optimlab import cli
from optimlab.lab.training.data import Split
from optimlab.lab.training.loop import StopReason, train
from optimlab.lab.training.specs import UnknownNameError
from optimlab.lab.training.zoo import (
    CLASSIC,
    OPTIMIZERS,
    REFUSED,
    LoopClosure,
    WithAdamW,
    get_optimizer,
    registry_name,
)
from optimlab.optimizers.registry import ENTRIES, REGISTRY
from tests.helpers import grad_sequence, same, snapshot, values

#: Small models step fastest on one torch thread (see tests/test_contract.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(seed: int = 0) -> nn.Module:
    """Weight matrices and bias vectors: parameters every optimizer (or its lab combination) takes."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def small_data() -> Split:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=generator)
    return Split(x, x.sum(1, keepdim=True) + 0.1 * torch.randn(16, 1, generator=generator))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registry_optimizer_is_offered_or_refused_with_a_reason(name):
    entry, lab_name = REGISTRY[name], registry_name(REGISTRY[name])
    assert (lab_name in OPTIMIZERS) != (lab_name in REFUSED)
    if lab_name in REFUSED:
        reason = REFUSED[lab_name]
        assert reason and "\n" not in reason
        with pytest.raises(UnknownNameError, match=f"optimizer {lab_name!r} is not available in the lab: "):
            get_optimizer(lab_name)
        return
    spec = get_optimizer(lab_name)
    low, high = entry.search_space["lr"]
    if lab_name in CLASSIC:  # a named classic: the class is the entry's
        assert spec.cls is entry.cls
    else:
        assert spec.lrs[0] == pytest.approx(low, rel=1e-2) and spec.lrs[-1] == pytest.approx(high, rel=1e-2)
    assert list(spec.lrs) == sorted(spec.lrs) and len(spec.lrs) >= 3
    # It works in the lab's loop (gradients, then step()), from the first rate of its grid.
    model = small_model()
    before = values(model.parameters())
    result = train(model, nn.functional.mse_loss, spec.make(list(model.parameters()), spec.lrs[0]), small_data(),
                   batch_size=8, steps=4)
    assert result.stop_reason is StopReason.MAX_STEPS and result.steps == 4
    assert not same(values(model.parameters()), before)


def test_classics_come_first_and_stay_the_default():
    assert tuple(OPTIMIZERS)[:len(CLASSIC)] == CLASSIC
    assert set(OPTIMIZERS) | set(REFUSED) == set(CLASSIC) | {registry_name(entry) for entry in ENTRIES}


def test_unknown_names_list_every_offered_optimizer():
    with pytest.raises(UnknownNameError) as raised:
        get_optimizer("lion")
    assert str(raised.value) == f"unknown optimizer 'lion'; valid names: {', '.join(OPTIMIZERS)}"


# -- Muon beside AdamW --------------------------------------------------------------------------
def muon_adamw(model: nn.Module, **kwargs) -> WithAdamW:
    return get_optimizer("muon").make(list(model.parameters()), 0.02, **kwargs)


def test_matrices_go_to_muon_and_the_rest_to_adamw():
    model = small_model()
    optimizer = muon_adamw(model, betas=(0.8, 0.9))
    main, rest = optimizer.parts["main"], optimizer.parts["rest"]
    assert isinstance(main, optimlab.Muon) and isinstance(rest, optimlab.AdamW)
    assert {id(p) for g in main.param_groups for p in g["params"]} == {id(p) for p in model.parameters() if p.dim() == 2}
    assert {id(p) for g in rest.param_groups for p in g["params"]} == {id(p) for p in model.parameters() if p.dim() < 2}
    assert main.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    assert rest.param_groups[0]["betas"] == (0.8, 0.9)
    # One lr and weight decay for both (Muon's default decay unless given).
    assert main.param_groups[0]["lr"] == rest.param_groups[0]["lr"] == 0.02
    assert main.param_groups[0]["weight_decay"] == rest.param_groups[0]["weight_decay"] == 0.1
    # The groups are the parts' own: a value written into them (a scheduler's) is the one they use.
    optimizer.param_groups[1]["lr"] = 0.5
    assert rest.param_groups[0]["lr"] == 0.5
    with pytest.raises(TypeError, match="neither Muon nor AdamW takes 'momentum_decay'"):
        muon_adamw(small_model(), momentum_decay=0.1)


def test_muon_with_adamw_keeps_a_groups_label_as_torch_optimizers_do():
    # a fine-tune names its groups ("head", "body"): a key no optimizer takes is kept, not refused
    model = small_model()
    matrices = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = get_optimizer("muon").make([{"params": matrices[:1] + others[:1], "group": "head", "lr": 0.1},
                                            {"params": matrices[1:] + others[1:], "group": "body"}], 0.02)
    assert [(g["group"], g["lr"]) for g in optimizer.param_groups] == [("head", 0.1), ("head", 0.1),
                                                                       ("body", 0.02), ("body", 0.02)]
    assert [g["group"] for g in optimizer.parts["main"].param_groups] == ["head", "body"]
    assert [g["group"] for g in torch.optim.AdamW([{"params": others[:1], "group": "head"}]).param_groups] == ["head"]


def step_all(optimizer: torch.optim.Optimizer, model: nn.Module, sequence: list) -> None:
    for grads in sequence:
        for p, g in zip(model.parameters(), grads):
            p.grad = g
        optimizer.step()


def test_muon_with_adamw_steps_as_the_two_optimizers_would():
    model, twin = small_model(), small_model()
    sequence = grad_sequence(list(model.parameters()), 5, seed=2)
    step_all(muon_adamw(model), model, sequence)
    matrices = [p for p in twin.parameters() if p.dim() == 2]
    others = [p for p in twin.parameters() if p.dim() < 2]
    muon = optimlab.Muon(matrices, lr=0.02, adjust_lr_fn="match_rms_adamw", ns_dtype=torch.float32)
    adamw = optimlab.AdamW(others, lr=0.02, weight_decay=0.1)
    for grads in sequence:
        for p, g in zip(twin.parameters(), grads):
            p.grad = g
        muon.step()
        adamw.step()
    assert same(values(model.parameters()), values(twin.parameters()))


def test_muon_with_adamw_checkpoints_go_on_bit_for_bit_and_bad_ones_change_nothing():
    sequence = grad_sequence(list(small_model().parameters()), 8, seed=3)
    whole_model = small_model()
    step_all(muon_adamw(whole_model), whole_model, sequence)

    model = small_model()
    first = muon_adamw(model)
    step_all(first, model, sequence[:4])
    saved = copy.deepcopy(first.state_dict())
    resumed = muon_adamw(model)
    resumed.load_state_dict(copy.deepcopy(saved))  # a copy: loaded tensors are stepped in place
    assert same(snapshot(resumed)["state"], snapshot(first)["state"])
    step_all(resumed, model, sequence[4:])
    assert same(values(model.parameters()), values(whole_model.parameters()))

    before = snapshot(resumed)
    damaged = {**saved, "rest": {**saved["rest"], "param_groups": saved["rest"]["param_groups"] * 2}}
    with pytest.raises(ValueError, match="parameter group"):
        resumed.load_state_dict(damaged)
    with pytest.raises(ValueError, match="expected the state dicts of 'main', 'rest'"):
        resumed.load_state_dict(saved["main"])
    assert same(snapshot(resumed), before)


# -- L-BFGS through a closure -----------------------------------------------------------------------
def test_lbfgs_in_the_loop_is_one_iteration_on_the_loops_gradients():
    """``step()`` after the loop's backward pass is ``step(closure)`` of L-BFGS with one iteration."""
    spec = get_optimizer("lbfgs")
    assert issubclass(spec.cls, LoopClosure)
    data = small_data()
    model, twin = small_model(), small_model()
    train(model, nn.functional.mse_loss, spec.make(list(model.parameters()), 0.1), data, batch_size=None, steps=5)
    reference = optimlab.LBFGS(twin.parameters(), lr=0.1, max_iter=1)

    def closure() -> torch.Tensor:
        reference.zero_grad()
        loss = nn.functional.mse_loss(twin(data.x), data.y)
        loss.backward()
        return loss

    for _ in range(5):
        reference.step(closure)
    assert same(values(model.parameters()), values(twin.parameters()))


def test_lbfgs_in_the_loop_refuses_a_second_evaluation():
    model = small_model()
    optimizer = get_optimizer("lbfgs").make(list(model.parameters()), 0.1, line_search_fn="strong_wolfe")
    with pytest.raises(RuntimeError, match=r"evaluates the loss once per step .*\(max_iter=1\) and no line search"):
        train(model, nn.functional.mse_loss, optimizer, small_data(), batch_size=None, steps=2)


# -- optimlab compare ------------------------------------------------------------------------------
def test_compare_runs_optimizers_beyond_the_classics(capsys, tmp_path):
    argv = ["compare", "--problem", "linreg", "--optimizers", "nadam,muon,lbfgs", "--lrs", "0.03,0.3",
            "--extra-seeds", "0", "--max-steps", "60", "--workers", "1", "--quiet", "--no-report",
            "--db", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "out")]
    status = cli.main(argv)
    text = capsys.readouterr().out
    assert status == 0, text
    assert "6 runs done now, 6 stored for this sweep" in text  # 3 optimizers x 2 lrs
    for label in ("NAdam", "Muon (2-d+, float32 Newton-Schulz) + AdamW (rest)", "LBFGS (one iteration per step)"):
        assert label in text
