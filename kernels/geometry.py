"""`Conv2dGeometry`: the sizes and arguments of one 2-D convolution, validated once.

Everything that handles a convolution (`F.conv2d`, `nn.Conv2d`, the reference, the CPU and
CUDA kernels, the algorithm choice, the benchmarks) takes this one frozen value instead of
loose stride, padding, dilation and groups arguments, so the rules, their error messages and
the output-size formula live here alone. Shapes follow PyTorch: input (N, C_in, H, W), weight
(C_out, C_in / groups, kH, kW), zero padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

Pair = tuple[int, int]
IntPair = int | Sequence[int]
Padding = IntPair | str


def pair(value: Any, name: str) -> Pair:
    """(h, w) from an int or a pair of ints; `name` (e.g. "conv2d: stride") goes in the error.

    Booleans are refused: `stride=True` is a slip, not a stride of 1.
    """
    pair_ = (value, value) if isinstance(value, int | np.integer) else value
    if (
        not isinstance(pair_, tuple | list)
        or len(pair_) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair_)
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair_[0]), int(pair_[1])


def output_length(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output length along one axis: (size + 2p - d(k - 1) - 1) // s + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class ConvArgs(NamedTuple):
    """A geometry's arguments as plain ints: the form Numba cores and CUDA launches take."""

    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int


