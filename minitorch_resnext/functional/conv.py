"""`conv2d`: grouped 2-D convolution with the semantics of `torch.nn.functional.conv2d`.

One `Function` whose forward and backward call the device's kernels through the backend
(`conv2d_forward`, `conv2d_grad_input`, `conv2d_grad_weight`); the bias gradient is a sum.
Every argument is checked before any kernel runs (`Conv2dGeometry.of`), with errors that
name the argument and the rule. `conv2d_algorithm` tells which kernel algorithm each pass of
a call would use, and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Context, Function
from ..kernels.geometry import Conv2dGeometry, IntPair, Padding
from ..kernels.selection import ConvChoices
from ..tensor import Tensor
from .registry import op
from .shape import pad as pad_tensor


class Conv2d(Function):
    """y = conv(x, w) + b for one validated `Conv2dGeometry`."""

    @staticmethod
    def forward(ctx: Context, x: Any, w: Any, b: Any, geometry: Conv2dGeometry) -> Any:
        ctx.save_for_backward(x, w)
        ctx.geometry = geometry
        return ctx.backend.conv2d_forward(x, w, b, geometry)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any, Any]:
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = ctx.backend.conv2d_grad_input(g, w, ctx.geometry) if need_x else None
        gw = ctx.backend.conv2d_grad_weight(x, g, ctx.geometry) if need_w else None
        gb = g.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gw, gb


def _geometry(input: Any, weight: Any, bias: Any, stride: IntPair, padding: Padding,
              dilation: IntPair, groups: int) -> Conv2dGeometry:
    """Check the tensors' types and dtypes, then the shapes and arguments (`Conv2dGeometry.of`)."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if not isinstance(t, Tensor) and not (name == "bias" and t is None):
            raise TypeError(f"conv2d: {name} must be a Tensor, got {type(t).__name__}")
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None and t.dtype.kind != "f":
            raise TypeError(f"conv2d: {name} must be floating point, got dtype {t.dtype}")
    if input.dtype not in (np.float32, np.float64):
        raise TypeError(f"conv2d: input must be float32 or float64, got dtype {input.dtype}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(
                f"conv2d: {name} dtype {t.dtype} must match the input dtype {input.dtype}"
            )
    return Conv2dGeometry.of(input.shape, weight.shape, stride, padding, dilation, groups,
                             None if bias is None else bias.shape)


@op
def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D (grouped) convolution over NCHW, like `torch.nn.functional.conv2d`.

    weight is (C_out, C_in / groups, kH, kW); stride, padding and dilation are ints or
    (h, w) pairs; padding may also be 'valid' (none) or 'same' (output size = input size,
    stride 1 only). groups=C_in is a depthwise convolution.
    """
    geometry = _geometry(input, weight, bias, stride, padding, dilation, groups)
    if geometry.extra_padding != (0, 0):
        (eh, ew) = geometry.extra_padding
        input = pad_tensor(input, (0, ew, 0, eh))
    return Conv2d.apply(input, weight, bias, geometry)


@op(differentiable=False)
def conv2d_algorithm(
    input: Tensor,
    weight: Tensor,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> ConvChoices:
    """What each pass (forward, grad_input, grad_weight) of `conv2d` with these arguments runs
    on input's device for input's dtype: the algorithm (e.g. 'direct' or 'gemm' on the CPU),
    its parameters, a one-sentence reason, and whether a rule chose it or a measurement on
    this machine did (then with the candidates' times; on the CPU this measures now if this
    convolution was never tuned here)."""
    geometry = _geometry(input, weight, None, stride, padding, dilation, groups)
    return input.backend.conv2d_algorithm(geometry, input.dtype)
