"""The fine-tuning pieces on their own: parameter groups, freezing, clipping, early stopping,
warm-up schedules, autocast choice, and the recipe that bundles them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import optimlab
from optimlab.finetune import (
    EarlyStopping,
    GradientClipping,
    GradualUnfreezing,
    Recipe,
    autocast_dtype,
    freeze,
    param_groups,
    top_down_stages,
    trainable_count,
    transformer_depth,
    unfreeze,
    warmup_decay,
    warmup_decay_factor,
    warmup_steps,
)


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width)

    def forward(self, x):
        return self.LayerNorm(x + torch.tanh(self.dense(x)))


class Encoder(nn.Module):
    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Block(width) for _ in range(layers))


class TinyTransformer(nn.Module):
    """BERT's naming on a toy scale: embeddings, encoder.layer.i, a new head 'classifier'."""

    def __init__(self, width: int = 8, layers: int = 3, vocab: int = 20) -> None:
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, width)
        self.embeddings.norm = nn.LayerNorm(width)
        self.encoder = Encoder(width, layers)
        self.classifier = nn.Linear(width, 2)

    def forward(self, ids):
        h = self.embeddings.norm(self.embeddings.word_embeddings(ids))
        for block in self.encoder.layer:
            h = block(h)
        return self.classifier(h.mean(1))


def lookup(groups):
    """name -> (lr, weight_decay, label) for every parameter in the groups."""
    out = {}
    for group in groups:
        for name, _ in group["params"]:
            assert name not in out, f"{name} is in two groups"
            out[name] = (group["lr"], group.get("weight_decay"), group["group"])
    return out


def test_transformer_depth_numbers_embeddings_layers_and_the_rest():
    assert transformer_depth("embeddings.word_embeddings.weight") == 0
    assert transformer_depth("encoder.layer.0.attention.self.query.weight") == 1
    assert transformer_depth("encoder.layer.11.output.LayerNorm.bias") == 12
    assert transformer_depth("model.layers.3.mlp.up_proj.weight") == 4
    assert transformer_depth("transformer.h.2.attn.c_attn.weight") == 3
    assert transformer_depth("transformer.wte.weight") == 0
    assert transformer_depth("pooler.dense.weight") is None
    assert transformer_depth("classifier.weight") is None
    assert transformer_depth("player.7.weight") is None  # 'layer' must be a whole name part


def test_param_groups_exempt_biases_and_norms_from_weight_decay():
    model = TinyTransformer()
    table = lookup(param_groups(model, 1e-4, weight_decay=0.01))
    assert set(table) == {n for n, _ in model.named_parameters()}
    for name, (lr, wd, _) in table.items():
        exempt = name.endswith("bias") or "norm" in name.lower()
        assert wd == (0.0 if exempt else 0.01), name
        assert lr == 1e-4
    assert table["embeddings.word_embeddings.weight"][1] == 0.01  # a matrix: decays
    assert table["embeddings.norm.weight"][1] == 0.0  # a norm's gain: exempt


def test_without_a_weight_decay_the_decaying_groups_take_the_optimizers_own():
    model = TinyTransformer()
    opt = optimlab.AdamW(param_groups(model, 1e-4), weight_decay=0.3)
    decays = {g["group"]: g["weight_decay"] for g in opt.param_groups}
    assert decays == {"body/decay": 0.3, "body/no_decay": 0.0}  # one learning rate: two groups


def test_norm_parameters_are_exempt_even_when_not_one_dimensional():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(4)
            self.norm.weight = nn.Parameter(torch.ones(2, 2))  # 2-d: exempt because it belongs to a norm
            self.lin = nn.Linear(4, 4)

    table = lookup(param_groups(Odd(), 0.1, weight_decay=0.5))
    assert table["norm.weight"][1] == 0.0 and table["lin.weight"][1] == 0.5


def test_head_and_layer_wise_learning_rates():
    model = TinyTransformer(layers=3)
    lr, head_lr, decay = 1e-4, 1e-3, 0.5
    table = lookup(param_groups(model, lr, head=["classifier"], head_lr=head_lr, layer_decay=decay))
    assert table["classifier.weight"][0] == head_lr and table["classifier.bias"][0] == head_lr
    # L = 3 layers: layer i (depth i + 1) gets lr * decay ** (L + 1 - depth); embeddings depth 0.
    for i in range(3):
        assert table[f"encoder.layer.{i}.dense.weight"][0] == pytest.approx(lr * decay ** (3 - i))
    assert table["encoder.layer.2.dense.weight"][0] == pytest.approx(lr * decay)
    assert table["embeddings.word_embeddings.weight"][0] == pytest.approx(lr * decay ** 4)
    assert table["embeddings.word_embeddings.weight"][2] == "body/depth0/decay"


