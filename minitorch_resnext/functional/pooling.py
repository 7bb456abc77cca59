"""2-D pooling over NCHW: `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d`.

Pooling is a loop over the kernel's taps: for tap (i, j) the input pixels it reads form one
strided view of the padded input, `xpad[:, :, i::sH, j::sW]` cut to the output size, so each
tap is one vectorised pass over an output-sized array (no copies into windows), the same on
NumPy and CuPy. The backward adds each tap's share of the gradient into the same view. Where
the device has fused kernels (`fusion.kernel`: the CPU's visit each window once, in parallel
over planes) max and average pooling use them instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fusion
from ..autograd import Context, Function
from ..kernels.geometry import IntPair, pair
from ..tensor import Tensor
from .registry import op


def pool_output_size(op: str, input_hw: tuple[int, int], kernel: tuple[int, int],
                     stride: tuple[int, int], padding: tuple[int, int]) -> tuple[int, int]:
    """(H_out, W_out) = (H + 2p - k) // s + 1, with PyTorch's checks and clear errors."""
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: kernel_size and stride must be positive and padding "
                         f"non-negative, got kernel {kernel}, stride {stride}, padding {padding}")
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel}")
    out = tuple((n + 2 * p - k) // s + 1
                for n, k, s, p in zip(input_hw, kernel, stride, padding))
    if min(out) < 1:
        raise ValueError(f"{op}: input spatial size {tuple(input_hw)} is too small for kernel "
                         f"{kernel} with padding {padding}")
    return out  # type: ignore[return-value]


def _check_input(op: str, x: Any) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: needs a floating-point input, got dtype {x.dtype}")


