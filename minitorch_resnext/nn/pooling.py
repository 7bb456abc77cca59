"""Pooling layers over `functional.pooling`."""

from __future__ import annotations

from .. import functional as F
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

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
