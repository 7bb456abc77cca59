"""The op catalogue checked by the tests and by `minitorch-resnext gradcheck`.

Each `OpCase` draws inputs with hypothesis (away from kinks, so central differences are
meaningful), applies the engine's op, and names a NumPy forward reference. A new op adds
one `register(OpCase(...))` next to its kin here (or in its own test module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .. import functional as F
from ..tensor import Tensor
from .strategies import arrays, broadcastable_shapes, shapes

Draw = Callable[[st.DrawFn], tuple[list[np.ndarray], dict[str, Any]]]


@dataclass(frozen=True)
class OpCase:
    """One differentiable op: how to draw inputs, call it, and compute it in NumPy."""

    name: str
    draw: Draw
    fn: Callable[..., Tensor]
    reference: Callable[..., np.ndarray] | None = None
    # indices of inputs that are data (no gradient), e.g. labels
    constant: tuple[int, ...] = field(default=())

    def strategy(self) -> st.SearchStrategy:
        return st.composite(lambda draw: self.draw(draw))()


CASES: dict[str, OpCase] = {}


def register(case: OpCase) -> OpCase:
    """Add an op case to `CASES` under its name; returns it (usable as a decorator)."""
    CASES[case.name] = case
    return case


def away_from(x: np.ndarray, points: tuple[float, ...] = (0.0,), gap: float = 0.05) -> np.ndarray:
    """Move values within `gap` of a kink to a safe distance (keeps strides)."""
    out = x.copy() if x.ndim == 0 else x
    for p in points:
        close = np.abs(out - p) < gap
        out[close] = p + np.where(out[close] >= p, 2 * gap, -2 * gap)
    return out


def _unary(draw: st.DrawFn, low: float = -2.0, high: float = 2.0, kinks: tuple = ()) -> Any:
    shape = draw(shapes(max_dims=3, max_side=4))
    x = draw(arrays(shape, low=low, high=high))
    if kinks:
        x = away_from(x, kinks)
    return [x], {}


def _binary(draw: st.DrawFn, positive_b: bool = False) -> Any:
    sa, sb = draw(broadcastable_shapes(max_dims=3, max_side=4))
    a = draw(arrays(sa))
    b = draw(arrays(sb, low=0.5, high=2.0) if positive_b else arrays(sb))
    return [a, b], {}


def _reduce(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
    x = draw(arrays(shape))
    dims = draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))
    dim = draw(st.sampled_from([None, tuple(sorted(dims)), min(dims) - len(shape)]))
    return [x], {"dim": dim, "keepdim": draw(st.booleans())}


def _np_axes(dim: Any) -> Any:
    return tuple(dim) if isinstance(dim, list) else dim


def _distinct(draw: st.DrawFn) -> Any:
    """Values with no ties (max needs a unique winner for finite differences)."""
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
    n = int(np.prod(shape))
    perm = np.random.default_rng(draw(st.integers(0, 2**31))).permutation(n)
    x = (perm.astype(np.float64) * 0.1 - n * 0.05).reshape(shape)
    dim = draw(st.sampled_from([None] + list(range(len(shape)))))
    return [x], {"dim": dim, "keepdim": draw(st.booleans())}


def _matmul(draw: st.DrawFn) -> Any:
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(st.sampled_from([(), (2,), (1, 3)]))
    a_shape = draw(st.sampled_from([(k,), batch + (m, k)]))
    b_shape = draw(st.sampled_from([(k,), (k, n), batch[-1:] + (k, n)]))
    return [draw(arrays(a_shape)), draw(arrays(b_shape))], {}


def _reshape(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
    x = draw(arrays(shape))
    return [x], {"shape": (-1,) + tuple(reversed(shape))[1:]}


def _permute(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=4, max_side=3))
    dims = draw(st.permutations(range(len(shape))))
    return [draw(arrays(shape))], {"dims": tuple(dims)}


def _expand(draw: st.DrawFn) -> Any:
    small, other = draw(broadcastable_shapes(max_dims=3))
    return [draw(arrays(small))], {"shape": np.broadcast_shapes(small, other)}


def _index(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=2, max_dims=3, min_side=2, max_side=5))
    x = draw(arrays(shape))
    kind = draw(st.sampled_from(["slice", "int", "fancy"]))
    if kind == "slice":
        index = (slice(1, None), slice(None, None, 2))
    elif kind == "int":
        index = (draw(st.integers(-shape[0], shape[0] - 1)),)
    else:  # repeated picks must accumulate
        index = (np.array([0, 1, 0, shape[0] - 1]),)
    return [x], {"index": index}


def _cat(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=3))
    dim = draw(st.integers(0, len(shape) - 1))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        s = list(shape)
        s[dim] = draw(st.integers(1, 3))
        parts.append(draw(arrays(tuple(s))))
    return parts, {"dim": dim}


def _stack(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=0, max_dims=3, max_side=3))
    parts = [draw(arrays(shape)) for _ in range(draw(st.integers(1, 3)))]
    return parts, {"dim": draw(st.integers(0, len(shape)))}


def _pad(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=4, max_side=3))
    pairs = draw(st.integers(1, len(shape)))
    return [draw(arrays(shape))], {"pad": tuple(draw(st.integers(0, 2)) for _ in range(2 * pairs))}


def _where(draw: st.DrawFn) -> Any:
    (a, b) = draw(broadcastable_shapes(max_dims=3))
    cond_shape = draw(st.sampled_from([a, b]))
    seed = draw(st.integers(0, 2**31))
    cond = np.random.default_rng(seed).random(cond_shape) > 0.5
    return [cond, draw(arrays(a)), draw(arrays(b))], {}


def _softmax(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=5))
    return [draw(arrays(shape, low=-5, high=5))], {"dim": draw(st.integers(-len(shape), len(shape) - 1))}


def _max(a: Tensor, dim: int | None, keepdim: bool) -> Tensor:
    return F.max(a) if dim is None else F.max(a, dim, keepdim).values


def _flatten(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=4, max_side=3))
    start = draw(st.integers(0, len(shape) - 1))
    return [draw(arrays(shape))], {"start_dim": start,
                                   "end_dim": draw(st.integers(start, len(shape) - 1))}


def _flat_shape(shape: tuple[int, ...], start: int, end: int) -> tuple[int, ...]:
    return (*shape[:start], int(np.prod(shape[start:end + 1])), *shape[end + 1:])


def _squeeze(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=4, min_side=1, max_side=2))
    return [draw(arrays(shape))], {"dim": draw(st.none() | st.integers(0, len(shape) - 1))}


def _squeezable(a: np.ndarray, dim: int | None) -> tuple[int, ...]:
    dims = range(a.ndim) if dim is None else [dim]
    return tuple(d for d in dims if a.shape[d] == 1)


def _unsqueeze(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=0, max_dims=3, max_side=3))
    return [draw(arrays(shape))], {"dim": draw(st.integers(0, len(shape)))}


def _transpose(draw: st.DrawFn) -> Any:
    shape = draw(shapes(min_dims=1, max_dims=4, max_side=3))
    dims = st.integers(0, len(shape) - 1)
    return [draw(arrays(shape))], {"dim0": draw(dims), "dim1": draw(dims)}


def _linear(draw: st.DrawFn) -> Any:
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    return [draw(arrays((n, k))), draw(arrays((m, k))), draw(arrays((m,)))], {}


def _seeded_dropout(a: Tensor) -> Tensor:
    """Dropout whose mask is the same on every call (a fresh draw would change the function
    between the finite-difference evaluations)."""
    from ..tensor import manual_seed

    manual_seed(0)
    return F.dropout(a, 0.5)


def _np_pad(x: np.ndarray, pad: tuple[int, ...]) -> np.ndarray:
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return np.pad(x, widths)


def _np_log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    s = x - x.max(axis=dim, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=dim, keepdims=True))


def _np_var(x: np.ndarray, dim: Any, keepdim: bool) -> np.ndarray:
    n = x.size if dim is None else int(np.prod([x.shape[d] for d in np.atleast_1d(dim)]))
    return np.var(x, axis=_np_axes(dim), keepdims=keepdim, ddof=1 if n > 1 else 0)


for _case in [
    OpCase("add", _binary, F.add, np.add),
    OpCase("sub", _binary, F.sub, np.subtract),
    OpCase("mul", _binary, F.mul, np.multiply),
    OpCase("div", lambda d: _binary(d, positive_b=True), F.div, np.divide),
    OpCase("neg", _unary, F.neg, np.negative),
    OpCase("pow", lambda d: _binary(d, positive_b=True), lambda a, b: F.pow(b, a),
           lambda a, b: np.power(b, a)),
    OpCase("pow_scalar", lambda d: _unary(d, 0.3, 2.0), lambda a: F.pow(a, 2.5),
           lambda a: a**2.5),
    OpCase("exp", _unary, F.exp, np.exp),
    OpCase("log", lambda d: _unary(d, 0.2, 3.0), F.log, np.log),
    OpCase("sqrt", lambda d: _unary(d, 0.2, 3.0), F.sqrt, np.sqrt),
    OpCase("abs", lambda d: _unary(d, kinks=(0.0,)), F.abs, np.abs),
    OpCase("relu", lambda d: _unary(d, kinks=(0.0,)), F.relu, lambda a: np.maximum(a, 0)),
    OpCase("maximum", _binary, F.maximum, np.maximum),
    OpCase("clip", lambda d: _unary(d, kinks=(-0.5, 0.7)), lambda a: F.clip(a, -0.5, 0.7),
           lambda a: np.clip(a, -0.5, 0.7)),
    OpCase("hardtanh", lambda d: _unary(d, kinks=(-0.5, 0.7)), lambda a: F.hardtanh(a, -0.5, 0.7),
           lambda a: np.clip(a, -0.5, 0.7)),
    OpCase("leaky_relu", lambda d: _unary(d, kinks=(0.0,)), lambda a: F.leaky_relu(a, 0.2),
           lambda a: np.where(a > 0, a, 0.2 * a)),
    OpCase("where", _where, F.where, np.where, constant=(0,)),
    OpCase("sum", _reduce, F.sum,
           lambda a, dim, keepdim: np.sum(a, axis=_np_axes(dim), keepdims=keepdim)),
    OpCase("mean", _reduce, F.mean,
           lambda a, dim, keepdim: np.mean(a, axis=_np_axes(dim), keepdims=keepdim)),
    OpCase("var", _reduce, F.var, _np_var),
    OpCase("amax", _distinct, F.amax,
           lambda a, dim, keepdim: np.max(a, axis=dim, keepdims=keepdim)),
    OpCase("matmul", _matmul, F.matmul, np.matmul),
    OpCase("max", _distinct, _max,  # max(a) has no keepdim, like torch.max
           lambda a, dim, keepdim: np.max(a, axis=dim, keepdims=keepdim and dim is not None)),
    OpCase("reshape", _reshape, lambda a, shape: F.reshape(a, shape),
           lambda a, shape: a.reshape(shape)),
    OpCase("flatten", _flatten, F.flatten,
           lambda a, start_dim, end_dim: a.reshape(_flat_shape(a.shape, start_dim, end_dim))),
    OpCase("squeeze", _squeeze, F.squeeze, lambda a, dim: np.squeeze(a, _squeezable(a, dim))),
    OpCase("unsqueeze", _unsqueeze, F.unsqueeze, lambda a, dim: np.expand_dims(a, dim)),
    OpCase("permute", _permute, lambda a, dims: F.permute(a, dims),
           lambda a, dims: a.transpose(dims)),
    OpCase("transpose", _transpose, F.transpose, lambda a, dim0, dim1: np.swapaxes(a, dim0, dim1)),
    OpCase("expand", _expand, lambda a, shape: F.expand(a, shape),
           lambda a, shape: np.broadcast_to(a, shape)),
    OpCase("index", _index, F.index, lambda a, index: a[index]),
    OpCase("cat", _cat, lambda *xs, dim: F.cat(xs, dim),
           lambda *xs, dim: np.concatenate(xs, axis=dim)),
    OpCase("stack", _stack, lambda *xs, dim: F.stack(xs, dim),
           lambda *xs, dim: np.stack(xs, axis=dim)),
    OpCase("pad", _pad, F.pad, _np_pad),
    OpCase("log_softmax", _softmax, F.log_softmax, _np_log_softmax),
    OpCase("softmax", _softmax, F.softmax, lambda a, dim: np.exp(_np_log_softmax(a, dim))),
    OpCase("linear", _linear, F.linear, lambda x, w, b: x @ w.T + b),
    OpCase("cast", _unary, lambda a: F.cast(a, np.float64), lambda a: a),
    OpCase("to_device", _unary, lambda a: F.to_device(a, a.backend), lambda a: a),
    OpCase("dropout", _unary, _seeded_dropout),
]:
    register(_case)


def _conv2d(draw: st.DrawFn) -> Any:
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 6))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 6))
    x = draw(arrays((draw(st.integers(1, 2)), cin, h, w)))
    weight = draw(arrays((cout, cin // groups, kh, kw)))
    bias = draw(arrays((cout,)))
    return [x, weight, bias], {"stride": stride, "padding": padding, "dilation": dilation,
                               "groups": groups}


def _np_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, **kw: Any) -> np.ndarray:
    from ..kernels import reference
    from ..kernels.geometry import Conv2dGeometry

    geometry = Conv2dGeometry.of(x.shape, w.shape, kw["stride"], kw["padding"], kw["dilation"],
                                 kw["groups"])
    return reference.conv2d_forward(x, w, b, geometry)


def _batch_norm(draw: st.DrawFn) -> Any:
    shape = (draw(st.integers(2, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)),
             draw(st.integers(1, 3)))
    c = shape[1]
    return [draw(arrays(shape)), draw(arrays((c,), low=0.5, high=2.0)), draw(arrays((c,)))], {}


def _np_batch_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    axes = (0, 2, 3)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * weight[:, None, None] + bias[:, None, None]


def _batch_norm_relu(draw: st.DrawFn) -> Any:
    """`_batch_norm` inputs with each channel's bias moved so that no output is near 0, the
    ReLU's kink: zero goes into the middle of the widest gap between a channel's outputs."""
    (x, weight, bias), kwargs = _batch_norm(draw)
    y = _np_batch_norm(x, weight, np.zeros_like(bias))
    for c in range(x.shape[1]):
        values = np.sort(np.concatenate([y[:, c].ravel(), [-3.0, 3.0]]))
        widest = int(np.argmax(np.diff(values)))
        bias[c] = -(values[widest] + values[widest + 1]) / 2
    return [x, weight, bias], kwargs


def _np_batch_norm_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.maximum(_np_batch_norm(x, weight, bias), 0.0)


def _pool(draw: st.DrawFn) -> Any:
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(k[0], 6)),
             draw(st.integers(k[1], 6)))
    perm = np.random.default_rng(draw(st.integers(0, 2**31))).permutation(int(np.prod(shape)))
    x = (perm * 0.1 - 1.0).reshape(shape)  # distinct values: a unique max per window
    return [x], {"kernel_size": k, "stride": s, "padding": p}


def _np_pool(x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, reduce: Any,
             fill: float) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = reduce(xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(2, 3))
    return out


def _adaptive(draw: st.DrawFn) -> Any:
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 7)),
             draw(st.integers(1, 7)))
    out = (draw(st.integers(1, shape[2])), draw(st.integers(1, shape[3])))
    return [draw(arrays(shape))], {"output_size": out}


def _np_adaptive(x: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    (h, w), (oh, ow) = x.shape[2:], output_size
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows = slice(i * h // oh, -(-(i + 1) * h // oh))
            cols = slice(j * w // ow, -(-(j + 1) * w // ow))
            out[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return out


def _cross_entropy(draw: st.DrawFn) -> Any:
    n, c = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    labels = np.random.default_rng(draw(st.integers(0, 2**31))).integers(0, c, size=n)
    return [draw(arrays((n, c), low=-4, high=4)), labels], {
        "label_smoothing": draw(st.sampled_from([0.0, 0.1]))}


def _nll_loss(draw: st.DrawFn) -> Any:
    (logits, labels), _ = _cross_entropy(draw)
    return [logits, labels], {}


def _np_cross_entropy(logits: np.ndarray, labels: np.ndarray, label_smoothing: float) -> Any:
    logp = _np_log_softmax(logits, 1)
    picked = -logp[np.arange(len(labels)), labels]
    return np.mean(picked * (1 - label_smoothing) - logp.mean(axis=1) * label_smoothing)


for _case in [
    OpCase("conv2d", _conv2d, lambda x, w, b, **kw: F.conv2d(x, w, b, **kw), _np_conv2d),
    OpCase("batch_norm", _batch_norm,
           lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), _np_batch_norm),
    OpCase("batch_norm_relu", _batch_norm_relu,
           lambda x, w, b: F.relu(F.batch_norm(x, None, None, w, b, training=True)),
           _np_batch_norm_relu),
    OpCase("max_pool2d", _pool, F.max_pool2d,
           lambda x, **kw: _np_pool(x, **kw, reduce=np.max, fill=-np.inf)),
    OpCase("avg_pool2d", _pool, F.avg_pool2d,
           lambda x, **kw: _np_pool(x, **kw, reduce=np.mean, fill=0.0)),
    OpCase("adaptive_avg_pool2d", _adaptive, F.adaptive_avg_pool2d, _np_adaptive),
    OpCase("cross_entropy", _cross_entropy,
           lambda x, t, **kw: F.cross_entropy(x, t, **kw), _np_cross_entropy, constant=(1,)),
    OpCase("nll_loss", _nll_loss, lambda x, t: F.nll_loss(x, t),
           lambda x, t: -x[np.arange(len(t)), t].mean(), constant=(1,)),
]:
    register(_case)


@dataclass
class CaseResult:
    forward_error: float  # relative to the NumPy reference (nan where there is none)
    gradcheck: Any  # a GradcheckReport, or None where nothing needs a gradient


def check(case: OpCase, inputs: list[np.ndarray], kwargs: dict[str, Any],
          device: str = "cpu") -> CaseResult:
    """Run `case` on float64 `inputs`: forward against NumPy, backward against gradcheck."""
    from .gradcheck import gradcheck

    tensors = [
        Tensor(x, requires_grad=i not in case.constant and x.dtype.kind == "f", device=device)
        for i, x in enumerate(inputs)
    ]
    out = case.fn(*tensors, **kwargs)
    error = float("nan")
    if case.reference is not None:
        expected = np.asarray(case.reference(*inputs, **kwargs))
        got = out.numpy()
        if got.shape != expected.shape:
            raise AssertionError(f"{case.name}: shape {got.shape}, NumPy gives {expected.shape}")
        scale = max(float(np.abs(expected).max(initial=0.0)), 1e-30)
        error = float(np.abs(got - expected).max(initial=0.0)) / scale
    report = None
    if any(t.requires_grad for t in tensors):
        report = gradcheck(lambda *xs: case.fn(*xs, **kwargs), tensors)
    return CaseResult(error, report)
