"""Fine-tuning a pretrained model, piece by piece, with any optimizer.

* :func:`param_groups`: no weight decay for biases and norms, head vs body learning rates,
  layer-wise learning-rate decay (:mod:`.groups`);
* :func:`freeze`, :func:`unfreeze`, :class:`GradualUnfreezing` (:mod:`.freeze`);
* :func:`warmup_decay`: warm-up then linear or cosine decay, per-group factors (:mod:`.schedule`);
* :class:`GradientClipping`, :class:`EarlyStopping` (:mod:`.hooks`);
* :func:`autocast_dtype`: bfloat16 autocast on CPUs that compute it natively (:mod:`.precision`);
* :class:`Recipe`: all of the above as one set of choices (:mod:`.recipe`).

Gradient accumulation and autocast are options of the lab's training loop
(:func:`optimlab.lab.training.loop.train`), which also runs the hooks here. This package needs only
torch; the pretrained models and data of the fine-tuning problems are in :mod:`optimlab.lab`.
"""

from optimlab.finetune.freeze import (
    GradualUnfreezing,
    freeze,
    top_down_stages,
    trainable_count,
    unfreeze,
)
from optimlab.finetune.groups import (
    describe_groups,
    no_decay,
    param_groups,
    transformer_depth,
)
from optimlab.finetune.hooks import EarlyStopping, GradientClipping
from optimlab.finetune.precision import autocast_dtype, bf16_native
from optimlab.finetune.recipe import Recipe
from optimlab.finetune.schedule import warmup_decay, warmup_decay_factor, warmup_steps

__all__ = ["EarlyStopping", "GradientClipping", "GradualUnfreezing", "Recipe", "autocast_dtype", "bf16_native",
           "describe_groups", "freeze", "no_decay", "param_groups", "top_down_stages", "trainable_count",
           "transformer_depth", "unfreeze", "warmup_decay", "warmup_decay_factor", "warmup_steps"]
