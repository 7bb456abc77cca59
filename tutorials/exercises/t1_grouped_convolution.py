"""Exercises of tutorial 1, grouped convolution. Replace each `raise NotImplementedError` with
your code, then check it: `pytest tests/exercises -k "t1 and yours"`.

Arrays are NumPy float64, shapes NCHW, weights (C_out, C_in / groups, kH, kW) as in the
tutorial. Reference solutions: `tutorials/exercises/solutions/t1_grouped_convolution.py`.
"""

from __future__ import annotations

import numpy as np

from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry


def dense_conv2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A dense convolution (one group), stride 1, no padding: use it as a building block."""
    return reference.conv2d_forward(x, w, None, Conv2dGeometry.of(x.shape, w.shape))


def grouped_conv2d(x: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    """Exercise 1.1: a grouped convolution (stride 1, no padding) made of `groups` dense ones.

    Cut the input channels and the weight's output channels into `groups` consecutive slices,
    convolve slice g of the input with slice g of the weight (`dense_conv2d`) and stack the
    results along the channels.
    """
    raise NotImplementedError("exercise 1.1: grouped_conv2d")


def block_diagonal(w: np.ndarray, groups: int) -> np.ndarray:
    """Exercise 1.2: the dense weight (C_out, C_in, kH, kW) that computes the same function as
    the grouped weight `w`: each group's slice on the diagonal, zeros elsewhere."""
    raise NotImplementedError("exercise 1.2: block_diagonal")


def conv_cost(c_in: int, c_out: int, k: int, groups: int, out_hw: tuple[int, int]
              ) -> tuple[int, int]:
    """Exercise 1.3: (parameters, multiply-adds per image) of a k x k convolution without bias
    with `groups` groups, producing an `out_hw` map."""
    raise NotImplementedError("exercise 1.3: conv_cost")


def separable_params(c: int, k: int) -> int:
    """Exercise 1.4a: parameters of a depthwise-separable convolution at width `c` (MobileNet,
    Xception): a depthwise k x k convolution (groups = c) followed by a dense 1x1, no bias."""
    raise NotImplementedError("exercise 1.4a: separable_params")


def groups_as_cheap_as_separable(c: int, k: int) -> int:
    """Exercise 1.4b: the fewest groups G (a divisor of `c`) for which one grouped k x k
    convolution at width `c` has no more parameters than the depthwise-separable pair."""
    raise NotImplementedError("exercise 1.4b: groups_as_cheap_as_separable")
