"""Reductions over axes: sum and max are Functions; mean and var are compositions."""

from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any

from ..autograd import Context, Function
from ..tensor import Tensor
from .registry import op


def _axes(ndim: int, dim: Any) -> tuple[int, ...]:
    """Normalise `dim` (None, int or sequence) to sorted non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -builtins.max(ndim, 1) <= d < builtins.max(ndim, 1):
            raise ValueError(f"dim {d} is out of range for a tensor with {ndim} dimensions")
        out.append(d % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"dim {dim} repeats an axis")
    return tuple(sorted(out)) if ndim else ()


def _keep(g: Any, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Reshape a reduced gradient so it broadcasts against the input again."""
    return g if keepdims else g.reshape([1 if i in axes else n for i, n in enumerate(shape)])


class Sum(Function):
    """Sum over axes (keepdims optional); the gradient is broadcast back over them."""
    @staticmethod
    def forward(ctx: Context, a: Any, axes: tuple[int, ...] = (), keepdims: bool = False) -> Any:
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        return a.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        g = _keep(g, ctx.shape, ctx.axes, ctx.keepdims)
        return ctx.xp.broadcast_to(g, ctx.shape)


class Amax(Function):
    """Max over axes; ties share the gradient evenly (like torch.amax)."""

    @staticmethod
    def forward(ctx: Context, a: Any, axes: tuple[int, ...] = (), keepdims: bool = False) -> Any:
        if a.size == 0:
            raise ValueError("max: cannot reduce an empty tensor")
        out = a.max(axis=axes, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.axes, ctx.keepdims = axes, keepdims
        return out if keepdims else out.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        a, out = ctx.saved_tensors
        mask = (a == out).astype(g.dtype)
        mask /= mask.sum(axis=ctx.axes, keepdims=True)
        return _keep(g, a.shape, ctx.axes, ctx.keepdims) * mask


@op(method=True)
def sum(a: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Sum over `dim` (an int, a sequence, or None for all), like torch.sum."""
    return Sum.apply(a, axes=_axes(a.ndim, dim), keepdims=keepdim)


@op(method=True)
def mean(a: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Mean over `dim` (an int, a sequence, or None for all) of a floating-point tensor, like torch.mean."""
    axes = _axes(a.ndim, dim)
    count = 1
    for i in axes:
        count *= a.shape[i]
    if a.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating-point tensor, got dtype {a.dtype}")
    return Sum.apply(a, axes=axes, keepdims=keepdim) * (1.0 / builtins.max(count, 1))


@op(method=True)
def var(a: Tensor, dim: Any = None, keepdim: bool = False, unbiased: bool = True) -> Tensor:
    """Variance; `unbiased` divides by n - 1 like PyTorch's default."""
    axes = _axes(a.ndim, dim)
    count = 1
    for i in axes:
        count *= a.shape[i]
    centred = a - mean(a, dim, keepdim=True)
    return (centred * centred).sum(dim, keepdim) * (1.0 / builtins.max(count - int(unbiased), 1))


@op(method=True)
def amax(a: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Maximum over `dim`, like torch.amax; ties share the gradient equally."""
    return Amax.apply(a, axes=_axes(a.ndim, dim), keepdims=keepdim)


MaxResult = namedtuple("MaxResult", ["values", "indices"])


@op(method=True)
def max(a: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """`max(a)` is the largest value; `max(a, dim)` is (values, indices) like PyTorch."""
    if dim is None:
        return amax(a)
    return MaxResult(amax(a, dim, keepdim), argmax(a, dim, keepdim))


@op(method=True, differentiable=False)
def argmax(a: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the maximum over `dim` (of the flattened tensor for None); not differentiable."""
    if dim is None:
        return Tensor._wrap(a.data.argmax(), a.backend)
    (axis,) = _axes(a.ndim, dim)
    idx = a.data.argmax(axis=axis)
    return Tensor._wrap(a.xp.expand_dims(idx, axis) if keepdim else idx, a.backend)
