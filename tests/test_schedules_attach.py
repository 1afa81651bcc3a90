"""Schedules attached to optimizers: the Scheduler (torch's LRScheduler protocol, any optimizer)
and the direct form (a schedule given to an optimlab optimizer in place of a number)."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch.optim import lr_scheduler as L

import optimlab
from optimlab import schedules as S

STEPS = 60


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


def batches(steps: int = STEPS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 1, generator=g,
                                                                                 dtype=torch.float64))
            for _ in range(steps)]


def train(net, opt, data, scheduler=None, each_step=None) -> list[float]:
    """Train; returns the lr of group 0 used at each step."""
    used = []
    for t, (x, y) in enumerate(data):
        if each_step is not None:
            each_step(t, opt)
        used.append(float(opt.param_groups[0]["lr"]))
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return used


def flat(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


LR = S.sequence(S.linear_warmup(0.1, 10), S.cosine(0.1, 50, floor=0.01))
MOMENTUM = S.cyclic(0.95, 0.85, 15)


# -- the Scheduler ------------------------------------------------------------------------------------
def test_scheduler_follows_the_lr_protocol():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    sched = S.Scheduler(opt, {"lr": LR})
    assert isinstance(sched, L.LRScheduler) and sched.optimizer is opt
    assert sched.last_epoch == 0 and sched.base_lrs == [0.5]
    assert opt.param_groups[0]["lr"] == LR(0) == sched.get_last_lr()[0]  # step 0 written on construction
    for t in range(1, 30):
        opt.step()
        sched.step()
        assert sched.last_epoch == t and sched.get_last_lr() == [LR(t)] == sched.get_lr()


def test_scheduler_drives_torch_and_optimlab_sgd_identically():
    data = batches()
    runs = []
    for make in (torch.optim.SGD, optimlab.SGD):
        net = model()
        opt = make(net.parameters(), lr=1.0, momentum=0.5, weight_decay=0.0)
        sched = S.Scheduler(opt, {"lr": LR, "momentum": MOMENTUM, "weight_decay": S.linear(0.0, 1e-2, STEPS)})
        momenta = []
        used = train(net, opt, data, sched, each_step=lambda t, o: momenta.append(o.param_groups[0]["momentum"]))
        runs.append((used, momenta, flat(net)))
    (lr_a, m_a, p_a), (lr_b, m_b, p_b) = runs
    assert lr_a == lr_b == S.trace(LR, STEPS) and m_a == m_b == S.trace(MOMENTUM, STEPS)
    # the same values reach both; the two optimizers round their arithmetic differently
    torch.testing.assert_close(p_a, p_b, rtol=1e-12, atol=1e-14)


def test_relative_schedules_multiply_each_groups_base_value_like_torch():
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    groups = [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.02}]
    ours, theirs = torch.optim.SGD(copy.deepcopy(groups)), torch.optim.SGD(copy.deepcopy(groups))
    sched = S.Scheduler(ours, {"lr": S.step_decay(1.0, 7, 0.5)}, relative=True)
    torch_sched = L.StepLR(theirs, 7, 0.5)
    for _ in range(40):
        assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]
        ours.step(), theirs.step(), sched.step(), torch_sched.step()
    assert sched.base_values == [0.1, 0.02]


def test_per_group_lists_group_selection_and_tuple_entries():
    a, b, c = (torch.zeros(1, requires_grad=True) for _ in range(3))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}, {"params": [c]}], lr=1e-3)
    beta1 = S.linear(0.5, 0.9, 10)
    sched = S.Scheduler(opt, {"lr": [S.constant(0.3), None], "betas": (beta1, None)}, groups=[0, 1])
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.5, 1e-3]
    for _ in range(12):
        opt.step()
        sched.step()
    assert [g["betas"] for g in opt.param_groups] == [(0.9, 0.999), (0.9, 0.999), (0.9, 0.999)]
    alias = torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    S.Scheduler(alias, {"beta2": S.constant(0.99), "beta1": beta1})
    assert alias.param_groups[0]["betas"] == (0.5, 0.99)


def test_tensor_values_are_updated_in_place():
    p = torch.zeros(1, requires_grad=True)
    lr = torch.tensor(0.1)
    opt = torch.optim.SGD([p], lr=lr)
    sched = S.Scheduler(opt, {"lr": S.cosine(0.1, 10)})
    for t in range(1, 12):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(S.cosine(0.1, 10)(t), rel=1e-6)
    assert sched.get_last_lr()[0] is not lr  # a copy, as torch returns


@pytest.mark.parametrize("load_optimizer_first", [True, False])
def test_scheduler_state_dict_round_trip_mid_schedule(load_optimizer_first):
    data = batches()
    spec = {"lr": LR, "momentum": MOMENTUM}
    net = model()
    opt = optimlab.SGD(net.parameters(), lr=1.0, momentum=0.5)
    full = train(net, opt, data, S.Scheduler(opt, spec))
    whole = flat(net)

    net = model()
    opt = optimlab.SGD(net.parameters(), lr=1.0, momentum=0.5)
    sched = S.Scheduler(opt, spec)
    first = train(net, opt, data[:23], sched)
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # as Hugging Face's Trainer loads it

    net2 = model(seed=5)
    net2.load_state_dict(saved["model"])
    opt2 = optimlab.SGD(net2.parameters(), lr=7.0, momentum=0.1)
    if load_optimizer_first:
        opt2.load_state_dict(saved["opt"])
    sched2 = S.Scheduler(opt2, spec)
    sched2.load_state_dict(saved["sched"])
    if not load_optimizer_first:
        opt2.load_state_dict(saved["opt"])
    assert sched2.last_epoch == 23 and opt2.param_groups[0]["lr"] == LR(23)
    rest = train(net2, opt2, data[23:], sched2)
    assert first + rest == full and torch.equal(flat(net2), whole)


def test_scheduler_with_plateau_round_trips_and_feeds_metrics():
    p = torch.zeros(1, requires_grad=True)
    metrics = [3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    spec = lambda: {"lr": S.linear_warmup(1.0, 4) * S.reduce_on_plateau(0.1, factor=0.5, patience=1)}  # noqa: E731
    opt = torch.optim.SGD([p], lr=0.0)
    sched = S.Scheduler(opt, spec())
    lrs = []
    for m in metrics:
        opt.step()
        sched.step(m)
        lrs.append(sched.get_last_lr()[0])
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.05], rel=1e-15) and lrs[-1] == 0.1 * 0.5**5

    opt2 = torch.optim.SGD([p], lr=0.0)
    sched2 = S.Scheduler(opt2, spec())
    for m in metrics[:5]:
        sched2.step(m)
    state = pickle.loads(pickle.dumps(sched2.state_dict()))
    opt3 = torch.optim.SGD([p], lr=0.0)
    sched3 = S.Scheduler(opt3, spec())
    sched3.load_state_dict(state)
    rest = []
    for m in metrics[5:]:
        sched3.step(m)
        rest.append(sched3.get_last_lr()[0])
    assert rest == lrs[5:]
    with pytest.raises(TypeError, match="metrics"):
        S.Scheduler(torch.optim.SGD([p]), {"lr": LR}).step(0.5)


SCHEDULER_ERRORS = [
    (lambda o: S.Scheduler(object(), {"lr": LR}), TypeError, "optimizer"),
    (lambda o: S.Scheduler(o, {}), TypeError, "schedules"),
    (lambda o: S.Scheduler(o, {"momentum": LR}), ValueError, "'momentum'"),
    (lambda o: S.Scheduler(torch.optim.SGD(o.param_groups[0]["params"]), {"beta1": LR}), ValueError, "betas"),
    (lambda o: S.Scheduler(o, {"betas": (LR, LR, LR)}), ValueError, "betas[2]"),
    (lambda o: S.Scheduler(o, {"beta1": (LR, None)}), TypeError, "beta1"),
    (lambda o: S.Scheduler(o, {"lr": LR, "betas": (None, 0.99), "beta2": LR}), ValueError, "two schedules"),
    (lambda o: S.Scheduler(o, {"lr": [LR, LR, LR]}), ValueError, "'lr'"),
    (lambda o: S.Scheduler(o, {"lr": "0.1"}), TypeError, "'lr'"),
    (lambda o: S.Scheduler(o, {"lr": LR}, groups=[2]), ValueError, "groups"),
    (lambda o: S.Scheduler(o, {"lr": LR}, relative=1), TypeError, "relative"),
    (lambda o: S.Scheduler(o, {"lr": LR, "weight_decay": LR, 3: LR}), TypeError, "names"),
]


@pytest.mark.parametrize("make, error, text", SCHEDULER_ERRORS, ids=[t for _, _, t in SCHEDULER_ERRORS])
def test_scheduler_bad_arguments(make, error, text):
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    with pytest.raises(error) as info:
        make(opt)
    assert text in str(info.value)


def test_scheduler_refuses_a_range_the_optimlab_optimizer_rejects():
    opt = optimlab.Adam([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match=r"betas\[0\] \(highest value of cyclic"):
        S.Scheduler(opt, {"beta1": S.cyclic(0.9, 1.05, 10)})
    with pytest.raises(ValueError, match="lowest value"):
        S.Scheduler(opt, {"lr": S.linear(1.0, -1.0, 10)}, relative=True)
    S.Scheduler(opt, {"beta1": S.cyclic(0.9, 0.99, 10)})  # in range: fine


# -- the direct form ----------------------------------------------------------------------------------
def test_direct_schedules_give_the_trajectory_of_values_written_by_hand():
    data = batches()
    weight_decay = S.linear(0.0, 0.1, 40)
    beta1 = S.cosine(0.95, STEPS, floor=0.8)
    eps = S.exponential(1e-3, 0.9)
    net = model()
    direct = optimlab.Adam(net.parameters(), lr=LR, betas=(beta1, 0.99), weight_decay=weight_decay, eps=eps)
    assert direct.param_groups[0]["lr"] == LR(0) and direct.defaults["lr"] is LR
    used = train(net, direct, data)
    assert used == S.trace(LR, STEPS)  # before each step the group shows the value that step uses
    assert direct.schedules.t == STEPS
    net_direct = flat(net)

    net = model()
    by_hand = optimlab.Adam(net.parameters(), lr=0.0, betas=(0.0, 0.99), weight_decay=0.0, eps=1.0)

    def write(t, opt):
        opt.param_groups[0].update(lr=LR(t), betas=(beta1(t), 0.99), weight_decay=weight_decay(t), eps=eps(t))

    train(net, by_hand, data, each_step=write)
    assert torch.equal(flat(net), net_direct)

    net = model()
    via_scheduler = optimlab.Adam(net.parameters(), lr=0.0, weight_decay=0.0, eps=1.0)
    train(net, via_scheduler, data, S.Scheduler(via_scheduler, {"lr": LR, "beta1": beta1, "beta2": 0.99,
                                                                "weight_decay": weight_decay, "eps": eps}))
    assert torch.equal(flat(net), net_direct)


def test_direct_step_count_is_the_schedule_step():
    p = torch.zeros((), dtype=torch.float64, requires_grad=True)
    lr = S.one_cycle(0.5, 30)
    opt = optimlab.SGD([p], lr=lr)
    for _ in range(25):
        p.grad = torch.ones((), dtype=torch.float64)
        opt.step()
    assert p.item() == pytest.approx(-sum(lr(t) for t in range(25)), rel=1e-14)


def test_direct_per_group_schedules_and_groups_added_later():
    a, b, c = (torch.zeros(1, requires_grad=True) for _ in range(3))
    lr_b = S.exponential(0.2, 0.5)
    opt = optimlab.SGD([{"params": [a]}, {"params": [b], "lr": lr_b}], lr=0.1)
    for _ in range(3):
        opt.step()
    opt.add_param_group({"params": [c], "lr": S.linear(0.0, 1.0, 10)})  # follows the optimizer's own count
    # the groups show the values the coming step uses: step 3
    assert opt.schedules.t == 3 and [g["lr"] for g in opt.param_groups] == [0.1, lr_b(3), 0.3]
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == [0.1, lr_b(4), 0.4]
    with pytest.raises(ValueError, match="lowest value"):
        opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": S.linear(1.0, -1.0, 5)})
    assert len(opt.param_groups) == len(opt.schedules.groups) == 3
    opt.param_groups[2]["lr"] = S.constant(0.01)  # a new schedule, assigned: adopted at the next step
    opt.param_groups[0]["momentum"] = S.linear(0.0, 0.5, 10)
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == [0.1, lr_b(5), 0.01] and opt.param_groups[0]["momentum"] == 0.25
    assert "Schedule" not in repr(opt.state_dict()["param_groups"])


@pytest.mark.parametrize("via", ["pickle", "state_dict"])
def test_direct_schedules_survive_checkpoints_mid_schedule(via):
    data = batches()
    plateau_args = dict(factor=0.5, patience=2)

    def make(net):
        lr = S.linear_warmup(1.0, 5) * S.reduce_on_plateau(0.05, **plateau_args)
        return optimlab.SGD(net.parameters(), lr=lr, momentum=MOMENTUM), lr.factors[1]

    def run(net, opt, plateau, part):
        used = []
        for t, (x, y) in part:
            used.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
            plateau.step(round(loss.item(), 1))
        return used

    net = model()
    opt, plateau = make(net)
    full = run(net, opt, plateau, enumerate(data))
    assert min(full[5:]) < 0.05  # the plateau did reduce
    whole = flat(net)

    net = model()
    opt, plateau = make(net)
    first = run(net, opt, plateau, list(enumerate(data))[:31])
    if via == "pickle":
        net2, opt2 = pickle.loads(pickle.dumps((net, opt)))
        plateau2 = next(p for p in opt2.schedules.stateful())
    else:
        saved = torch.load(_saved(opt.state_dict()), weights_only=True)
        assert saved["schedules"]["t"] == 31
        net2 = model()
        net2.load_state_dict(net.state_dict())
        opt2, plateau2 = make(net2)
        opt2.load_state_dict(saved)
    rest = run(net2, opt2, plateau2, list(enumerate(data))[31:])
    assert first + rest == full and torch.equal(flat(net2), whole)


def _saved(obj) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_direct_state_dict_loads_into_torch_and_back():
    net = model()
    opt = optimlab.SGD(net.parameters(), lr=LR, momentum=0.9)
    train(net, opt, batches(12))
    state = opt.state_dict()
    twin = torch.optim.SGD(model().parameters(), lr=0.5, momentum=0.9)
    twin.load_state_dict(state)  # the extra "schedules" key is ignored by torch
    assert twin.param_groups[0]["lr"] == LR(12)  # the value for the coming step
    plain = optimlab.SGD(model().parameters(), lr=0.5, momentum=0.9)
    plain.load_state_dict(twin.state_dict())
    assert "schedules" not in plain.state_dict()
    again = optimlab.SGD(model().parameters(), lr=LR, momentum=0.9)
    again.load_state_dict(twin.state_dict())  # no schedule state: the count is kept (0)
    assert again.schedules.t == 0
    with pytest.raises(ValueError, match="schedules"):
        again.load_state_dict({**state, "schedules": {"t": -1, "stateful": []}})
    with pytest.raises(ValueError, match="stateful"):
        again.load_state_dict({**state, "schedules": {"t": 3, "stateful": [{}]}})
    assert again.schedules.t == 0


def test_scheduling_a_value_twice_is_an_error():
    p = torch.zeros(1, requires_grad=True)
    opt = optimlab.SGD([p], lr=S.cosine(0.1, 100))
    with pytest.raises(ValueError, match="schedule each hyperparameter in one place"):
        S.Scheduler(opt, {"lr": S.cosine(0.1, 10)})
    S.Scheduler(opt, {"momentum": S.constant(0.5)})  # another value: fine
    lambda_lr = L.LambdaLR(opt, lambda t: 0.5**t)
    p.grad = torch.ones(1)
    opt.step()
    lambda_lr.step()
    before = p.detach().clone()
    with pytest.raises(RuntimeError, match=r"lr follows cosine.*torch.optim.lr_scheduler"):
        opt.step()
    assert torch.equal(p, before)  # the refused step changed nothing


def test_checks_accept_schedules_and_check_their_range():
    params = [torch.zeros(1, requires_grad=True)]
    with pytest.raises(ValueError, match=r"betas\[0\] \(highest value of cyclic.*must be in \[0, 1\), got 1.2"):
        optimlab.Adam(params, betas=(S.cyclic(0.5, 1.2, 10), 0.999))
    with pytest.raises(ValueError, match=r"lr \(lowest value of linear"):
        optimlab.SGD(params, lr=S.linear(0.1, -0.1, 10))
    with pytest.raises(TypeError, match="nesterov"):
        optimlab.SGD(params, lr=0.1, nesterov=S.constant(1.0))
    optimlab.SGD(params, lr=S.exponential(0.1, 1.01))  # grows without end, never negative: fine

    class Sawtooth(S.Schedule):  # a schedule that cannot tell its range: checked as each value is written
        def at(self, step):
            return 0.9 - step * 0.1

    p = torch.zeros(1, requires_grad=True)
    opt = optimlab.SGD([p], lr=0.1, momentum=Sawtooth())
    p.grad = torch.ones(1)
    for _ in range(10):
        opt.step()
    before = p.detach().clone()
    with pytest.raises(ValueError, match="momentum must be a finite number >= 0"):
        opt.step()
    assert torch.equal(p, before) and opt.schedules.t == 10
