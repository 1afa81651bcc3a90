"""SparseAdam: Adam for sparse gradients (embeddings), torch.optim.SparseAdam's lazy variant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.engine import initial_state
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import Params, with_sign
from optimlab.transforms import ScaleBySparseAdam


class SparseAdam(Optimizer):
    """Adam on the rows a sparse gradient names (``nn.Embedding(sparse=True)``): the moments
    and parameters of the other rows are left as they are (Kingma & Ba, 2015; the "lazy" Adam
    of torch.optim.SparseAdam). See :class:`~optimlab.transforms.ScaleBySparseAdam`.

    Same arguments, defaults, checks and state (``step``, a Python int as in torch;
    ``exp_avg``, ``exp_avg_sq``) as :class:`torch.optim.SparseAdam`. Dense parameters with
    sparse gradients only: give dense gradients (every other layer) to :class:`optimlab.Adam`,
    in a second optimizer.
    """

    checks = {"lr": checks.positive, "betas": checks.pair_of_unit_interval, "eps": checks.positive,
              "maximize": checks.flag}
    counts_steps = True
    tensor_steps = False

    def __init__(self, params: Params, lr: float | Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, maximize: bool = False) -> None:
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps, maximize=maximize)
        super().__init__(params, defaults)

    def check_param(self, param: Tensor, name: str) -> None:
        # torch.optim.SparseAdam's errors (ValueError): the gradients are sparse, the parameters not.
        if param.is_sparse:
            raise ValueError(f"{self.owner}: parameter {name} is sparse; SparseAdam requires dense parameter tensors")
        if param.is_complex():
            raise ValueError(f"{self.owner}: parameter {name} is {param.dtype}; SparseAdam does not support complex "
                             "parameters")

    def step_groups(self) -> None:
        # torch.optim.SparseAdam counts steps in a Python int, from 0: made here, before the
        # engine would make the tensor count of the other optimizers.
        for group in self.param_groups:
            transform = self.transform_for(group)
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse and not self.state.get(p):
                    self.state[p].update({"step": 0, **initial_state(transform, p, counts_steps=False)})
        super().step_groups()

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return (group["maximize"],)

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return with_sign(group, ScaleBySparseAdam())
