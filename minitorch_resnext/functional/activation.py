"""Softmax family: a numerically stable `log_softmax` Function and `softmax` from it."""

from __future__ import annotations

from typing import Any

from ..autograd import Context, Function
from ..tensor import Tensor
from .elementwise import _require_float


class LogSoftmax(Function):
    """log(softmax(a)) along an axis, computed from the max-shifted input so it cannot overflow."""
    @staticmethod
    def forward(ctx: Context, a: Any, axis: int = -1) -> Any:
        _require_float("log_softmax", a)
        shifted = a - a.max(axis=axis, keepdims=True)
        out = shifted - ctx.xp.log(ctx.xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (out,) = ctx.saved_tensors
        return g - ctx.xp.exp(out) * g.sum(axis=ctx.axis, keepdims=True)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(input)) along `dim`, like torch.nn.functional.log_softmax."""
    if not -input.ndim <= dim < input.ndim:
        raise ValueError(f"log_softmax: dim {dim} is out of range for {input.ndim} dimensions")
    return LogSoftmax.apply(input, axis=dim)


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    """softmax(input) along `dim`: exp of `log_softmax`, so it is stable for large inputs."""
    return log_softmax(input, dim).exp()
