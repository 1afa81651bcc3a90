"""DTensor parameters (what FSDP2's ``fully_shard`` makes) on the fast path.

A one-rank process group (gloo, in memory) is enough to make real DTensors: the engine steps
their local shards with the fused kernel, keeps the state as DTensors laid out like the
parameters (as torch.optim keeps it, so distributed checkpoints see what they expect), and the
numbers equal the same optimizer's on plain tensors.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import optimlab
from optimlab import engine

tensor_api = pytest.importorskip("torch.distributed.tensor")
DTensor, Replicate, Shard = tensor_api.DTensor, tensor_api.Replicate, tensor_api.Shard


@pytest.fixture(scope="module")
def mesh():
    if not dist.is_available():
        pytest.skip("torch without distributed support")
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


CONFIGS = [("Adam", {"lr": 0.01, "weight_decay": 0.1}), ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
           ("Adagrad", {"lr": 0.1}), ("AdamW", {"lr": 0.01, "amsgrad": True})]


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_dtensor_parameters_step_on_the_fused_path_as_plain_ones(mesh, name, kwargs):
    generator = torch.Generator().manual_seed(0)
    values = [torch.randn(6, 4, generator=generator), torch.randn(5, generator=generator)]
    grads = [[torch.randn(v.shape, generator=generator) for v in values] for _ in range(4)]
    layouts = [[Shard(0)], [Replicate()]]
    sharded = [torch.nn.Parameter(tensor_api.distribute_tensor(v.clone(), mesh, layout))
               for v, layout in zip(values, layouts)]
    plain = [torch.nn.Parameter(v.clone()) for v in values]
    mine = getattr(optimlab, name)(sharded, **kwargs)
    reference = getattr(optimlab, name)(plain, **kwargs)
    before = engine.path_counts["fused"]
    for step_grads in grads:
        for p, q, g in zip(sharded, plain, step_grads):
            p.grad = tensor_api.distribute_tensor(g.clone(), mesh, p.placements)
            q.grad = g.clone()
        with engine.using("auto"):
            mine.step()
        with engine.using("eager"):
            reference.step()
    assert engine.path_counts["fused"] - before >= len(sharded) * (len(grads) - 1), "the shards ran on the kernel"
    for p, q in zip(sharded, plain):
        torch.testing.assert_close(p.full_tensor(), q.detach(), rtol=1e-6, atol=1e-7)
        for key, value in reference.state[q].items():
            kept = mine.state[p][key]
            if key == "step":
                assert torch.equal(kept, value)
                continue
            assert isinstance(kept, DTensor) and kept.placements == p.placements, f"state {key!r} is a DTensor"
            torch.testing.assert_close(kept.full_tensor(), value, rtol=1e-6, atol=1e-7)


def test_a_dtensor_state_dict_round_trip(mesh):
    p = torch.nn.Parameter(tensor_api.distribute_tensor(torch.randn(4, 3), mesh, [Shard(0)]))
    opt = optimlab.Adam([p], lr=0.01)
    for _ in range(2):
        p.grad = tensor_api.distribute_tensor(torch.ones(4, 3), mesh, [Shard(0)])
        opt.step()
    saved = opt.state_dict()
    again = optimlab.Adam([p], lr=0.01)
    again.load_state_dict(saved)
    p.grad = tensor_api.distribute_tensor(torch.ones(4, 3), mesh, [Shard(0)])
    again.step()
    assert int(again.state[p]["step"]) == 3 and isinstance(again.state[p]["exp_avg"], DTensor)


def test_check_finite_reads_every_shard_of_a_dtensor_gradient(mesh):
    """``check_finite=True`` finds a NaN in a sharded gradient (its norm is a collective every rank
    joins) and steps nothing; a finite one steps."""
    layouts = [[Shard(0)], [Replicate()]]
    params = [torch.nn.Parameter(tensor_api.distribute_tensor(torch.ones(4, 3), mesh, layout)) for layout in layouts]
    optimizer = optimlab.AdamW(params, lr=0.1, check_finite=True)
    bad = torch.ones(4, 3)
    bad[1, 1] = float("nan")
    for p, g in zip(params, (torch.ones(4, 3), bad)):
        p.grad = tensor_api.distribute_tensor(g, mesh, p.placements)
    with pytest.raises(FloatingPointError, match="parameter #1 of group 0 has 1 NaN of 12 values"):
        optimizer.step()
    assert all(torch.equal(p.full_tensor(), torch.ones(4, 3)) for p in params) and not optimizer.state
    params[1].grad = tensor_api.distribute_tensor(torch.ones(4, 3), mesh, params[1].placements)
    optimizer.step()
    assert all(bool((p.full_tensor() < 1).all()) for p in params)
