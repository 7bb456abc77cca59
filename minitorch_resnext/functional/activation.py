"""Activations: the softmax family (a stable `log_softmax` and `softmax` from it) and the
piecewise-linear `hardtanh` and `leaky_relu`."""

from __future__ import annotations

from typing import Any

from ..autograd import Context, Function
from ..tensor import Tensor
from .elementwise import clip, require_float, where
from .registry import op


class LogSoftmax(Function):
    """log(softmax(a)) along an axis, computed from the max-shifted input so it cannot overflow."""
    @staticmethod
    def forward(ctx: Context, a: Any, axis: int = -1) -> Any:
        require_float("log_softmax", a)
        shifted = a - a.max(axis=axis, keepdims=True)
        out = shifted - ctx.xp.log(ctx.xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (out,) = ctx.saved_tensors
        return g - ctx.xp.exp(out) * g.sum(axis=ctx.axis, keepdims=True)


@op(method=True)
def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(input)) along `dim`, like torch.nn.functional.log_softmax."""
    if not -input.ndim <= dim < input.ndim:
        raise ValueError(f"log_softmax: dim {dim} is out of range for {input.ndim} dimensions")
    return LogSoftmax.apply(input, axis=dim)


@op(method=True)
def softmax(input: Tensor, dim: int = -1) -> Tensor:
    """softmax(input) along `dim`: exp of `log_softmax`, so it is stable for large inputs."""
    return log_softmax(input, dim).exp()



@op
def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """min(max(x, min_val), max_val), like `torch.nn.functional.hardtanh`: the gradient passes
    where min_val < x < max_val."""
    if not min_val < max_val:
        raise ValueError(f"hardtanh: min_val must be below max_val, got {min_val} and {max_val}")
    inside = Tensor._wrap((input.data > min_val) & (input.data < max_val), input.backend)
    return where(inside, input, clip(input, min_val, max_val).detach())


@op
def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, negative_slope * x otherwise, like `torch.nn.functional.leaky_relu`."""
    return where(input > 0, input, input * negative_slope)
