"""Reference solutions of the exercises of tutorial 1 (checked by tests/exercises)."""

from __future__ import annotations

import numpy as np

from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry


def dense_conv2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A dense convolution, stride 1, no padding."""
    return reference.conv2d_forward(x, w, None, Conv2dGeometry.of(x.shape, w.shape))


def grouped_conv2d(x: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    """Exercise 1.1."""
    cg, og = x.shape[1] // groups, w.shape[0] // groups
    return np.concatenate([dense_conv2d(x[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og])
                           for g in range(groups)], axis=1)


def block_diagonal(w: np.ndarray, groups: int) -> np.ndarray:
    """Exercise 1.2."""
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    dense = np.zeros((c_out, cg * groups, kh, kw), dtype=w.dtype)
    for g in range(groups):
        dense[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og]
    return dense


def conv_cost(c_in: int, c_out: int, k: int, groups: int, out_hw: tuple[int, int]
              ) -> tuple[int, int]:
    """Exercise 1.3."""
    params = c_out * (c_in // groups) * k * k
    return params, params * out_hw[0] * out_hw[1]


def separable_params(c: int, k: int) -> int:
    """Exercise 1.4a."""
    return c * k * k + c * c


def groups_as_cheap_as_separable(c: int, k: int) -> int:
    """Exercise 1.4b."""
    return next(g for g in range(1, c + 1)
                if c % g == 0 and c * (c // g) * k * k <= separable_params(c, k))
