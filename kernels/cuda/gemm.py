"""The GEMM path on the GPU: cuBLAS (through ``xp.matmul``) does the arithmetic.

With many channels per group a convolution is compute-bound. A 1x1 stride-1 unpadded
convolution with enough pixels per image is a matmul per image on the input itself;
otherwise ``im2col`` (conv_im2col.cu) gathers the input into columns for one large matmul per
group over many images, and ``col2im`` (a gather) folds grad_input's columns back, in chunks
of images whose columns fit WORKSPACE_BYTES.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..geometry import Conv2dGeometry
from ..selection import ConvAlgorithm, Pass
from .runtime import ELEMENTWISE_THREADS, Kernel, Runtime, ctype, elementwise_grid, i32

WORKSPACE_BYTES = 256 << 20  # columns per chunk of images
MIN_PIXELS_PER_IMAGE = 1024  # output pixels per image from which a pointwise GEMM runs per image
SOURCE = "conv_im2col.cu"


def image_major(g: Conv2dGeometry) -> bool:
    """GEMM per image on the input itself: 1x1, stride 1, unpadded, with enough pixels per
    image that each product is large; otherwise one product per group over im2col columns."""
    oh, ow = g.output_hw
    return g.pointwise and g.unit_stride and oh * ow >= MIN_PIXELS_PER_IMAGE


def kernels(pass_: Pass, g: Conv2dGeometry, ctype_: str) -> list[Kernel]:
    """Every kernel a pass launches (cuBLAS's aside)."""
    if image_major(g):
        return []
    return [Kernel.template(SOURCE, "col2im" if pass_ == "grad_input" else "im2col", ctype_)]


def _chunks(g: Conv2dGeometry, itemsize: int) -> Iterator[tuple[int, int]]:
    """Image ranges whose im2col columns fit WORKSPACE_BYTES (at least one image each)."""
    oh, ow = g.output_hw
    step = max(1, WORKSPACE_BYTES // (g.in_channels * g.taps * oh * ow * itemsize))
    for n0 in range(0, g.batch, step):
        yield n0, min(g.batch, n0 + step)


def _layout(rt: Runtime, name: str, src: Any, dst: Any, g: Conv2dGeometry, m: int) -> None:
    """im2col (x -> columns) or col2im (columns -> grad_x) over a chunk of m images."""
    rt.launch(
        Kernel.template(SOURCE, name, ctype(dst.dtype)),
        elementwise_grid(dst.size),
        ELEMENTWISE_THREADS,
        0,
        [src, dst, np.int64(dst.size),
         *i32(g.in_channels, m, *g.input_hw, *g.kernel_hw, *g.output_hw, *g.stride, *g.padding,
              *g.dilation)],
    )


def _by_group(a: Any, m: int, groups: int) -> Any:
    """(m, groups * c, oh, ow) -> (groups, c, m * oh * ow), a copy."""
    return (
        a.reshape(m, groups, -1, a.shape[2] * a.shape[3])
        .transpose(1, 2, 0, 3)
        .reshape(groups, -1, m * a.shape[2] * a.shape[3])
    )


def forward(x: Any, w: Any, bias: Any | None, y: Any, g: Conv2dGeometry, *, runtime: Runtime
            ) -> None:
    xp, (oh, ow), groups = runtime.xp, g.output_hw, g.groups
    cg, og = g.in_per_group, g.out_per_group
    wg = w.reshape(groups, og, cg * g.taps)
    if image_major(g):
        xp.matmul(wg, x.reshape(g.batch, groups, cg, oh * ow),
                  out=y.reshape(g.batch, groups, og, oh * ow))
    else:
        for n0, n1 in _chunks(g, x.itemsize):
            m = n1 - n0
            cols = xp.empty((groups, cg * g.taps, m * oh * ow), dtype=x.dtype)
            _layout(runtime, "im2col", x[n0:n1], cols, g, m)
            y[n0:n1] = (
                xp.matmul(wg, cols)
                .reshape(groups, og, m, oh, ow)
                .transpose(2, 0, 1, 3, 4)
                .reshape(m, g.out_channels, oh, ow)
            )
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)


def grad_input(grad_out: Any, w: Any, grad_x: Any, g: Conv2dGeometry, *, runtime: Runtime
               ) -> None:
    xp, (h, wd), groups = runtime.xp, g.input_hw, g.groups
    cg, og = g.in_per_group, g.out_per_group
    wt = w.reshape(groups, og, cg * g.taps).transpose(0, 2, 1)
    if image_major(g):
        xp.matmul(wt, grad_out.reshape(g.batch, groups, og, h * wd),
                  out=grad_x.reshape(g.batch, groups, cg, h * wd))
        return
    for n0, n1 in _chunks(g, grad_out.itemsize):
        cols = xp.matmul(wt, _by_group(grad_out[n0:n1], n1 - n0, groups))
        _layout(runtime, "col2im", cols, grad_x[n0:n1], g, n1 - n0)


def grad_weight(x: Any, grad_out: Any, grad_w: Any, g: Conv2dGeometry, *, runtime: Runtime
                ) -> None:
    xp, (oh, ow), groups = runtime.xp, g.output_hw, g.groups
    og, k = g.out_per_group, g.in_per_group * g.taps
    gw = grad_w.reshape(groups, og, k)
    gw[...] = 0
    if image_major(g):  # a sum over images of per-image products, in chunks
        step = max(1, WORKSPACE_BYTES // (g.out_channels * k * x.itemsize))
        for n0 in range(0, g.batch, step):
            m = min(g.batch, n0 + step) - n0
            gw += xp.matmul(
                grad_out[n0 : n0 + m].reshape(m, groups, og, oh * ow),
                x[n0 : n0 + m].reshape(m, groups, k, oh * ow).transpose(0, 1, 3, 2),
            ).sum(axis=0)
        return
    for n0, n1 in _chunks(g, x.itemsize):
        m = n1 - n0
        cols = xp.empty((groups, k, m * oh * ow), dtype=x.dtype)
        _layout(runtime, "im2col", x[n0:n1], cols, g, m)
        gw += xp.matmul(_by_group(grad_out[n0:n1], m, groups), cols.transpose(0, 2, 1))


ALGORITHM = ConvAlgorithm(
    "gemm",
    {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight},
    "cuBLAS matmuls: per image on the input itself for a large 1x1 stride-1 convolution, "
    "otherwise per group over im2col columns of many images",
)
