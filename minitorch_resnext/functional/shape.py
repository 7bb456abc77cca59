"""Ops that move values without changing them: reshape, permute, expand, index, cat, pad."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..autograd import Context, Function
from ..tensor import Tensor, as_shape
from .registry import op


class Reshape(Function):
    """a with a new shape; the gradient is reshaped back."""
    @staticmethod
    def forward(ctx: Context, a: Any, shape: tuple[int, ...] = ()) -> Any:
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {tuple(a.shape)} into {shape}") from None

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g.reshape(ctx.shape)


class Permute(Function):
    """a with its axes reordered; the gradient is permuted back by the inverse order."""
    @staticmethod
    def forward(ctx: Context, a: Any, dims: tuple[int, ...] = ()) -> Any:
        if sorted(d % max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {a.ndim} axes")
        ctx.dims = dims
        return a.transpose(dims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g.transpose(ctx.xp.argsort(ctx.xp.asarray(ctx.dims) % g.ndim).tolist())


class Expand(Function):
    """a broadcast to a larger shape (a view); the gradient is summed over the broadcast axes."""
    @staticmethod
    def forward(ctx: Context, a: Any, shape: tuple[int, ...] = ()) -> Any:
        lead = len(shape) - a.ndim
        if lead < 0:
            raise ValueError(f"expand: cannot expand {tuple(a.shape)} to fewer dims {shape}")
        full = tuple(a.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        for i, n in enumerate(a.shape):
            if n != 1 and n != full[lead + i]:
                raise ValueError(f"expand: cannot expand {tuple(a.shape)} to {shape}")
        return ctx.xp.broadcast_to(a, full)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g  # the engine sums it back to the input's shape


def _is_basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, int | slice) or i is None or i is Ellipsis for i in items)


class Index(Function):
    """a[index] (basic or advanced indexing); the gradient is scattered back, repeated indices added."""
    @staticmethod
    def forward(ctx: Context, a: Any, index: Any = None) -> Any:
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        xp = ctx.xp
        out = xp.zeros(ctx.shape, dtype=g.dtype)
        if _is_basic(ctx.index):
            out[ctx.index] = g
        else:  # advanced indexing may pick an element twice: accumulate
            xp.add.at(out, ctx.index, g)
        return out


class Cat(Function):
    """Tensors joined along an axis; each input's gradient is its slice of the output's."""
    @staticmethod
    def forward(ctx: Context, *arrays: Any, axis: int = 0) -> Any:
        ref = arrays[0]
        for a in arrays[1:]:
            if a.ndim != ref.ndim or any(
                x != y for i, (x, y) in enumerate(zip(a.shape, ref.shape)) if i != axis % ref.ndim
            ):
                raise ValueError(
                    f"cat: shapes {tuple(ref.shape)} and {tuple(a.shape)} differ outside dim {axis}"
                )
        ctx.sizes, ctx.axis = [a.shape[axis] for a in arrays], axis
        return ctx.xp.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, ...]:
        bounds, start = [], 0
        for n in ctx.sizes[:-1]:
            start += n
            bounds.append(start)
        return tuple(ctx.xp.split(g, bounds, axis=ctx.axis))


class Pad(Function):
    """a padded with a constant; the gradient is the unpadded slice."""
    @staticmethod
    def forward(ctx: Context, a: Any, widths: tuple = (), value: float = 0.0) -> Any:
        ctx.slices = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, a.shape))
        return ctx.xp.pad(a, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g[ctx.slices]


@op(method=True, aliases=("view",))
def reshape(a: Tensor, *shape: Any) -> Tensor:
    """a with a new shape (given as ints or one sequence; one dimension may be -1)."""
    shape = as_shape(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    return Reshape.apply(a, shape=shape)


@op(method=True)
def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """a with dimensions start_dim..end_dim merged into one, like torch.flatten."""
    if a.ndim == 0:
        return reshape(a, (1,))
    s, e = start_dim % a.ndim, end_dim % a.ndim
    return reshape(a, a.shape[:s] + (-1,) + a.shape[e + 1 :])


@op(method=True)
def permute(a: Tensor, *dims: Any) -> Tensor:
    """a with its dimensions reordered (given as ints or one sequence)."""
    return Permute.apply(a, dims=as_shape(dims))


@op(method=True)
def transpose(a: Tensor, dim0: int, dim1: int) -> Tensor:
    """a with dimensions dim0 and dim1 swapped."""
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, dims)


@op(method=True)
def expand(a: Tensor, *shape: Any) -> Tensor:
    """a broadcast to a larger shape (given as ints or one sequence), without copying."""
    return Expand.apply(a, shape=as_shape(shape))


@op(method=True)
def unsqueeze(a: Tensor, dim: int) -> Tensor:
    """a with a dimension of size 1 inserted at `dim`."""
    dim = dim % (a.ndim + 1)
    return reshape(a, a.shape[:dim] + (1,) + a.shape[dim:])


@op(method=True)
def squeeze(a: Tensor, dim: int | None = None) -> Tensor:
    """a without its size-1 dimensions (or only `dim`, if it has size 1)."""
    if dim is None:
        return reshape(a, tuple(n for n in a.shape if n != 1))
    dim = dim % max(a.ndim, 1)
    return reshape(a, a.shape[:dim] + a.shape[dim + 1 :]) if a.shape[dim] == 1 else a


@op
def index(a: Tensor, index: Any) -> Tensor:
    """a[index], differentiable; tensors in the index are used as arrays."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return Index.apply(a, index=index)


@op(aliases=("concatenate",))
def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Tensors joined along an existing dimension, like torch.cat (also `concatenate`)."""
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    return Cat.apply(*tensors, axis=dim)




@op
def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Tensors of one shape joined along a new dimension, like torch.stack."""
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    shape = tensors[0].shape
    for t in tensors[1:]:
        if t.shape != shape:
            raise ValueError(f"stack: all tensors need the same shape, got {shape} and {t.shape}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


@op
def pad(a: Tensor, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad like `torch.nn.functional.pad`: (left, right, top, bottom, ...) from the last dim."""
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > a.ndim:
        raise ValueError(f"pad: needs pairs for at most {a.ndim} dims, got {tuple(pad)}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: widths must be non-negative, got {tuple(pad)}")
    widths = [(0, 0)] * a.ndim
    for i in range(len(pad) // 2):
        widths[a.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return Pad.apply(a, widths=tuple(widths), value=value)
