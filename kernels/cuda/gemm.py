"""The GEMM path on the GPU: cuBLAS (through ``xp.matmul``) does the arithmetic.

With many channels per group a convolution is compute-bound. A 1x1 stride-1 unpadded
convolution with enough pixels per image is a matmul per image on the input itself;
otherwise an im2col kernel (conv_im2col.cu) gathers the input into columns and a col2im
kernel (a gather) folds grad_input's columns back, in chunks of images whose columns fit
WORKSPACE_BYTES. The parameter ``layout`` picks the columns' layout:

- 'groups': one large matmul per group over the columns of many images; the products come
  out group-major, so y and grad_out are transposed copies away from them.
- 'images': each image's columns are the operand of a batched matmul (images x groups) whose
  result is y itself, or which reads grad_out itself: no transposed copies; the layout
  kernels take the kernel size at compile time and index in 32 bits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..geometry import Conv2dGeometry
from ..selection import ConvAlgorithm, Pass
from .occupancy import Device
from .runtime import (
    ELEMENTWISE_THREADS,
    Kernel,
    Runtime,
    ctype,
    elementwise_grid,
    i32,
    unit_steps,
)

WORKSPACE_BYTES = 256 << 20  # columns per chunk of images
MIN_PIXELS_PER_IMAGE = 1024  # output pixels per image from which a pointwise GEMM runs per image
INDEX_LIMIT = 2**31  # elements a chunk's arrays may have with the 'images' kernels' int indices
SOURCE = "conv_im2col.cu"
LAYOUTS = ("groups", "images")
_LAYOUT_KERNELS = {"groups": ("im2col", "col2im"), "images": ("im2col_images", "col2im_images")}


def image_major(g: Conv2dGeometry) -> bool:
    """GEMM per image on the input itself: 1x1, stride 1, unpadded, with enough pixels per
    image that each product is large; otherwise one product per group over im2col columns."""
    oh, ow = g.output_hw
    return g.pointwise and g.unit_stride and oh * ow >= MIN_PIXELS_PER_IMAGE


def space(pass_: Pass, g: Conv2dGeometry) -> Mapping[str, Sequence[str]]:
    """The columns' layout, where there are columns."""
    return {} if image_major(g) else {"layout": LAYOUTS}


def _layout_kernel(pass_: Pass, g: Conv2dGeometry, ctype_: str, layout: str) -> Kernel:
    name = _LAYOUT_KERNELS[layout][pass_ == "grad_input"]
    if layout == "groups":
        return Kernel.template(SOURCE, name, ctype_)
    return Kernel.template(SOURCE, name, ctype_, *g.kernel_hw, unit_steps(g))


def kernels(pass_: Pass, g: Conv2dGeometry, ctype_: str, device: Device,
            layout: str = "groups") -> list[Kernel]:
    """Every kernel a pass launches (cuBLAS's aside)."""
    return [] if image_major(g) else [_layout_kernel(pass_, g, ctype_, layout)]


