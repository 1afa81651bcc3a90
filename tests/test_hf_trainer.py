"""optimlab's optimizer and schedule objects, given to Hugging Face's Trainer as they are.

``Trainer(..., optimizers=(optimizer, scheduler))`` is how the ecosystem takes a custom optimizer:
the Trainer then steps them itself (with its own gradient accumulation and clipping). The test
trains a small BERT classifier (built from a config: nothing to download) with
``optimlab.AdamW`` over the recipe's param groups and the warm-up + linear-decay
:class:`~optimlab.schedules.Scheduler`, and checks that the Trainer used them (the logged
learning rates are the schedule's), that the task was learned, and that the run is the same
as with ``torch.optim.AdamW`` in their place.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the 'finetune' extra is not installed")
pytest.importorskip("accelerate", reason="the Trainer needs accelerate (the 'finetune' extra)")

import optimlab  # noqa: E402
from optimlab.finetune import param_groups, warmup_decay, warmup_decay_factor  # noqa: E402
from optimlab.schedules import Scheduler  # noqa: E402

STEPS, LR, HEAD_LR = 24, 3e-3, 3e-2


class Task(torch.utils.data.Dataset):
    """Sequences of 8 random token ids whose first token, 7 or 8, gives the label: learnable in
    a few steps, and not without looking at the input."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.ids = torch.randint(9, 32, (n, 8), generator=g)
        self.ids[:, 0] = 7 + self.labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def tiny_bert() -> torch.nn.Module:
    config = transformers.BertConfig(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def fit(optimizer_class, tmp_path):
    model = tiny_bert()
    groups = param_groups(model, LR, weight_decay=0.01, head=["classifier"], head_lr=HEAD_LR, layer_decay=0.8)
    optimizer = optimizer_class(groups)
    scheduler = warmup_decay(optimizer, STEPS, warmup=0.25)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=16,
                                          logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                                          disable_tqdm=True, seed=0, max_grad_norm=1.0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Task(256, 0),
                                   optimizers=(optimizer, scheduler))
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def optimlab_trainer(tmp_path_factory):
    return fit(optimlab.AdamW, tmp_path_factory.mktemp("optimlab"))


def test_trainer_runs_optimlab_optimizer_and_schedule(optimlab_trainer):
    trainer = optimlab_trainer
    assert isinstance(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer,
                      optimlab.AdamW)
    assert isinstance(trainer.lr_scheduler, Scheduler) and trainer.lr_scheduler.last_epoch == STEPS
    logs = [entry for entry in trainer.state.log_history if "learning_rate" in entry]
    factor = warmup_decay_factor(STEPS, warmup=0.25)
    # the Trainer logs at step s the first group's lr (the layer-decayed embeddings') that step s used
    first = trainer.lr_scheduler.base_values[0]
    assert first == pytest.approx(LR * 0.8 ** 3)
    assert [e["learning_rate"] for e in logs] == pytest.approx([first * factor(e["step"] - 1) for e in logs], rel=1e-6)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert min(losses[-4:]) < 0.5 * losses[0], losses  # learned
    evaluation = Task(128, 1)
    model = trainer.model.eval()
    with torch.no_grad():
        predictions = model(input_ids=evaluation.ids).logits.argmax(1)
    assert (predictions == evaluation.labels).float().mean() >= 0.9


def test_trainer_run_matches_torch_adamw(optimlab_trainer, tmp_path):
    ours = optimlab_trainer.model
    theirs = fit(torch.optim.AdamW, tmp_path / "torch").model
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
