"""`Conv2d`: a (grouped) 2-D convolution layer over `F.conv2d`."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..kernels.geometry import IntPair, pair
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


class Conv2d(Module):
    """y = conv(x, weight) + bias with weight (out, in / groups, kH, kW), like torch.nn.Conv2d.

    Initialised like PyTorch: weight and bias uniform with bound 1 / sqrt(fan_in).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "Conv2d: kernel_size")
        self.stride = pair(stride, "Conv2d: stride")
        self.padding = pair(padding, "Conv2d: padding")
        self.dilation = pair(dilation, "Conv2d: dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size, stride and dilation must be positive and "
                             f"padding non-negative, got kernel_size={self.kernel_size}, "
                             f"stride={self.stride}, padding={self.padding}, "
                             f"dilation={self.dilation}")
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=np.float32))
        self.bias = Parameter(np.empty(out_channels, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")
