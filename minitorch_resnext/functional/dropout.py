"""Inverted dropout: zero each element with probability p and scale the rest by 1 / (1 - p)."""

from __future__ import annotations

from typing import Any

from ..autograd import Context, Function
from ..tensor import Tensor, default_generator
from .registry import op


class Dropout(Function):
    """x times a given mask (zeros and 1 / (1 - p)); the gradient is masked the same way."""
    @staticmethod
    def forward(ctx: Context, x: Any, mask: Any = None) -> Any:
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (mask,) = ctx.saved_tensors
        return g * mask


@op
def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Like `torch.nn.functional.dropout`; the mask comes from the seeded generator."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = default_generator().random(input.shape) >= p
    mask = input.backend.asarray(keep, dtype=input.dtype) * (1.0 / (1.0 - p))
    return Dropout.apply(input, mask=mask)
