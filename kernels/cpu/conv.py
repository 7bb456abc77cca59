"""CPU grouped convolution: one selection rule (`conv2d_algorithm`) and the three kernels.

The kernels follow the contract shared with `kernels.reference` and the CUDA module: plain
arrays in, a new array out, NCHW, PyTorch semantics. Each one asks `conv2d_algorithm` which
implementation to run (or takes ``algorithm=`` to force one, for tests and benchmarks), so
what the selection reports is what runs.
"""

from __future__ import annotations

import math

import numpy as np

from ..reference import output_size
from . import direct, gemm, implicit, tiled

ALGORITHMS = ("direct", "gemm", "implicit", "tiled")

# Thresholds on min(input, output channels per group), measured single-threaded on a 2-core
# AVX-512 machine (fp32, forward + grad_input + grad_weight): for 3x3 kernels the direct
# kernel beat im2col + GEMM at 32 channels per group (7x7 images, 2x) and 64 (32x32, 10%),
# im2col + GEMM won at 96 (28x28, 15%) and 128 (56x56, 25%); below 96 the tiled kernel now
# beats both at stride 1. A 1x1 unpadded convolution is a GEMM without
# im2col (strided: on every stride-th pixel), which wins from 8 channels per group (2.5x).
GEMM_MIN_CHANNELS = 96
POINTWISE_GEMM_MIN_CHANNELS = 8
# From 8 channels per group (stride 1, below GEMM_MIN_CHANNELS) the register-tiled kernel wins:
# forward and grad_input 1.2-2.5x faster than the direct kernel at 8-64 channels per group;
# at 4 the direct kernel is 1.5x faster.
TILED_MIN_CHANNELS = 8
# With at least 32 channels per group on small images the implicit-GEMM kernel (output channels
# on the lanes, no padding, no junk pixels) beats the tiled one (forward, 2 threads): 1.47x at
# 7x7, 1.2-1.28x at 10x10 and 14x14 (32 and 64 channels per group), 1.11x at 16x16 (64); from
# 28x28 they are even (1.0-1.09x), and at 32x32 with 64 channels the tiled kernel is 1.9x faster.
IMPLICIT_MIN_CHANNELS = 32
IMPLICIT_MAX_PIXELS = 16 * 16  # output pixels per image
# 12 to 16 channels per group, 3x3, stride 1, padding 1 on 7- and 14-wide images: the implicit
# kernel's row tiles, forward and grad_input over the tiled kernel's (2 threads, batch 32):
# 1.21-1.26x at 14x14 with 12 and 16 channels, 1.35-1.38x at 7x7 with 16; with 8 they are
# slower (0.77-0.81x at 14x14: their 16 lanes are half empty).
ROW_MIN_CHANNELS = 12
# grad_weight of the convolutions the tiled kernel takes: the implicit-GEMM reduction from 10
# input channels per group, the direct kernel below. Implicit over direct (2 threads, batch 32):
# 1.7x at 14x14 with 10, 12 and 16 channels, 1.04-1.12x at 28x28 and 56x56 with 10 and 12, 1.5x
# at 16 (28x28); with 8 (half its 16 lanes idle) 1.55x at 14x14 but 0.87x at 28x28.
TILED_WEIGHT_MIN_CHANNELS = 10