def _chunks(g: Conv2dGeometry, itemsize: int) -> Iterator[tuple[int, int]]:
    """Image ranges whose im2col columns fit WORKSPACE_BYTES and whose columns and images have
    fewer than INDEX_LIMIT elements (at least one image each)."""
    (h, w), (oh, ow) = g.input_hw, g.output_hw
    columns = g.in_channels * g.taps * oh * ow
    step = max(1, min(WORKSPACE_BYTES // (columns * itemsize),
                      (INDEX_LIMIT - 1) // max(columns, g.in_channels * h * w)))
    for n0 in range(0, g.batch, step):
        yield n0, min(g.batch, n0 + step)


def _layout(rt: Runtime, pass_: Pass, layout: str, src: Any, dst: Any, g: Conv2dGeometry,
            m: int) -> None:
    """x -> columns (forward, grad_weight) or columns -> grad_x (grad_input), m images."""
    kernel = _layout_kernel(pass_, g, ctype(dst.dtype), layout)
    sizes = (*g.stride, *g.padding, *g.dilation)
    if layout == "groups":
        total = dst.size
        args = [np.int64(total), *i32(g.in_channels, m, *g.input_hw, *g.kernel_hw,
                                      *g.output_hw, *sizes)]
    else:  # one element per output pixel (im2col) or input pixel (col2im) of each plane
        pixels = g.input_hw if pass_ == "grad_input" else g.output_hw
        total = m * g.in_channels * pixels[0] * pixels[1]
        args = i32(m * g.in_channels, *g.input_hw, *g.output_hw, *sizes)
    rt.launch(kernel, elementwise_grid(total), ELEMENTWISE_THREADS, 0, [src, dst, *args])


def _by_group(a: Any, m: int, groups: int) -> Any:
    """(m, groups * c, oh, ow) -> (groups, c, m * oh * ow), a copy."""
    return (
        a.reshape(m, groups, -1, a.shape[2] * a.shape[3])
        .transpose(1, 2, 0, 3)
        .reshape(groups, -1, m * a.shape[2] * a.shape[3])
    )


def _columns(rt: Runtime, layout: str, x: Any, g: Conv2dGeometry, m: int) -> Any:
    """im2col of m images: (m, groups, cg * taps, pixels) or (groups, cg * taps, m * pixels)."""
    k, pixels = g.in_per_group * g.taps, g.output_hw[0] * g.output_hw[1]
    shape = (m, g.groups, k, pixels) if layout == "images" else (g.groups, k, m * pixels)
    cols = rt.xp.empty(shape, dtype=x.dtype)
    _layout(rt, "forward", layout, x, cols, g, m)
    return cols


def forward(x: Any, w: Any, bias: Any | None, y: Any, g: Conv2dGeometry, *, runtime: Runtime,
            layout: str = "groups") -> None:
    """y = conv(x, w) + bias by the cuBLAS GEMM, written into y."""
    xp, (oh, ow), groups = runtime.xp, g.output_hw, g.groups
    cg, og = g.in_per_group, g.out_per_group
    wg = w.reshape(groups, og, cg * g.taps)
    if image_major(g):
        xp.matmul(wg, x.reshape(g.batch, groups, cg, oh * ow),
                  out=y.reshape(g.batch, groups, og, oh * ow))
    else:
        for n0, n1 in _chunks(g, x.itemsize):
            m = n1 - n0
            cols = _columns(runtime, layout, x[n0:n1], g, m)
            if layout == "images":
                xp.matmul(wg, cols, out=y[n0:n1].reshape(m, groups, og, oh * ow))
            else:
                y[n0:n1] = (
                    xp.matmul(wg, cols)
                    .reshape(groups, og, m, oh, ow)
                    .transpose(2, 0, 1, 3, 4)
                    .reshape(m, g.out_channels, oh, ow)
                )
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)


def grad_input(grad_out: Any, w: Any, grad_x: Any, g: Conv2dGeometry, *, runtime: Runtime,
               layout: str = "groups") -> None:
    """grad_x of the convolution by the cuBLAS GEMM, written into grad_x."""
    xp, (h, wd), (oh, ow), groups = runtime.xp, g.input_hw, g.output_hw, g.groups
    cg, og = g.in_per_group, g.out_per_group
    wt = w.reshape(groups, og, cg * g.taps).transpose(0, 2, 1)
    if image_major(g):
        xp.matmul(wt, grad_out.reshape(g.batch, groups, og, h * wd),
                  out=grad_x.reshape(g.batch, groups, cg, h * wd))
        return
    for n0, n1 in _chunks(g, grad_out.itemsize):
        m = n1 - n0
        gy = (grad_out[n0:n1].reshape(m, groups, og, oh * ow) if layout == "images"
              else _by_group(grad_out[n0:n1], m, groups))
        _layout(runtime, "grad_input", layout, xp.matmul(wt, gy), grad_x[n0:n1], g, m)


def grad_weight(x: Any, grad_out: Any, grad_w: Any, g: Conv2dGeometry, *, runtime: Runtime,
                layout: str = "groups") -> None:
    """grad_w of the convolution by the cuBLAS GEMM, deterministic, written into grad_w."""
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
        cols = _columns(runtime, layout, x[n0:n1], g, m)
        if layout == "images":
            gw += xp.matmul(grad_out[n0:n1].reshape(m, groups, og, oh * ow),
                            cols.transpose(0, 1, 3, 2)).sum(axis=0)
        else:
            gw += xp.matmul(_by_group(grad_out[n0:n1], m, groups), cols.transpose(0, 2, 1))


ALGORITHM = ConvAlgorithm(
    "gemm",
    {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight},
    "cuBLAS matmuls: per image on the input itself for a large 1x1 stride-1 convolution, "
    "otherwise over im2col columns",
    space=space,
)
