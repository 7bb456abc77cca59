"""Pooling layers over `functional.pooling`."""

from __future__ import annotations

from .. import functional as F
from ..functional.pooling import pool_output_size
from ..kernels.geometry import IntPair, pair
from ..tensor import Tensor
from .module import Module


class _Pool2d(Module):
    op = ""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, f"{self.op}: kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, f"{self.op}: stride")
        self.padding = pair(padding, f"{self.op}: padding")

    def shape_and_macs(self, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
        if len(input_shape) != 4:
            raise ValueError(f"{self.op}: expected a 4-D input (N, C, H, W), got shape "
                             f"{tuple(input_shape)}")
        out_hw = pool_output_size(self.op, input_shape[2:], self.kernel_size, self.stride,
                                  self.padding)
        return (*input_shape[:2], *out_hw), 0

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over kernel windows, like torch.nn.MaxPool2d (stride defaults to kernel_size)."""

    op = "MaxPool2d"

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over kernel windows, like torch.nn.AvgPool2d."""

    op = "AvgPool2d"

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0, *, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                            count_include_pad=self.count_include_pad)


class AdaptiveAvgPool2d(Module):
    """Average over PyTorch's adaptive bins to a fixed output size, e.g. (1, 1)."""

    def __init__(self, output_size: IntPair) -> None:
        super().__init__()
        self.output_size = pair(output_size, "AdaptiveAvgPool2d: output_size")

    def shape_and_macs(self, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
        if len(input_shape) != 4:
            raise ValueError(f"AdaptiveAvgPool2d: expected a 4-D input (N, C, H, W), got shape "
                             f"{tuple(input_shape)}")
        return (*input_shape[:2], *self.output_size), 0

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
