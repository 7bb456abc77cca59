"""CPU grouped convolution: one selection rule (`conv2d_algorithm`) and the three kernels.

The kernels follow the contract shared with `kernels.reference` and the CUDA module: plain
arrays in, a new array out, NCHW, PyTorch semantics. Each one asks `conv2d_algorithm` which
implementation to run (or takes ``algorithm=`` to force one, for tests and benchmarks), so
what the selection reports is what runs.
"""

from __future__ import annotations

import numpy as np

from ..reference import output_size
from . import direct, gemm

ALGORITHMS = ("direct", "gemm")

# Channels per group from which the GEMM path wins (measured on a 2-core AVX-512 machine):
# below it the convolution is memory-bound and the direct kernel's single pass wins.
GEMM_MIN_CHANNELS = 32


def conv2d_algorithm(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> tuple[str, str]:
    """(algorithm, one-sentence reason) the CPU kernels use for this convolution."""
    c_out, cg = w_shape[0], w_shape[1]
    og = c_out // groups
    if cg == 1:
        return "direct", (
            f"depthwise ({og} output channel(s) per input channel): memory-bound, the direct "
            "kernel streams each input row once"
        )
    if min(cg, og) < GEMM_MIN_CHANNELS:
        return "direct", (
            f"{cg} input / {og} output channels per group (< {GEMM_MIN_CHANNELS}): "
            "memory-bound, the direct kernel keeps a group's rows in cache and makes one pass"
        )
    return "gemm", (
        f"{cg} input / {og} output channels per group (>= {GEMM_MIN_CHANNELS}): "
        "compute-bound, im2col + BLAS GEMM per group runs near peak FLOP/s"
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
    if algo == "direct":
        b = np.zeros(c_out, x.dtype) if b is None else b
        direct.forward(x, w, b, y, *stride, *padding, *dilation, groups)
    else:
        gemm.forward(x, w, b, y, stride, padding, dilation, groups)
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
    if algo == "direct":
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
    if algo == "direct":
        direct.grad_weight(x, gy, gw, *stride, *padding, *dilation, groups)
    else:
        gemm.grad_weight(x, gy, gw, stride, padding, dilation, groups)
    return gw