def _taps(kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]
          ) -> list[tuple[slice, slice, slice, slice]]:
    """Index of the padded-input view read by each kernel tap, in row-major tap order."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    return [(slice(None), slice(None), slice(i, i + sh * (oh - 1) + 1, sh),
             slice(j, j + sw * (ow - 1) + 1, sw)) for i in range(kh) for j in range(kw)]


def _padded(xp: Any, x: Any, padding: tuple[int, int], fill: float) -> Any:
    ph, pw = padding
    if ph == pw == 0:
        return x
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def _unpadded(g: Any, padding: tuple[int, int], input_hw: tuple[int, int]) -> Any:
    (ph, pw), (h, w) = padding, input_hw
    return g if ph == pw == 0 else g[:, :, ph : ph + h, pw : pw + w]


class MaxPool2d(Function):
    """Max over each window; the gradient goes to the first maximal element (row-major)."""

    @staticmethod
    def forward(ctx: Context, x: Any, kernel: tuple[int, int] = (1, 1),
                stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> Any:
        _check_input("max_pool2d", x)
        xp = ctx.xp
        out_hw = pool_output_size("max_pool2d", x.shape[2:], kernel, stride, padding)
        kernel_fn = fusion.kernel(ctx.backend, "max_pool2d_forward", x.dtype)
        ctx.fused = kernel_fn is not None
        if ctx.fused:  # the winning taps only where a gradient may flow back
            out, arg = kernel_fn(x, kernel, stride, padding, out_hw, ctx.needs_input_grad[0])
            ctx.save_for_backward(arg)
            ctx.geometry = (x.shape[2:], kernel, stride, padding)
            return out
        xpad = _padded(xp, x, padding, -np.inf)
        taps = _taps(kernel, stride, out_hw)
        out = xpad[taps[0]].copy()
        arg = xp.zeros(out.shape, dtype=np.uint8 if len(taps) < 256 else np.int32)
        for t, tap in enumerate(taps[1:], start=1):
            window = xpad[tap]
            better = window > out
            xp.maximum(out, window, out=out)
            arg += better * (t - arg)  # arg = t where better; plain arithmetic, no masks
        ctx.save_for_backward(arg)
        ctx.geometry = (x.shape, xpad.shape, taps, padding)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        (arg,) = ctx.saved_tensors
        if ctx.fused:
            return ctx.backend.max_pool2d_backward(g, arg, *ctx.geometry)
        shape, padded_shape, taps, padding = ctx.geometry
        gpad = ctx.xp.zeros(padded_shape, dtype=g.dtype)
        for t, tap in enumerate(taps):
            gpad[tap] += g * (arg == t)
        return _unpadded(gpad, padding, shape[2:])


class AvgPool2d(Function):
    """Mean over each window; zero padding counts in the divisor unless excluded."""

    @staticmethod
    def forward(ctx: Context, x: Any, kernel: tuple[int, int] = (1, 1),
                stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                count_include_pad: bool = True) -> Any:
        _check_input("avg_pool2d", x)
        xp = ctx.xp
        out_hw = pool_output_size("avg_pool2d", x.shape[2:], kernel, stride, padding)
        kernel_fn = fusion.kernel(ctx.backend, "avg_pool2d_forward", x.dtype)
        ctx.fused = kernel_fn is not None
        if ctx.fused:
            ctx.geometry = (x.shape[2:], kernel, stride, padding, count_include_pad)
            return kernel_fn(x, kernel, stride, padding, out_hw, count_include_pad)
        xpad = _padded(xp, x, padding, 0.0)
        taps = _taps(kernel, stride, out_hw)
        out = xpad[taps[0]].copy()
        for tap in taps[1:]:
            out += xpad[tap]
        if count_include_pad or padding == (0, 0):
            scale = 1.0 / (kernel[0] * kernel[1])
        else:
            counts = [_valid_counts(n, k, s, p, o) for n, k, s, p, o in
                      zip(x.shape[2:], kernel, stride, padding, out_hw)]
            scale = xp.asarray(1.0 / np.outer(*counts), dtype=x.dtype)
        out *= scale
        ctx.geometry = (x.shape, xpad.shape, taps, padding, scale)
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        if ctx.fused:
            return ctx.backend.avg_pool2d_backward(g, *ctx.geometry)
        shape, padded_shape, taps, padding, scale = ctx.geometry
        share = g * scale
        gpad = ctx.xp.zeros(padded_shape, dtype=g.dtype)
        for tap in taps:
            gpad[tap] += share
        return _unpadded(gpad, padding, shape[2:])


def _valid_counts(n: int, k: int, s: int, p: int, out: int) -> np.ndarray:
    """For each output index along one axis, how many of its k taps fall inside the input."""
    start = np.arange(out) * s - p
    return np.minimum(start + k, n) - np.maximum(start, 0)


def _bin_matrix(n: int, out: int, dtype: Any) -> np.ndarray:
    """(out, n) averaging matrix of adaptive pooling: bin i covers
    [floor(i n / out), ceil((i + 1) n / out)), PyTorch's bins."""
    m = np.zeros((out, n), dtype=dtype)
    for i in range(out):
        lo, hi = (i * n) // out, -((-(i + 1) * n) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class AdaptiveAvgPool2d(Function):
    """y = A_h x A_w^T per image and channel, with A the bins' averaging matrices."""

    @staticmethod
    def forward(ctx: Context, x: Any, output_size: tuple[int, int] = (1, 1)) -> Any:
        _check_input("adaptive_avg_pool2d", x)
        xp = ctx.xp
        (h, w), (oh, ow) = x.shape[2:], output_size
        ctx.shape = x.shape
        if oh < 1 or ow < 1:
            raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got "
                             f"{output_size}")
        if (oh, ow) == (1, 1):
            ctx.mats = None
            # einsum sums the short rows of all channels in one loop, where a mean over two
            # axes starts a reduction per row
            n, c = x.shape[:2]
            total = xp.einsum("nci->nc", x.reshape(n, c, h * w))
            return (total / (h * w)).astype(x.dtype, copy=False).reshape(n, c, 1, 1)
        ah = xp.asarray(_bin_matrix(h, oh, x.dtype))
        aw = xp.asarray(_bin_matrix(w, ow, x.dtype))
        ctx.mats = (ah, aw)
        return xp.matmul(xp.matmul(ah, x), aw.T)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        if ctx.mats is None:  # global average: spread evenly
            return ctx.xp.broadcast_to(g / (ctx.shape[2] * ctx.shape[3]), ctx.shape)
        ah, aw = ctx.mats
        return ctx.xp.matmul(ctx.xp.matmul(ah.T, g), aw)


@op
def max_pool2d(input: Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0) -> Tensor:
    """Max pooling like `torch.nn.functional.max_pool2d` (stride defaults to kernel_size)."""
    kernel = pair(kernel_size, "max_pool2d: kernel_size")
    return MaxPool2d.apply(input, kernel=kernel,
                           stride=kernel if stride is None else pair(stride, "max_pool2d: stride"),
                           padding=pair(padding, "max_pool2d: padding"))


@op
def avg_pool2d(input: Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0, *, count_include_pad: bool = True) -> Tensor:
    """Average pooling like `torch.nn.functional.avg_pool2d` (stride defaults to kernel_size)."""
    kernel = pair(kernel_size, "avg_pool2d: kernel_size")
    return AvgPool2d.apply(input, kernel=kernel,
                           stride=kernel if stride is None else pair(stride, "avg_pool2d: stride"),
                           padding=pair(padding, "avg_pool2d: padding"),
                           count_include_pad=count_include_pad)


@op
def adaptive_avg_pool2d(input: Tensor, output_size: IntPair) -> Tensor:
    """Average over PyTorch's adaptive bins to a fixed (H_out, W_out), any input size."""
    return AdaptiveAvgPool2d.apply(input,
                                   output_size=pair(output_size, "adaptive_avg_pool2d: size"))
