"""Exercises of tutorial 4, writing the kernel. Replace each `raise NotImplementedError` with
your code, then check it: `pytest tests/exercises -k "t4 and yours"`.

NumPy only (loops are fine: the checks use small shapes). Stride is 1 throughout; padding and
dilation are pairs (rows, columns); shapes NCHW, weights (C_out, C_in / groups, kH, kW).
Reference solutions: `tutorials/exercises/solutions/t4_writing_the_kernel.py`.
"""

from __future__ import annotations

import numpy as np


def grad_input(grad_out: np.ndarray, w: np.ndarray, input_hw: tuple[int, int],
               padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> np.ndarray:
    """Exercise 4.1: dL/dx of a grouped convolution with dilation.

    Output pixel (i, j) reads input pixel (i - p_h + a * d_h, j - p_w + b * d_w) through tap
    (a, b). Send each output gradient back along the same taps: every input pixel gathers
    w[o, c, a, b] * grad_out[n, o, i, j] over the output channels o of its group and the
    taps that read it (pixels in the padding receive nothing).
    """
    raise NotImplementedError("exercise 4.1: grad_input")


def im2col(x: np.ndarray, kernel_hw: tuple[int, int], padding: tuple[int, int],
           dilation: tuple[int, int]) -> np.ndarray:
    """Exercise 4.2: the im2col matrix (N, C * kH * kW, H_out * W_out) of a dense convolution:
    column (i * W_out + j) of image n holds the C * kH * kW input values that output pixel
    (i, j) reads, ordered like `w.reshape(C_out, -1)`, so that `w.reshape(C_out, -1) @ cols`
    is the convolution."""
    raise NotImplementedError("exercise 4.2: im2col")


def im2col_bytes(x_shape: tuple[int, int, int, int], kernel_hw: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], itemsize: int = 4) -> int:
    """Exercise 4.3: the memory the im2col matrix takes, in bytes, without building it. How
    many times the input is that for a 3x3 convolution with padding 1?"""
    raise NotImplementedError("exercise 4.3: im2col_bytes")


def grad_weight(x: np.ndarray, grad_out: np.ndarray, kernel_hw: tuple[int, int],
                padding: tuple[int, int], groups: int) -> np.ndarray:
    """Exercise 4.4: dL/dw of a grouped convolution (dilation 1): for each tap (a, b), the
    window of the zero-padded input that the tap reads, contracted with grad_out over images
    and pixels, group by group (one `np.einsum` per group and tap)."""
    raise NotImplementedError("exercise 4.4: grad_weight")
