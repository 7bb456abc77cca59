"""Max and average pooling over NCHW, forward and backward, one parallel task per plane.

A task takes one (image, channel) plane and visits each output pixel's window once, taps in
row-major order, skipping those on the padding; max pooling's forward takes each tap for a
whole output row at once, so that the loop over the row vectorises. Max pooling records which
tap won (the first maximal one, as the composition in `functional/pooling.py` does: padding
counts as -inf, and a NaN becomes the output without taking the tap); its backward adds each
output's gradient to that tap's input pixel. Where no gradient is wanted (inference) the forward
records no taps, and a window's maximum is taken in two steps: of its kH rows, column by column
over whole input rows, then of kW of those columns at every stride-th one (kH + kW passes
instead of kH * kW). Average pooling divides by the window's size, or with
`count_include_pad=False` by the number of its taps inside the image. Overlapping windows
add up within a task, so no two tasks write the same pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba import fill, u, valid_cols

Planes = np.ndarray  # (N*C, H, W): each (image, channel) plane
Taps = np.ndarray  # (N*C, H_out, W_out) int32: the winning tap of each window, i * kW + j


@njit(cache=True, inline="always")
def _max_taps(xf: np.ndarray, src: int, step: int, yf: np.ndarray, af: np.ndarray, row: int,
              lo: int, hi: int, tap: np.int32) -> None:
    """Outputs row + lo .. row + hi take tap `tap`, read at xf[src + q*step], where it is
    larger (a NaN becomes the output; the winning tap stays). Called with a literal step of 1
    or 2 where it is one, so that the loop vectorises."""
    for q in range(lo, hi):
        v, best = xf[u(src + q * step)], yf[u(row + q)]
        wins = v > best
        af[u(row + q)] = tap if wins else af[u(row + q)]
        yf[u(row + q)] = v if wins or v != v else best


@njit(cache=True, parallel=True)
def _max_forward(x: Planes, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                 y: Planes, arg: Taps) -> None:
    planes, h, w = x.shape
    _, out_h, out_w = y.shape
    xf, yf, af = x.reshape(-1), y.reshape(-1), arg.reshape(-1)
    for p in prange(planes):
        for r in range(out_h):
            row = (p * out_h + r) * out_w
            fill(yf, row, out_w, -np.inf)
            fill(af, row, out_w, 0)
            # tap by tap over the whole output row, so that the loop over it vectorises; each
            # output still sees its taps in row-major order
            for i in range(kh):
                ih = r * sh - ph + i
                if ih < 0 or ih >= h:
                    continue
                for j in range(kw):
                    lo, hi = valid_cols(j - pw, sw, w, out_w)
                    src, tap = (p * h + ih) * w + j - pw, np.int32(i * kw + j)
                    if sw == 1:
                        _max_taps(xf, src, 1, yf, af, row, lo, hi, tap)
                    elif sw == 2:
                        _max_taps(xf, src, 2, yf, af, row, lo, hi, tap)
                    else:
                        _max_taps(xf, src, sw, yf, af, row, lo, hi, tap)


@njit(cache=True, inline="always")
def _max_step(src: np.ndarray, s: int, step: int, dst: np.ndarray, d: int, n: int) -> None:
    """dst[d + q] = max(dst[d + q], src[s + q*step]) for q < n, a NaN taken as the maximum.
    Called with a literal step of 1 or 2 where it is one, so that the loop vectorises."""
    for q in range(n):
        v, best = src[u(s + q * step)], dst[u(d + q)]
        dst[u(d + q)] = v if v > best or v != v else best


@njit(cache=True, parallel=True)
def _max_values(x: Planes, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                y: Planes) -> None:
    """y alone, without the winning taps: each output row the maximum over its window's rows,
    column by column (`col`), then over kW columns at every sw-th."""
    planes, h, w = x.shape
    _, out_h, out_w = y.shape
    xf, yf = x.reshape(-1), y.reshape(-1)
    for p in prange(planes):
        col = np.empty(w, x.dtype)
        for r in range(out_h):
            fill(col, 0, w, -np.inf)
            for i in range(kh):
                ih = r * sh - ph + i
                if 0 <= ih < h:
                    _max_step(xf, (p * h + ih) * w, 1, col, 0, w)
            row = (p * out_h + r) * out_w
            fill(yf, row, out_w, -np.inf)
            for j in range(kw):
                lo, hi = valid_cols(j - pw, sw, w, out_w)
                if sw == 1:
                    _max_step(col, lo + j - pw, 1, yf, row + lo, hi - lo)
                elif sw == 2:
                    _max_step(col, lo * 2 + j - pw, 2, yf, row + lo, hi - lo)
                else:
                    _max_step(col, lo * sw + j - pw, sw, yf, row + lo, hi - lo)


@njit(cache=True, parallel=True)
def _max_backward(g: Planes, arg: Taps, kw: int, sh: int, sw: int, ph: int, pw: int,
                  dx: Planes) -> None:
    planes, h, w = dx.shape
    _, out_h, out_w = g.shape
    for p in prange(planes):
        dx[p] = 0
        for r in range(out_h):
            for q in range(out_w):
                ih = r * sh - ph + arg[p, r, q] // kw
                iw = q * sw - pw + arg[p, r, q] % kw
                if 0 <= ih < h and 0 <= iw < w:
                    dx[p, ih, iw] += g[p, r, q]


@njit(cache=True, inline="always")
def _window(start: int, k: int, n: int) -> tuple[int, int]:
    """[lo, hi): the taps of a window starting at `start` that fall inside [0, n)."""
    return max(0, -start), min(k, n - start)


@njit(cache=True, parallel=True)
def _avg(x: Planes, g: Planes, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
         include_pad: bool, forward: bool, out: Planes) -> None:
    """forward: out (outputs) = window means of x; else out (input grads) += g spread over
    each window (x is unused)."""
    planes = out.shape[0]
    h, w = (x.shape[1], x.shape[2]) if forward else (out.shape[1], out.shape[2])
    out_h, out_w = (out.shape[1], out.shape[2]) if forward else (g.shape[1], g.shape[2])
    for p in prange(planes):
        if not forward:
            out[p] = 0
        for r in range(out_h):
            i0, i1 = _window(r * sh - ph, kh, h)
            for q in range(out_w):
                j0, j1 = _window(q * sw - pw, kw, w)
                count = kh * kw if include_pad else (i1 - i0) * (j1 - j0)
                if forward:
                    total = 0.0
                    for i in range(i0, i1):
                        for j in range(j0, j1):
                            total += x[p, r * sh - ph + i, q * sw - pw + j]
                    out[p, r, q] = total / count
                else:
                    share = g[p, r, q] / count
                    for i in range(i0, i1):
                        for j in range(j0, j1):
                            out[p, r * sh - ph + i, q * sw - pw + j] += share


def _planes(a: np.ndarray) -> Planes:
    return np.ascontiguousarray(a).reshape(-1, a.shape[2], a.shape[3])


Pair = tuple[int, int]


def max_pool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair,
                       out_hw: Pair, taps: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(y, winning taps) of max pooling; both (N, C, H_out, W_out).

    Args:
        x: (N, C, H, W) float32 or float64.
        kernel: (h, w) window size.
        stride: (h, w) step between windows.
        padding: (h, w) implicit -inf border, at most kernel // 2 (checked by the caller).
        out_hw: (H_out, W_out) = (H + 2p - k) // s + 1.
        taps: record the winning taps for the backward (False: None instead, and faster).
    """
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), x.dtype)
    if not taps:
        _max_values(_planes(x), *kernel, *stride, *padding, _planes(y))
        return y, None
    arg = np.empty((n, c, *out_hw), np.int32)
    _max_forward(_planes(x), *kernel, *stride, *padding, _planes(y), _planes(arg))
    return y, arg


