"""In-place initialisers with PyTorch's names and formulas (`torch.nn.init`).

Values are drawn from `minitorch_resnext.tensor.default_generator()` (so `mr.manual_seed`
makes models reproducible), in the tensor's own float precision, on the CPU, and copied to
the tensor's device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..tensor import Tensor, default_generator


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended std gain for a nonlinearity, as `torch.nn.init.calculate_gain`."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """fan_in = in_features * receptive field, fan_out = out_features * receptive field."""
    if tensor.ndim < 2:
        raise ValueError("fan in and fan out need a tensor with at least 2 dimensions")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fill(tensor: Tensor, values: Any) -> Tensor:
    tensor.data[...] = tensor.backend.asarray(values, dtype=tensor.dtype)
    tensor._bump_version()
    return tensor


def _float_dtype(tensor: Tensor) -> np.dtype:
    # draw float32 values directly for float32 tensors (twice as fast as drawing float64)
    return np.dtype(np.float32) if tensor.dtype == np.float32 else np.dtype(np.float64)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b)."""
    u = default_generator().random(tensor.shape, dtype=_float_dtype(tensor))
    u *= b - a
    u += a
    return _fill(tensor, u)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std^2)."""
    z = default_generator().standard_normal(tensor.shape, dtype=_float_dtype(tensor))
    z *= std
    z += mean
    return _fill(tensor, z)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill `tensor` with `val` in place; returns it."""
    return _fill(tensor, val)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill `tensor` with zeros in place; returns it."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill `tensor` with ones in place; returns it."""
    return constant_(tensor, 1.0)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """He init, uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan)."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    """He init, normal: N(0, std^2) with std = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))
