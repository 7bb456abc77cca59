"""Reference solutions of the exercises of tutorial 4 (checked by tests/exercises)."""

from __future__ import annotations

import numpy as np


def _out_hw(input_hw: tuple[int, int], kernel_hw: tuple[int, int], padding: tuple[int, int],
            dilation: tuple[int, int]) -> tuple[int, int]:
    return tuple(n + 2 * p - d * (k - 1) for n, k, p, d in zip(input_hw, kernel_hw, padding,
                                                               dilation))


def grad_input(grad_out: np.ndarray, w: np.ndarray, input_hw: tuple[int, int],
               padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> np.ndarray:
    """Exercise 4.1."""
    n, c_out, oh, ow = grad_out.shape
    _, cg, kh, kw = w.shape
    og = c_out // groups
    (h, wd), (ph, pw), (dh, dw) = input_hw, padding, dilation
    padded = np.zeros((n, cg * groups, h + 2 * ph, wd + 2 * pw))
    for g in range(groups):
        for a in range(kh):
            for b in range(kw):
                contribution = np.einsum("nohw,oc->nchw", grad_out[:, g * og:(g + 1) * og],
                                         w[g * og:(g + 1) * og, :, a, b])
                padded[:, g * cg:(g + 1) * cg, a * dh:a * dh + oh, b * dw:b * dw + ow] += contribution
    return padded[:, :, ph:ph + h, pw:pw + wd]


def im2col(x: np.ndarray, kernel_hw: tuple[int, int], padding: tuple[int, int],
           dilation: tuple[int, int]) -> np.ndarray:
    """Exercise 4.2."""
    n, c, h, wd = x.shape
    (kh, kw), (ph, pw), (dh, dw) = kernel_hw, padding, dilation
    oh, ow = _out_hw((h, wd), kernel_hw, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, a, b] = xp[:, :, a * dh:a * dh + oh, b * dw:b * dw + ow]
    return cols.reshape(n, c * kh * kw, oh * ow)


def im2col_bytes(x_shape: tuple[int, int, int, int], kernel_hw: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], itemsize: int = 4) -> int:
    """Exercise 4.3."""
    n, c, h, wd = x_shape
    oh, ow = _out_hw((h, wd), kernel_hw, padding, dilation)
    return n * c * kernel_hw[0] * kernel_hw[1] * oh * ow * itemsize


def grad_weight(x: np.ndarray, grad_out: np.ndarray, kernel_hw: tuple[int, int],
                padding: tuple[int, int], groups: int) -> np.ndarray:
    """Exercise 4.4."""
    cg, og = x.shape[1] // groups, grad_out.shape[1] // groups
    (ph, pw), (oh, ow) = padding, grad_out.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, kernel_hw, axis=(2, 3))[:, :, :oh, :ow]
    return np.concatenate([
        np.einsum("nohw,nchwab->ocab", grad_out[:, g * og:(g + 1) * og], windows[:, g * cg:(g + 1) * cg])
        for g in range(groups)
    ])