def test_param_groups_feed_optimlab_and_torch_optimizers_alike():
    torch.manual_seed(0)
    model = TinyTransformer()
    twin = TinyTransformer()
    twin.load_state_dict(model.state_dict())
    kwargs = dict(weight_decay=0.1, head=["classifier"], head_lr=1e-2, layer_decay=0.8)
    ours = optimlab.AdamW(param_groups(model, 1e-3, **kwargs))
    theirs = torch.optim.AdamW(param_groups(twin, 1e-3, **kwargs))
    assert all("param_names" in g for g in ours.param_groups)
    ids = torch.randint(0, 20, (4, 5))
    for _ in range(3):
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad()
            m(ids).square().mean().backward()
            opt.step()
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_param_groups_errors_name_the_argument():
    model = TinyTransformer()
    with pytest.raises(ValueError, match="head prefix.*'clasifier'"):
        param_groups(model, 1e-4, head=["clasifier"])
    with pytest.raises(ValueError, match="layer_decay must be in \\(0, 1\\], got 1.5"):
        param_groups(model, 1e-4, layer_decay=1.5)
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        param_groups(model, 0)
    freeze(model)
    with pytest.raises(ValueError, match="requires_grad=False"):
        param_groups(model, 1e-4, trainable_only=True)


def test_frozen_parameters_stay_put_even_under_weight_decay():
    torch.manual_seed(0)
    model = TinyTransformer()
    assert freeze(model, ["embeddings", "encoder.layer.0"]) == 3 + 4
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = optimlab.AdamW(param_groups(model, 1e-2, weight_decay=0.5))
    model(torch.randint(0, 20, (4, 5))).square().mean().backward()
    opt.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (not name.startswith(("embeddings", "encoder.layer.0."))), name
    unfreeze(model, ["encoder.layer.0"])
    assert model.encoder.layer[0].dense.weight.requires_grad
    assert not model.embeddings.word_embeddings.weight.requires_grad
    with pytest.raises(ValueError, match="no parameter of TinyTransformer is named 'encoder.layer.9'"):
        freeze(model, ["encoder.layer.9"])


def test_top_down_stages_and_gradual_unfreezing_schedule():
    model = TinyTransformer(layers=3)
    stages = top_down_stages(model, ["classifier"])
    assert stages[0] == ["classifier.weight", "classifier.bias"]
    assert [transformer_depth(s[0]) for s in stages[1:]] == [3, 2, 1, 0]
    total = sum(p.numel() for p in model.parameters())
    unfreezing = GradualUnfreezing(model, stages, every=2)
    counts = [trainable_count(model)]
    for _ in range(9):
        unfreezing.step()
        counts.append(trainable_count(model))
    assert counts[0] == counts[1] == model.classifier.weight.numel() + 2
    assert counts[2] == counts[3] > counts[1]  # layer 2 joins at step 2
    assert counts[8] == counts[9] == total  # the embeddings at step 8
    assert counts == sorted(counts)
    resumed = GradualUnfreezing(TinyTransformer(layers=3), stages, every=2)
    resumed.load_state_dict({"steps": 5})
    assert trainable_count(resumed.model) == counts[5]
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        GradualUnfreezing(model, stages, every=0)


def test_gradient_clipping_caps_the_global_norm():
    torch.manual_seed(0)
    model = nn.Linear(10, 3)
    (model(torch.randn(8, 10)) * 100).square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    norm = torch.sqrt(sum(g.square().sum() for g in grads)).item()
    clip = GradientClipping(1.0)
    assert clip(model) == pytest.approx(norm, rel=1e-5) and norm > 1
    after = torch.sqrt(sum(p.grad.square().sum() for p in model.parameters())).item()
    assert after == pytest.approx(1.0, rel=1e-4)
    for g, p in zip(grads, model.parameters()):  # the direction is kept
        torch.testing.assert_close(p.grad, g * (1.0 / norm), rtol=1e-4, atol=1e-7)
    assert clip.clipped == 1
    clip(model)  # already within the cap: unchanged, not counted
    assert clip.clipped == 1
    with pytest.raises(ValueError, match="max_norm must be a number > 0, got -1"):
        GradientClipping(-1)


