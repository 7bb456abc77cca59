"""Elementwise ops with broadcasting. The engine sums broadcast gradients back to each input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import fusion
from ..autograd import Context, Function
from ..tensor import Tensor
from .registry import op


def _check_broadcast(op: str, a: Any, b: Any) -> None:
    sa, sb = a.shape, b.shape
    for x, y in zip(reversed(sa), reversed(sb)):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"{op}: shapes {tuple(sa)} and {tuple(sb)} are not broadcastable")


def require_float(op: str, *arrays: Any) -> None:
    """A TypeError naming `op` unless every array is floating point."""
    for a in arrays:
        if a.dtype.kind != "f":
            raise TypeError(f"{op}: needs a floating-point tensor, got dtype {a.dtype}")


class Add(Function):
    """a + b, broadcasting; the gradient passes to both inputs unchanged."""
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        _check_broadcast("add", a, b)
        return a + b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        return g, g


class Sub(Function):
    """a - b, broadcasting; the gradient of b is negated."""
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        _check_broadcast("sub", a, b)
        return a - b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        return g, -g


class Mul(Function):
    """a * b, broadcasting; each input's gradient is the other input times the output's."""
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        _check_broadcast("mul", a, b)
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        return g * b, g * a


class Div(Function):
    """a / b, broadcasting; d/da = 1/b, d/db = -a/b^2."""
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        _check_broadcast("div", a, b)
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        gb = -g * a / (b * b) if ctx.needs_input_grad[1] else None
        return g / b, gb


class Neg(Function):
    """-a."""
    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        return -a

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return -g


class Pow(Function):
    """a ** b for a tensor or scalar exponent b."""

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        require_float("pow", a)
        if hasattr(b, "shape"):
            _check_broadcast("pow", a, b)
        out = a**b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b, out = ctx.saved_tensors
        xp = ctx.xp
        ga = g * b * a ** (b - 1)
        gb = None
        if len(ctx.needs_input_grad) > 1 and ctx.needs_input_grad[1]:
            gb = g * out * xp.log(xp.where(a > 0, a, 1))
        return ga, gb


class Exp(Function):
    """exp(a), elementwise; its gradient reuses the output."""
    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        require_float("exp", a)
        out = ctx.xp.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    """Natural logarithm, elementwise; d/da = 1/a."""
    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        require_float("log", a)
        ctx.save_for_backward(a)
        return ctx.xp.log(a)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (a,) = ctx.saved_tensors
        return g / a


class Sqrt(Function):
    """Square root, elementwise; its gradient reuses the output: 1 / (2 sqrt(a))."""
    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        require_float("sqrt", a)
        out = ctx.xp.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (out,) = ctx.saved_tensors
        return g / (2 * out)


class Abs(Function):
    """|a|, elementwise; the gradient is sign(a) (0 at 0)."""
    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        ctx.save_for_backward(a)
        return ctx.xp.abs(a)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (a,) = ctx.saved_tensors
        return g * ctx.xp.sign(a)


class Maximum(Function):
    """Elementwise max; on ties the gradient is split evenly, like PyTorch."""

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        _check_broadcast("maximum", a, b)
        ctx.save_for_backward(a, b)
        return ctx.xp.maximum(a, b)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        share = (a > b) + 0.5 * (a == b)
        return g * share.astype(g.dtype), g * (1 - share).astype(g.dtype)


class ReLU(Function):
    """max(a, 0), elementwise; the gradient passes where the output is positive."""
    @staticmethod
    def forward(ctx: Context, a: Any) -> Any:
        kernel = fusion.kernel(ctx.backend, "relu_forward", a.dtype)
        out = kernel(a) if kernel is not None else ctx.xp.maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (out,) = ctx.saved_tensors
        kernel = fusion.kernel(ctx.backend, "relu_backward", out.dtype)
        return kernel(g, out) if kernel is not None else g * (out > 0)


class Clip(Function):
    """a clipped to [low, high] (either may be None); the gradient passes inside the range."""
    @staticmethod
    def forward(ctx: Context, a: Any, low: float | None = None, high: float | None = None) -> Any:
        if low is None and high is None:
            raise ValueError("clip: give at least one of min and max")
        ctx.save_for_backward(a)
        ctx.low, ctx.high = low, high
        return ctx.xp.clip(a, low, high)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (a,) = ctx.saved_tensors
        inside = ctx.xp.ones(a.shape, dtype=bool)
        if ctx.low is not None:
            inside &= a >= ctx.low
        if ctx.high is not None:
            inside &= a <= ctx.high
        return g * inside


class Where(Function):
    """cond ? a : b, elementwise; each branch gets the gradient where it was chosen."""
    @staticmethod
    def forward(ctx: Context, cond: Any, a: Any, b: Any) -> Any:
        if cond.dtype != bool:
            raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
        ctx.save_for_backward(cond)
        return ctx.xp.where(cond, a, b)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[None, Any, Any]:
        (cond,) = ctx.saved_tensors
        zero = ctx.xp.zeros((), dtype=g.dtype)
        return None, ctx.xp.where(cond, g, zero), ctx.xp.where(cond, zero, g)


class Cast(Function):
    """a converted to another dtype; the gradient is converted back."""
    @staticmethod
    def forward(ctx: Context, a: Any, dtype: Any = None) -> Any:
        ctx.src = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return g.astype(ctx.src)


class ToDevice(Function):
    """a copied to another backend (CPU <-> GPU); the gradient is copied back."""
    @staticmethod
    def forward(ctx: Context, a: Any, backend: Any = None) -> Any:
        ctx.src, ctx.out_backend = ctx.backend, backend
        return backend.asarray(ctx.backend.to_numpy(a) if backend.name == "cpu" else a)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        src = ctx.src
        return src.asarray(g if src.name != "cpu" else _to_numpy(g))


def _to_numpy(a: Any) -> Any:
    return a.get() if hasattr(a, "get") else a


@op
def add(a: Tensor, b: Tensor) -> Tensor:
    """a + b with broadcasting."""
    return Add.apply(a, b)


@op
def sub(a: Tensor, b: Tensor) -> Tensor:
    """a - b with broadcasting."""
    return Sub.apply(a, b)


@op
def mul(a: Tensor, b: Tensor) -> Tensor:
    """a * b with broadcasting."""
    return Mul.apply(a, b)


@op
def div(a: Tensor, b: Tensor) -> Tensor:
    """a / b with broadcasting."""
    return Div.apply(a, b)


@op
def neg(a: Tensor) -> Tensor:
    """-a."""
    return Neg.apply(a)


@op
def pow(a: Tensor, b: Tensor | float) -> Tensor:
    """a ** b with broadcasting (b a tensor or a number)."""
    return Pow.apply(a, b)


@op(method=True)
def exp(a: Tensor) -> Tensor:
    """exp(a), elementwise."""
    return Exp.apply(a)


@op(method=True)
def log(a: Tensor) -> Tensor:
    """Natural logarithm of a, elementwise."""
    return Log.apply(a)


@op(method=True)
def sqrt(a: Tensor) -> Tensor:
    """Square root of a, elementwise."""
    return Sqrt.apply(a)


@op(method=True)
def abs(a: Tensor) -> Tensor:
    """|a|, elementwise."""
    return Abs.apply(a)


@op(method=True)
def maximum(a: Tensor, b: Tensor | float) -> Tensor:
    """The elementwise maximum of a and b, with broadcasting (b may be a number)."""
    return Maximum.apply(a, a._lift(b))


@op(method=True)
def relu(a: Tensor) -> Tensor:
    """max(a, 0), elementwise. Of an op's output that can absorb it (`fuse_relu`, e.g. batch
    norm's), one fused node."""
    fuse = getattr(a.grad_fn.fn, "fuse_relu", None) if a.grad_fn is not None else None
    fused = fuse(a) if fuse is not None else None
    return fused if fused is not None else ReLU.apply(a)


