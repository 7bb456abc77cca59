"""Kernels of the "meta" device: convolution shapes without arithmetic.

The meta device keeps shapes and dtypes only (`backend.MetaBackend`); its convolution
"kernels" return arrays of the output's shape that hold no data, so a model's forward on it
costs next to nothing whatever the model's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import Conv2dGeometry
from .selection import PASSES, Choice, ConvChoices


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A meta array: `shape` and `dtype`, no data (one zero, broadcast)."""
    return np.broadcast_to(np.zeros((), dtype), tuple(shape))


def conv2d_algorithm(geometry: Conv2dGeometry, dtype: Any = None) -> ConvChoices:
    """No algorithm runs: every pass only has its output shape computed."""
    return ConvChoices(*(Choice("meta", {}, "shapes only, no arithmetic") for _ in PASSES))


def conv2d_forward(x: Any, w: Any, bias: Any, geometry: Conv2dGeometry,
                   algorithm: Any = None) -> np.ndarray:
    """An array of the output's shape, without data."""
    return empty(geometry.output_shape, x.dtype)


def conv2d_grad_input(grad_out: Any, w: Any, geometry: Conv2dGeometry,
                      algorithm: Any = None) -> np.ndarray:
    """An array of the input's shape, without data."""
    return empty(geometry.input_shape, grad_out.dtype)


def conv2d_grad_weight(x: Any, grad_out: Any, geometry: Conv2dGeometry,
                       algorithm: Any = None) -> np.ndarray:
    """An array of the weight's shape, without data."""
    return empty(geometry.weight_shape, x.dtype)