def test_early_stopping_counts_evaluations_without_improvement():
    stop = EarlyStopping("accuracy", patience=2)
    decisions = [stop.update(v, step) for step, v in enumerate([0.5, 0.6, 0.6, 0.7, 0.65, 0.69])]
    assert decisions == [False, False, False, False, False, True]
    assert stop.best == 0.7 and stop.best_step == 3
    low = EarlyStopping("loss", patience=1, higher_is_better=False, min_delta=0.1)
    assert [low.update(v) for v in [1.0, 0.95]] == [False, True]  # 0.05 is within min_delta
    nan = EarlyStopping("accuracy", patience=1)
    nan.update(0.5)
    assert nan.update(math.nan)
    copy = EarlyStopping("accuracy", patience=2)
    copy.load_state_dict(stop.state_dict())
    assert copy.best == 0.7 and copy.bad == 2 and copy.should_stop
    with pytest.raises(ValueError, match="patience must be an int >= 1"):
        EarlyStopping("accuracy", patience=0)


def test_warmup_decay_factor_shape():
    f = warmup_decay_factor(100, warmup=0.1)
    assert [f(t) for t in (0, 5, 10, 55, 100, 150)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    c = warmup_decay_factor(100, warmup=10, decay="cosine")
    assert c(10) == pytest.approx(1.0) and c(55) == pytest.approx(0.5) and c(100) == pytest.approx(0.0)
    flat = warmup_decay_factor(100, warmup=0.0, decay="none")
    assert flat(0) == flat(99) == 1.0
    assert warmup_steps(63, 0.1) == 7 and warmup_steps(63, 5) == 5
    with pytest.raises(ValueError, match="no step to decay"):
        warmup_decay_factor(10, warmup=10)
    with pytest.raises(ValueError, match="decay must be one of linear, cosine, none"):
        warmup_decay_factor(10, decay="exp")


def test_warmup_decay_keeps_each_groups_ratio():
    model = TinyTransformer()
    opt = optimlab.AdamW(param_groups(model, 1e-4, head=["classifier"], head_lr=1e-3))
    sched = warmup_decay(opt, 20, warmup=4)
    seen = []
    for _ in range(20):
        lrs = {g["group"].split("/")[0]: g["lr"] for g in opt.param_groups}
        seen.append(lrs)
        opt.step()
        sched.step()
    assert seen[0]["head"] == 0.0
    assert seen[4]["head"] == pytest.approx(1e-3) and seen[4]["body"] == pytest.approx(1e-4)
    assert seen[12]["head"] == pytest.approx(10 * seen[12]["body"])


def test_warmup_decay_matches_hugging_faces_linear_schedule():
    transformers = pytest.importorskip("transformers", reason="the finetune extra is not installed")
    p = nn.Parameter(torch.zeros(1))
    ours = torch.optim.SGD([p], lr=0.1)
    theirs = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    a = warmup_decay(ours, 50, warmup=7)
    b = transformers.get_linear_schedule_with_warmup(theirs, num_warmup_steps=7, num_training_steps=50)
    for _ in range(60):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], abs=1e-12)
        ours.step(), theirs.step(), a.step(), b.step()


def test_autocast_modes():
    assert autocast_dtype("off") is None
    assert autocast_dtype("bf16") is torch.bfloat16
    assert autocast_dtype("auto") in (None, torch.bfloat16)
    with pytest.raises(ValueError, match="autocast must be one of off, bf16, auto, got 'fp8'"):
        autocast_dtype("fp8")


def test_recipe_builds_the_pieces_and_checks_its_values():
    model = TinyTransformer()
    recipe = Recipe(lr=1e-4, head_lr=1e-3, layer_decay=0.9, unfreeze_every=5, patience=3)
    groups = recipe.param_groups(model, head=["classifier"])
    assert {g["group"].split("/")[0] for g in groups} == {"head", "body"}
    hooks = recipe.hooks(model, head=["classifier"])
    assert [type(h) for h in hooks] == [GradientClipping, GradualUnfreezing, EarlyStopping]
    assert trainable_count(model) == sum(p.numel() for p in model.classifier.parameters())
    assert Recipe().to_dict()["warmup"] == 0.1
    with pytest.raises(ValueError, match="Recipe: accumulate must be an int >= 1, got 0"):
        Recipe(accumulate=0)
    with pytest.raises(ValueError, match="Recipe: autocast must be one of off, bf16, auto"):
        Recipe(autocast="fp16")
    with pytest.raises(ValueError, match="needs the head"):
        Recipe(unfreeze_every=3).hooks(model)
