"""`conv2d`: grouped 2-D convolution with the semantics of `torch.nn.functional.conv2d`.

One `Function` whose forward and backward call the device's kernels through the backend
(`conv2d_forward`, `conv2d_grad_input`, `conv2d_grad_weight`); the bias gradient is a sum.
Every argument is checked here, before any kernel runs, with errors that name the argument
and the rule. `conv2d_algorithm` tells which kernel algorithm a call would use, and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Context, Function
from ..tensor import Tensor
from .shape import pad as pad_tensor

IntPair = int | tuple[int, int]
Padding = IntPair | str


class Conv2d(Function):
    """y = conv(x, w) + b; arguments already validated and normalised to pairs."""

    @staticmethod
    def forward(
        ctx: Context,
        x: Any,
        w: Any,
        b: Any,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
    ) -> Any:
        ctx.save_for_backward(x, w)
        ctx.geometry = (stride, padding, dilation, groups)
        return ctx.backend.conv2d_forward(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any, Any]:
        x, w = ctx.saved_tensors
        geometry = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = ctx.backend.conv2d_grad_input(g, w, x.shape[2:], *geometry) if need_x else None
        gw = ctx.backend.conv2d_grad_weight(x, g, w.shape[2:], *geometry) if need_w else None
        gb = g.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gw, gb


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair)
    ):
        raise TypeError(f"conv2d: {name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check(
    input: Any,
    weight: Any,
    bias: Any,
    stride: IntPair,
    padding: Padding,
    dilation: IntPair,
    groups: int,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], int]:
    """Validate a conv2d call; (stride, padding, dilation, extra right/bottom padding, groups).

    The extra padding is only non-zero for padding='same' with an even kernel extent, where
    PyTorch pads one more row/column at the bottom/right than at the top/left.
    """
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if not isinstance(t, Tensor) and not (name == "bias" and t is None):
            raise TypeError(f"conv2d: {name} must be a Tensor, got {type(t).__name__}")
    for name, t in (("input", input), ("weight", weight)):
        if t.ndim != 4:
            raise ValueError(
                f"conv2d: {name} must be 4-D "
                f"({'N, C, H, W' if name == 'input' else 'C_out, C_in / groups, kH, kW'}), "
                f"got shape {t.shape}"
            )
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
    if not isinstance(groups, int | np.integer) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    n, c_in, h, w = input.shape
    c_out, cg, kh, kw = weight.shape
    if c_in % groups:
        raise ValueError(f"conv2d: input channels ({c_in}) must be divisible by groups ({groups})")
    if c_out % groups:
        raise ValueError(
            f"conv2d: weight's output channels ({c_out}) must be divisible by groups ({groups})"
        )
    if cg * groups != c_in:
        raise ValueError(
            f"conv2d: weight shape {weight.shape} expects {cg * groups} input channels "
            f"(weight.shape[1] * groups = {cg} * {groups}), but input has {c_in}"
        )
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"conv2d: bias must have shape ({c_out},), got {bias.shape}")
    if min(kh, kw) < 1:
        raise ValueError(f"conv2d: weight's kernel size must be positive, got {(kh, kw)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(stride) < 1:
        raise ValueError(f"conv2d: stride must be positive, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"conv2d: dilation must be positive, got {dilation}")
    extra = (0, 0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"conv2d: padding='same' needs stride 1, got stride {stride}")
            total = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
            padding = (total[0] // 2, total[1] // 2)
            extra = (total[0] % 2, total[1] % 2)
        else:
            raise ValueError(f"conv2d: padding must be 'valid', 'same' or ints, got {padding!r}")
    padding = _pair(padding, "padding")
    if min(padding) < 0:
        raise ValueError(f"conv2d: padding must be non-negative, got {padding}")
    out_hw = [
        (size + 2 * p + e - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d, e in zip((h, w), (kh, kw), stride, padding, dilation, extra)
    ]
    if n == 0 or c_out == 0 or min(out_hw) < 1:
        raise ValueError(
            f"conv2d: the output would be empty: input {input.shape} with kernel {(kh, kw)}, "
            f"stride {stride}, padding {padding}, dilation {dilation} gives (N, C_out, H_out, "
            f"W_out) = {(n, c_out, *out_hw)}"
        )
    return stride, padding, dilation, extra, groups


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
    stride, pad, dilation, extra, groups = _check(
        input, weight, bias, stride, padding, dilation, groups
    )
    if extra != (0, 0):
        input = pad_tensor(input, (0, extra[1], 0, extra[0]))
    return Conv2d.apply(input, weight, bias, stride, pad, dilation, groups)


def conv2d_algorithm(
    input: Tensor,
    weight: Tensor,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[str, str]:
    """(algorithm, reason): which kernel algorithm `conv2d` with these arguments runs on
    input's device (e.g. 'direct' or 'gemm' on the CPU), and a one-sentence reason."""
    stride, pad, dilation, extra, groups = _check(
        input, weight, None, stride, padding, dilation, groups
    )
    n, c, h, w = input.shape
    x_shape = (n, c, h + extra[0], w + extra[1])
    return input.backend.conv2d_algorithm(x_shape, weight.shape, stride, pad, dilation, groups)