@op(method=True, aliases=("clamp",))
def clip(a: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """a clipped to [min, max] (either may be None), like torch.clamp (also `clamp`)."""
    return Clip.apply(a, low=min, high=max)




@op
def where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """cond ? a : b elementwise; b may be a number."""
    return Where.apply(cond, a, a._lift(b) if not isinstance(b, Tensor) else b)


@op
def cast(a: Tensor, dtype: Any) -> Tensor:
    """a converted to `dtype` (differentiable)."""
    return Cast.apply(a, dtype=dtype)


@op
def to_device(a: Tensor, backend: Any) -> Tensor:
    """a moved to `backend` (differentiable)."""
    return ToDevice.apply(a, backend=backend)


def _comparison(name: str, symbol: str) -> Callable[[Tensor, Tensor], Tensor]:
    def compare(a: Tensor, b: Tensor) -> Tensor:
        _check_broadcast(name, a.data, b.data)
        return Tensor._wrap(getattr(a.data, f"__{name}__")(b.data), a.backend)

    compare.__name__ = compare.__qualname__ = name
    compare.__doc__ = f"a {symbol} b elementwise, a bool tensor (no gradient)."
    return compare


for _name, _symbol in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"),
                       ("ge", ">=")):
    op(_comparison(_name, _symbol), differentiable=False)