def conv2d_algorithm(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> tuple[str, str]:
    """(algorithm, one-sentence reason) the CPU kernels use for this convolution."""
    c_out, cg, kh, kw = w_shape
    og = c_out // groups
    channels = f"{cg} input / {og} output channels per group"
    if cg == 1:
        return "direct", (
            f"depthwise ({og} output channel(s) per input channel): memory-bound, the direct "
            "kernel reads each input row once and keeps it in cache for all taps"
        )
    if (kh, kw) == (1, 1) and padding == (0, 0):
        if min(cg, og) >= POINTWISE_GEMM_MIN_CHANNELS:
            return "gemm", (
                f"1x1 convolution with {channels} (>= {POINTWISE_GEMM_MIN_CHANNELS}): a plain "
                "batched GEMM on the NCHW arrays (no im2col; strided: on every stride-th pixel), "
                "so BLAS does all the work"
            )
    elif min(cg, og) >= GEMM_MIN_CHANNELS:
        return "gemm", (
            f"{channels} (>= {GEMM_MIN_CHANNELS}): compute-bound with long reductions, where "
            "im2col + BLAS GEMM per group is faster than the direct kernel"
        )
    elif tiled.supports(stride, padding, dilation, (kh, kw)):
        pixels = math.prod(output_size(x_shape[2:], (kh, kw), stride, padding, dilation))
        if min(cg, og) >= IMPLICIT_MIN_CHANNELS and pixels <= IMPLICIT_MAX_PIXELS:
            return "implicit", (
                f"{channels} (>= {IMPLICIT_MIN_CHANNELS}) on images of <= {IMPLICIT_MAX_PIXELS} "
                f"output pixels, stride 1: an implicit GEMM with {implicit.MR} output pixels x "
                f"{implicit.NR} output channels per tile reads the input in place and skips the "
                "taps that fall on padding"
            )
        if ROW_MIN_CHANNELS <= min(cg, og) and max(cg, og) <= implicit.ROW_LANES and (
                implicit.rows_fit(x_shape, w_shape, stride, padding, dilation, groups)):
            return "implicit", (
                f"{channels} (>= {ROW_MIN_CHANNELS}), 3x3, stride 1, padding 1 on "
                f"{x_shape[3]}-wide images: the implicit kernel's row tiles hold one output row "
                f"by {implicit.ROW_LANES} output channels, so each input value is broadcast "
                "once for all the taps that read it"
            )
        if min(cg, og) >= TILED_MIN_CHANNELS:
            weight = (
                "; grad_weight runs the implicit-GEMM reduction" if cg >= TILED_WEIGHT_MIN_CHANNELS
                else f"; grad_weight runs the direct kernel (fewer than {TILED_WEIGHT_MIN_CHANNELS}"
                " input channels per group)")
            return "tiled", (
                f"{channels} (>= {TILED_MIN_CHANNELS}), stride 1: compute-bound, so a "
                f"register-tiled {tiled.MR}x{tiled.NR} micro-kernel multiplies the weights with a "
                f"zero-padded copy of the input, no im2col{weight}"
            )
    return "direct", (
        f"{channels}: few FLOPs per byte, so the direct kernel's single pass over the input, "
        "four output channels by four taps per inner loop, beats copying it into im2col columns"
    )


def _select(
    algorithm: str | None,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> str:
    if algorithm is None:
        return conv2d_algorithm(x_shape, w_shape, stride, padding, dilation, groups)[0]
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS} or None, got {algorithm!r}")
    if algorithm in ("implicit", "tiled") and not tiled.supports(
            stride, padding, dilation, w_shape[2:]):
        raise ValueError(
            f"algorithm {algorithm!r} needs stride 1 and padding <= dilation * (kernel size - 1), got "
            f"stride {stride}, padding {padding}, dilation {dilation}, kernel {tuple(w_shape[2:])}"
        )
    return algorithm


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    algorithm: str | None = None,
) -> np.ndarray:
    """y (N, C_out, H_out, W_out) = grouped conv of x with w, plus bias."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    n_img, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    out_hw = output_size((h, wd), (kh, kw), stride, padding, dilation)
    y = np.empty((n_img, c_out, *out_hw), x.dtype)
    algo = _select(algorithm, x.shape, w.shape, stride, padding, dilation, groups)
    if algo == "gemm":
        gemm.forward(x, w, b, y, stride, padding, dilation, groups)
        return y
    b = np.zeros(c_out, x.dtype) if b is None else b
    if algo == "implicit":
        implicit.forward(x, w, b, y, stride, padding, dilation, groups)
    elif algo == "tiled":
        tiled.forward(x, w, b, y, padding, dilation, groups)
    else:
        direct.forward(x, w, b, y, *stride, *padding, *dilation, groups)
    return y


def conv2d_grad_input(
    grad_out: np.ndarray,
    w: np.ndarray,
    input_hw: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    algorithm: str | None = None,
) -> np.ndarray:
    """grad_x (N, C_in, H, W) of the convolution, given grad_out (N, C_out, H_out, W_out)."""
    gy = np.ascontiguousarray(grad_out)
    w = np.ascontiguousarray(w, dtype=gy.dtype)
    gx = np.empty((gy.shape[0], w.shape[1] * groups, *input_hw), gy.dtype)
    algo = _select(algorithm, gx.shape, w.shape, stride, padding, dilation, groups)
    if algo in ("implicit", "tiled"):
        (implicit if algo == "implicit" else tiled).grad_input(gy, w, gx, padding, dilation, groups)
    elif algo == "direct":
        direct.grad_input(gy, w, gx, *stride, *padding, *dilation, groups)
    else:
        gemm.grad_input(gy, w, gx, stride, padding, dilation, groups)
    return gx


def conv2d_grad_weight(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel_hw: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    algorithm: str | None = None,
) -> np.ndarray:
    """grad_w (C_out, C_in // groups, kH, kW) of the convolution, deterministic."""
    x = np.ascontiguousarray(x)
    gy = np.ascontiguousarray(grad_out, dtype=x.dtype)
    gw = np.empty((gy.shape[1], x.shape[1] // groups, *kernel_hw), x.dtype)
    algo = _select(algorithm, x.shape, gw.shape, stride, padding, dilation, groups)
    if algo == "implicit" or (algo == "tiled" and gw.shape[1] >= TILED_WEIGHT_MIN_CHANNELS):
        implicit.grad_weight(x, gy, gw, stride, padding, dilation, groups)
    elif algo in ("direct", "tiled"):
        direct.grad_weight(x, gy, gw, *stride, *padding, *dilation, groups)
    else:
        gemm.grad_weight(x, gy, gw, stride, padding, dilation, groups)
    return gw
