"""Direct grouped-convolution kernels for few channels per group (and depthwise).

With a handful of channels per group a convolution does ~9 FLOP per byte it must move, so it
is memory-bound: the job is to read x and write y once, at full vector width. Every kernel
here owns one output row block per parallel task and sweeps it with an inner loop along the
image width, which is contiguous for stride 1, so LLVM vectorises it. Padding is handled by
clipping that loop to the valid range of each kernel column (`valid_cols`), not by a branch
per element.

Arrays are C-contiguous NCHW; the caller allocates outputs. Loops use views of single rows so
the innermost index is one-dimensional.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# grad_weight: number of independent partial sums per group is chosen from the shape only,
# so the fixed-order reduction gives bitwise the same result whatever the thread count.
_GRAD_WEIGHT_TASKS = 16


@njit(cache=True, inline="always")
def valid_cols(offset: int, stride: int, width: int, out_width: int) -> tuple[int, int]:
    """Output columns q in [lo, hi) whose input column q*stride + offset lies in [0, width)."""
    lo = max(0, (stride - 1 - offset) // stride)
    hi = min(out_width, (width - offset + stride - 1) // stride)
    return lo, max(lo, hi)


@njit(parallel=True, cache=True)
def forward(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, y: np.ndarray,
    sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int,
) -> None:
    """y = conv(x, w) + bias; one task per (image, group, output row)."""
    n_img, _, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    _, _, out_h, out_w = y.shape
    og = c_out // groups
    for task in prange(n_img * groups * out_h):
        n = task // (groups * out_h)
        g = (task // out_h) % groups
        r = task % out_h
        for o in range(og):
            y[n, g * og + o, r, :] = bias[g * og + o]
        for c in range(cg):
            for i in range(kh):
                ih = r * sh - ph + i * dh
                if ih < 0 or ih >= h:
                    continue
                xrow = x[n, g * cg + c, ih]
                for j in range(kw):
                    off = j * dw - pw
                    lo, hi = valid_cols(off, sw, wd, out_w)
                    for o in range(og):
                        yrow = y[n, g * og + o, r]
                        wv = w[g * og + o, c, i, j]
                        for q in range(lo, hi):
                            yrow[q] += wv * xrow[q * sw + off]


@njit(parallel=True, cache=True)
def grad_input(
    gy: np.ndarray, w: np.ndarray, gx: np.ndarray,
    sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int,
) -> None:
    """gx = conv^T(gy, w); one task per (image, group, input row), scattering along the row."""
    n_img, _, h, wd = gx.shape
    c_out, cg, kh, kw = w.shape
    _, _, out_h, out_w = gy.shape
    og = c_out // groups
    for task in prange(n_img * groups * h):
        n = task // (groups * h)
        g = (task // h) % groups
        ih = task % h
        for c in range(cg):
            gx[n, g * cg + c, ih, :] = 0
        for i in range(kh):
            t = ih + ph - i * dh
            if t < 0 or t % sh != 0 or t // sh >= out_h:
                continue
            r = t // sh
            for o in range(og):
                gyrow = gy[n, g * og + o, r]
                for c in range(cg):
                    gxrow = gx[n, g * cg + c, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = valid_cols(off, sw, wd, out_w)
                        wv = w[g * og + o, c, i, j]
                        for q in range(lo, hi):
                            gxrow[q * sw + off] += wv * gyrow[q]


@njit(parallel=True, cache=True)
def grad_weight(
    x: np.ndarray, gy: np.ndarray, gw: np.ndarray,
    sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int,
) -> None:
    """gw = sum over images and pixels of gy * shifted x, deterministically.

    Task (group, image chunk) accumulates elementwise along the output row into its own
    buffer (vectorisable, no reduction in the hot loop), then sums the row; chunks are
    added in a fixed order at the end.
    """
    n_img, _, h, wd = x.shape
    c_out, cg, kh, kw = gw.shape
    _, _, out_h, out_w = gy.shape
    og = c_out // groups
    chunks = min(n_img, max(1, _GRAD_WEIGHT_TASKS // groups))
    partial = np.empty((chunks, c_out, cg, kh, kw), dtype=gw.dtype)
    for task in prange(groups * chunks):
        g = task // chunks
        k = task % chunks
        acc = np.zeros((og, cg, kh, kw, out_w), dtype=gw.dtype)
        for n in range(k * n_img // chunks, (k + 1) * n_img // chunks):
            for r in range(out_h):
                for c in range(cg):
                    for i in range(kh):
                        ih = r * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        xrow = x[n, g * cg + c, ih]
                        for j in range(kw):
                            off = j * dw - pw
                            lo, hi = valid_cols(off, sw, wd, out_w)
                            for o in range(og):
                                gyrow = gy[n, g * og + o, r]
                                arow = acc[o, c, i, j]
                                for q in range(lo, hi):
                                    arow[q] += gyrow[q] * xrow[q * sw + off]
        for o in range(og):
            for c in range(cg):
                for i in range(kh):
                    for j in range(kw):
                        partial[k, g * og + o, c, i, j] = acc[o, c, i, j].sum()
    gw[...] = partial[0]
    for k in range(1, chunks):
        gw += partial[k]
