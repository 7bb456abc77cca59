"""Naive NumPy grouped convolution: slow, obviously correct, the oracle for every kernel test.

Each function loops over groups and kernel taps. For one tap (i, j) the input pixels it reads
form a strided window of the zero-padded input, ``xp[:, :, i*dH :: sH, j*dW :: sW]`` cut to
the output size, so a convolution is a sum over taps of a per-group channel contraction of
that window, and the two gradients are the same sum read backwards (scatter-add into the
window for ``grad_input``, contract the window with ``grad_out`` for ``grad_weight``).

Shapes follow PyTorch (NCHW, weight ``(C_out, C_in // groups, kH, kW)``, zero padding); the
sizes and arguments come from the convolution's `Conv2dGeometry`.
"""

from __future__ import annotations

import numpy as np

from .geometry import Conv2dGeometry


def _window(
    kernel_tap: tuple[int, int],
    out_hw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[slice, slice]:
    """Slices of the padded input read by one kernel tap, one element per output pixel."""
    return tuple(  # type: ignore[return-value]
        slice(t * d, t * d + s * (o - 1) + 1, s)
        for t, o, s, d in zip(kernel_tap, out_hw, stride, dilation, strict=True)
    )


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, geometry: Conv2dGeometry,
    residual: np.ndarray | None = None, relu: bool = False,
) -> np.ndarray:
    """y[n, o] = bias[o] + sum over the group's input channels and taps of w * shifted x;
    then y + residual and max(y, 0) where asked (an inference plan's fused epilogue)."""
    groups, cg, og = geometry.groups, geometry.in_per_group, geometry.out_per_group
    (kh, kw), out_hw = geometry.kernel_hw, geometry.output_hw
    stride, (ph, pw), dilation = geometry.stride, geometry.padding, geometry.dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros(geometry.output_shape, dtype=x.dtype)
    for g in range(groups):
        xg = xp[:, g * cg : (g + 1) * cg]
        wg = w[g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                win = xg[(slice(None), slice(None), *_window((i, j), out_hw, stride, dilation))]
                y[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", win, wg[:, :, i, j])
    if bias is not None:
        y += bias[None, :, None, None]
    if residual is not None:
        y += residual
    return np.maximum(y, 0) if relu else y


def conv2d_grad_input(
    grad_out: np.ndarray, w: np.ndarray, geometry: Conv2dGeometry
) -> np.ndarray:
    """Adjoint of the forward in x: scatter-add w^T grad_out into each tap's window."""
    groups, cg, og = geometry.groups, geometry.in_per_group, geometry.out_per_group
    (kh, kw), (oh, ow), (h, wd) = geometry.kernel_hw, geometry.output_hw, geometry.input_hw
    stride, (ph, pw), dilation = geometry.stride, geometry.padding, geometry.dilation
    n = geometry.batch
    gxp = np.zeros((n, geometry.in_channels, h + 2 * ph, wd + 2 * pw), dtype=grad_out.dtype)
    for g in range(groups):
        gg = grad_out[:, g * og : (g + 1) * og]
        wg = w[g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                win = _window((i, j), (oh, ow), stride, dilation)
                gxp[(slice(None), slice(g * cg, (g + 1) * cg), *win)] += np.einsum(
                    "nohw,oc->nchw", gg, wg[:, :, i, j]
                )
    return gxp[:, :, ph : ph + h, pw : pw + wd]


def conv2d_grad_weight(
    x: np.ndarray, grad_out: np.ndarray, geometry: Conv2dGeometry
) -> np.ndarray:
    """Adjoint of the forward in w: contract each tap's window of x with grad_out."""
    groups, cg, og = geometry.groups, geometry.in_per_group, geometry.out_per_group
    (kh, kw), (oh, ow) = geometry.kernel_hw, geometry.output_hw
    stride, (ph, pw), dilation = geometry.stride, geometry.padding, geometry.dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gw = np.zeros(geometry.weight_shape, dtype=x.dtype)
    for g in range(groups):
        xg = xp[:, g * cg : (g + 1) * cg]
        gg = grad_out[:, g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                win = xg[(slice(None), slice(None), *_window((i, j), (oh, ow), stride, dilation))]
                gw[g * og : (g + 1) * og, :, i, j] = np.einsum("nohw,nchw->oc", gg, win)
    return gw
