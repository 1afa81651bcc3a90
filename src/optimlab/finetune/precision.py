"""bfloat16 autocast on the CPU, where it helps.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` matrix products and convolutions run in
bfloat16 (8 bits of mantissa) while the weights, the gradients and the optimizer's state stay
in float32: mixed precision, with no loss scaling needed because bfloat16 has float32's range.
It pays where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX; oneDNN reports it);
elsewhere bfloat16 is emulated and slower than float32, so ``"auto"`` turns it on only there.
Small models gain little either way: the casts cost about what the products save.
"""

from __future__ import annotations

import torch

MODES = ("off", "bf16", "auto")


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 products natively (AVX512-BF16 / AMX), per oneDNN."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def autocast_dtype(mode: str) -> torch.dtype | None:
    """The autocast dtype for ``mode``: "off" -> None, "bf16" -> bfloat16, "auto" -> bfloat16
    where :func:`bf16_native`, else None."""
    if mode not in MODES:
        raise ValueError(f"autocast must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "bf16" or (mode == "auto" and bf16_native()):
        return torch.bfloat16
    return None