def max_pool2d_backward(g: np.ndarray, arg: np.ndarray, input_hw: Pair, kernel: Pair,
                        stride: Pair, padding: Pair) -> np.ndarray:
    """d loss / d x (N, C, H, W) of max pooling, each window's gradient to its winning tap.

    Args:
        g: (N, C, H_out, W_out) gradient of the output.
        arg: the winning taps from `max_pool2d_forward`.
        input_hw: (H, W) of its input.
        kernel: its window size.
        stride: its stride.
        padding: its padding.
    """
    dx = np.empty((*g.shape[:2], *input_hw), g.dtype)
    _max_backward(_planes(g), _planes(arg), kernel[1], *stride, *padding, _planes(dx))
    return dx


def avg_pool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair,
                       count_include_pad: bool) -> np.ndarray:
    """Average pooling (N, C, H_out, W_out); padding counts in the divisor unless excluded.

    Args:
        x: (N, C, H, W) float32 or float64.
        kernel: (h, w) window size.
        stride: (h, w) step between windows.
        padding: (h, w) implicit zero border, at most kernel // 2.
        out_hw: (H_out, W_out) = (H + 2p - k) // s + 1.
        count_include_pad: divide by the window's size (True) or its taps inside x (False).
    """
    y = np.empty((*x.shape[:2], *out_hw), x.dtype)
    planes = _planes(x)
    _avg(planes, planes, *kernel, *stride, *padding, count_include_pad, True, _planes(y))
    return y


def avg_pool2d_backward(g: np.ndarray, input_hw: Pair, kernel: Pair, stride: Pair,
                        padding: Pair, count_include_pad: bool) -> np.ndarray:
    """d loss / d x (N, C, H, W) of average pooling: each output's gradient spread evenly.

    Args:
        g: (N, C, H_out, W_out) gradient of the output.
        input_hw: (H, W) of the forward's input.
        kernel: its window size.
        stride: its stride.
        padding: its padding.
        count_include_pad: its divisor rule.
    """
    dx = np.empty((*g.shape[:2], *input_hw), g.dtype)
    planes = _planes(g)
    _avg(planes, planes, *kernel, *stride, *padding, count_include_pad, False, _planes(dx))
    return dx