@dataclass(frozen=True)
class Conv2dGeometry:
    """One convolution: batch, channels, image and kernel sizes, stride, padding, dilation,
    groups. Build it with `Conv2dGeometry.of`, which checks every rule; the fields are then
    plain ints and (h, w) pairs.

    `extra_padding` is non-zero only for padding='same' with an even kernel extent, where
    PyTorch pads one more row / column at the bottom / right than at the top / left: the caller
    pads the input by that much first, and `input_hw` counts those rows and columns.
    """

    batch: int
    in_channels: int
    input_hw: Pair
    out_channels: int
    kernel_hw: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    extra_padding: Pair = (0, 0)

    @classmethod
    def of(
        cls,
        input_shape: Sequence[int],
        weight_shape: Sequence[int],
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias_shape: Sequence[int] | None = None,
        op: str = "conv2d",
    ) -> Conv2dGeometry:
        """The geometry of `op(input, weight, bias, stride, padding, dilation, groups)` with
        PyTorch's argument forms (ints or (h, w) pairs; padding also 'valid' or 'same'), or a
        ValueError / TypeError naming the argument and the rule."""
        for name, shape, layout in (("input", input_shape, "N, C, H, W"),
                                    ("weight", weight_shape, "C_out, C_in / groups, kH, kW")):
            if len(shape) != 4:
                raise ValueError(f"{op}: {name} must be 4-D ({layout}), got shape {tuple(shape)}")
        if not isinstance(groups, int | np.integer) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
        groups = int(groups)
        n, c_in, h, w = (int(v) for v in input_shape)
        c_out, cg, kh, kw = (int(v) for v in weight_shape)
        if c_in % groups:
            raise ValueError(f"{op}: input channels ({c_in}) must be divisible by groups ({groups})")
        if c_out % groups:
            raise ValueError(
                f"{op}: weight's output channels ({c_out}) must be divisible by groups ({groups})"
            )
        if cg * groups != c_in:
            raise ValueError(
                f"{op}: weight shape {tuple(weight_shape)} expects {cg * groups} input channels "
                f"(weight.shape[1] * groups = {cg} * {groups}), but input has {c_in}"
            )
        if bias_shape is not None and tuple(bias_shape) != (c_out,):
            raise ValueError(f"{op}: bias must have shape ({c_out},), got {tuple(bias_shape)}")
        if min(kh, kw) < 1:
            raise ValueError(f"{op}: weight's kernel size must be positive, got {(kh, kw)}")
        stride, dilation = pair(stride, f"{op}: stride"), pair(dilation, f"{op}: dilation")
        if min(stride) < 1:
            raise ValueError(f"{op}: stride must be positive, got {stride}")
        if min(dilation) < 1:
            raise ValueError(f"{op}: dilation must be positive, got {dilation}")
        padding, extra = _resolve_padding(padding, (kh, kw), stride, dilation, op)
        geometry = cls(n, c_in, (h + extra[0], w + extra[1]), c_out, (kh, kw), stride, padding,
                       dilation, groups, extra)
        if n == 0 or c_out == 0 or min(geometry.output_hw) < 1:
            raise ValueError(
                f"{op}: the output would be empty: input {tuple(input_shape)} with kernel "
                f"{(kh, kw)}, stride {stride}, padding {padding}, dilation {dilation} gives (N, "
                f"C_out, H_out, W_out) = {geometry.output_shape}"
            )
        return geometry

    # ----- derived sizes ----------------------------------------------------------------
    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def output_hw(self) -> Pair:
        return tuple(  # type: ignore[return-value]
            output_length(*axis) for axis in zip(
                self.input_hw, self.kernel_hw, self.stride, self.padding, self.dilation)
        )

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, *self.input_hw)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_per_group, *self.kernel_hw)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, *self.output_hw)

    @property
    def taps(self) -> int:
        """Kernel taps per channel, kH * kW."""
        return self.kernel_hw[0] * self.kernel_hw[1]

    @property
    def macs(self) -> int:
        """Multiply-adds: every output element reduces over its group's channels and taps."""
        return math.prod(self.output_shape) * self.in_per_group * self.taps

    @property
    def args(self) -> ConvArgs:
        return ConvArgs(self.stride, self.padding, self.dilation, self.groups)

    # ----- kinds ------------------------------------------------------------------------
    @property
    def depthwise(self) -> bool:
        """One input channel per group (any number of output channels per group)."""
        return self.in_per_group == 1

    @property
    def pointwise(self) -> bool:
        """A 1x1 convolution without padding (any stride): a matrix product per image."""
        return self.kernel_hw == (1, 1) and self.padding == (0, 0)

    @property
    def unit_stride(self) -> bool:
        return self.stride == (1, 1)

    @property
    def min_channels(self) -> int:
        """min(input, output channels per group): how long the per-group reductions are."""
        return min(self.in_per_group, self.out_per_group)

    @property
    def max_channels(self) -> int:
        return max(self.in_per_group, self.out_per_group)

    @property
    def transposed_padding(self) -> Pair:
        """dilation * (k - 1) - padding per axis: the padding of `transposed()`."""
        return tuple(  # type: ignore[return-value]
            d * (k - 1) - p for p, d, k in zip(self.padding, self.dilation, self.kernel_hw))

    @property
    def has_transpose(self) -> bool:
        """Whether grad_input is a forward convolution (`transposed()`): stride 1 and padding
        at most the kernel's extent minus one."""
        return self.unit_stride and min(self.transposed_padding) >= 0

    def transposed(self) -> Conv2dGeometry:
        """The stride-1 forward convolution that computes grad_input: grad_out convolved with
        each group's weights transposed (input and output channels swapped) and flipped,
        padded by ``dilation * (k - 1) - padding``."""
        if not self.has_transpose:
            raise ValueError(
                f"grad_input is a forward convolution only at stride 1 with padding <= dilation * "
                f"(kernel size - 1); got stride {self.stride}, padding {self.padding}, dilation "
                f"{self.dilation}, kernel {self.kernel_hw}"
            )
        return Conv2dGeometry(self.batch, self.out_channels, self.output_hw, self.in_channels,
                              self.kernel_hw, (1, 1), self.transposed_padding, self.dilation,
                              self.groups)

    def transposed_weights(self, w: Any) -> Any:
        """The weights of `transposed()`: each group's input and output channels swapped and its
        taps flipped, (C_in, C_out / groups, kH, kW): mostly a copy, but a view (not contiguous)
        where the reshape allows one; any array with NumPy's reshape, transpose and slicing."""
        groups, og, cg = self.groups, self.out_per_group, self.in_per_group
        kh, kw = self.kernel_hw
        flipped = w.reshape(groups, og, cg, kh, kw)[:, :, :, ::-1, ::-1]
        return flipped.transpose(0, 2, 1, 3, 4).reshape(groups * cg, og, kh, kw)

    def with_batch(self, batch: int) -> Conv2dGeometry:
        """The same convolution on `batch` images."""
        return Conv2dGeometry(batch, self.in_channels, self.input_hw, self.out_channels,
                              self.kernel_hw, self.stride, self.padding, self.dilation,
                              self.groups, self.extra_padding)

    def __str__(self) -> str:
        parts = [f"{self.in_channels}->{self.out_channels}", f"groups {self.groups}",
                 "x".join(map(str, self.kernel_hw)), f"on {self.batch}x"
                 + "x".join(map(str, self.input_hw))]
        for name, value, default in (("stride", self.stride, (1, 1)),
                                     ("padding", self.padding, (0, 0)),
                                     ("dilation", self.dilation, (1, 1))):
            if value != default:
                parts.append(f"{name} {value[0]}" if value[0] == value[1] else f"{name} {value}")
        return ", ".join(parts)


def _resolve_padding(padding: Padding, kernel_hw: Pair, stride: Pair, dilation: Pair, op: str
                     ) -> tuple[Pair, Pair]:
    """(padding, extra bottom/right padding) from an int, a pair, 'valid' or 'same'."""
    if not isinstance(padding, str):
        padding = pair(padding, f"{op}: padding")
        if min(padding) < 0:
            raise ValueError(f"{op}: padding must be non-negative, got {padding}")
        return padding, (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"{op}: padding must be 'valid', 'same' or ints, got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
    total = [d * (k - 1) for d, k in zip(dilation, kernel_hw)]
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)
