"""im2col + BLAS grouped convolution for many channels per group.

With tens of channels per group a convolution is compute-bound, and the fastest matrix
multiply on the machine is BLAS (through ``numpy.matmul``). Each group's convolution over a
chunk of images is one GEMM: ``y_g (og, m*P) = w_g (og, K) @ col_g (K, m*P)`` where
``K = cg*kH*kW`` and ``P = H_out*W_out``. Images are processed in chunks so that every GEMM
has enough columns to run at full speed while the ``col`` buffer stays bounded. The Numba
helpers below move data between NCHW and the GEMM layouts, in parallel over planes that
each task owns.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .direct import valid_cols

# aim for GEMMs with about this many columns (images x output pixels) per call
_GEMM_COLUMNS = 4096


@njit(parallel=True, cache=True)
def _im2col(
    x: np.ndarray,
    col: np.ndarray,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
) -> None:
    """col[g, c, i, j, n, r, q] = x[n, g*cg + c, r*sh - ph + i*dh, q*sw - pw + j*dw] (0 outside)."""
    groups, cg, kh, kw, n_img, out_h, out_w = col.shape
    _, _, h, wd = x.shape
    for task in prange(groups * cg * kh * kw * n_img):
        n = task % n_img
        j = (task // n_img) % kw
        i = (task // (n_img * kw)) % kh
        gc = task // (n_img * kw * kh)
        g, c = gc // cg, gc % cg
        off = j * dw - pw
        lo, hi = valid_cols(off, sw, wd, out_w)
        for r in range(out_h):
            dst = col[g, c, i, j, n, r]
            ih = r * sh - ph + i * dh
            if ih < 0 or ih >= h:
                dst[:] = 0
                continue
            src = x[n, g * cg + c, ih]
            dst[:lo] = 0
            dst[hi:] = 0
            for q in range(lo, hi):
                dst[q] = src[q * sw + off]


@njit(parallel=True, cache=True)
def _col2im(
    col: np.ndarray,
    gx: np.ndarray,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
) -> None:
    """gx[n, g*cg + c] = sum over taps of col[g, c, i, j, n] added back at its input position."""
    groups, cg, kh, kw, n_img, out_h, out_w = col.shape
    _, _, h, wd = gx.shape
    for task in prange(n_img * groups * cg):
        n = task // (groups * cg)
        g = (task // cg) % groups
        c = task % cg
        plane = gx[n, g * cg + c]
        plane[:] = 0
        for i in range(kh):
            for r in range(out_h):
                ih = r * sh - ph + i * dh
                if ih < 0 or ih >= h:
                    continue
                dst = plane[ih]
                for j in range(kw):
                    off = j * dw - pw
                    lo, hi = valid_cols(off, sw, wd, out_w)
                    src = col[g, c, i, j, n, r]
                    for q in range(lo, hi):
                        dst[q * sw + off] += src[q]


@njit(parallel=True, cache=True)
def _to_gemm_layout(a: np.ndarray, out: np.ndarray) -> None:
    """out[g, o, n, p] = a[n, g*og + o, p] (a: (n, C, P), out: (groups, og, n, P))."""
    groups, og, n_img, _ = out.shape
    for task in prange(groups * og * n_img):
        n = task % n_img
        go = task // n_img
        dst, src = out[go // og, go % og, n], a[n, go]
        for p in range(src.shape[0]):
            dst[p] = src[p]


@njit(parallel=True, cache=True)
def _from_gemm_layout(out: np.ndarray, bias: np.ndarray, a: np.ndarray) -> None:
    """a[n, g*og + o, p] = out[g, o, n, p] + bias[g*og + o]."""
    groups, og, n_img, _ = out.shape
    for task in prange(groups * og * n_img):
        n = task % n_img
        go = task // n_img
        dst, src, b = a[n, go], out[go // og, go % og, n], bias[go]
        for p in range(src.shape[0]):
            dst[p] = src[p] + b


def _chunk(n_img: int, pixels: int) -> int:
    """Images per GEMM call: enough for ~_GEMM_COLUMNS columns, at least one."""
    return max(1, min(n_img, -(-_GEMM_COLUMNS // pixels)))


def forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    y: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> None:
    """y = conv(x, w) + bias by per-group GEMMs over chunks of images."""
    n_img = x.shape[0]
    c_out, cg, kh, kw = w.shape
    og, (out_h, out_w) = c_out // groups, y.shape[2:]
    pixels, k = out_h * out_w, cg * kh * kw
    wg = w.reshape(groups, og, k)
    y3 = y.reshape(n_img, c_out, pixels)
    step = _chunk(n_img, pixels)
    for n0 in range(0, n_img, step):
        m = min(step, n_img - n0)
        col = np.empty((groups, cg, kh, kw, m, out_h, out_w), dtype=x.dtype)
        _im2col(x[n0 : n0 + m], col, *stride, *padding, *dilation)
        out = np.matmul(wg, col.reshape(groups, k, m * pixels))
        _from_gemm_layout(out.reshape(groups, og, m, pixels), bias, y3[n0 : n0 + m])


def grad_input(
    gy: np.ndarray,
    w: np.ndarray,
    gx: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> None:
    """gx = col2im(w_g^T @ gy_g) per group over chunks of images."""
    n_img, c_out, out_h, out_w = gy.shape
    _, cg, kh, kw = w.shape
    og, pixels, k = c_out // groups, out_h * out_w, cg * kh * kw
    wt = w.reshape(groups, og, k).transpose(0, 2, 1)
    gy3 = gy.reshape(n_img, c_out, pixels)
    step = _chunk(n_img, pixels)
    for n0 in range(0, n_img, step):
        m = min(step, n_img - n0)
        gyg = np.empty((groups, og, m, pixels), dtype=gy.dtype)
        _to_gemm_layout(gy3[n0 : n0 + m], gyg)
        col = np.matmul(wt, gyg.reshape(groups, og, m * pixels))
        _col2im(
            col.reshape(groups, cg, kh, kw, m, out_h, out_w),
            gx[n0 : n0 + m],
            *stride,
            *padding,
            *dilation,
        )


def grad_weight(
    x: np.ndarray,
    gy: np.ndarray,
    gw: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> None:
    """gw_g = sum over image chunks (in order) of gy_g @ col_g^T."""
    n_img, c_out, out_h, out_w = gy.shape
    _, cg, kh, kw = gw.shape
    og, pixels, k = c_out // groups, out_h * out_w, cg * kh * kw
    gw3 = gw.reshape(groups, og, k)
    gw3[...] = 0
    gy3 = gy.reshape(n_img, c_out, pixels)
    step = _chunk(n_img, pixels)
    for n0 in range(0, n_img, step):
        m = min(step, n_img - n0)
        col = np.empty((groups, cg, kh, kw, m, out_h, out_w), dtype=x.dtype)
        _im2col(x[n0 : n0 + m], col, *stride, *padding, *dilation)
        gyg = np.empty((groups, og, m, pixels), dtype=gy.dtype)
        _to_gemm_layout(gy3[n0 : n0 + m], gyg)
        gw3 += np.matmul(
            gyg.reshape(groups, og, m * pixels),
            col.reshape(groups, k, m * pixels).transpose(0, 2, 1),
        )
