"""The direct CUDA kernels (conv_direct.cu): launch planning and the three passes.

For few channels per group a convolution is memory-bound, so each kernel stages a group's
weights and a haloed input tile in shared memory and computes several pixels x channels per
thread. The planners here choose, per geometry and C type, the template instantiation, the
tile, the block and the shared memory of each launch; they are pure functions of their
arguments, cached, and need no GPU. grad_weight writes one partial per block and
``sum_partials`` adds them in a fixed order: deterministic, no float atomics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..geometry import Conv2dGeometry
from ..selection import ConvAlgorithm, Pass
from .runtime import (
    ELEMENTWISE_THREADS,
    Grid,
    Kernel,
    Runtime,
    ceil_div,
    ctype,
    elementwise_grid,
    i32,
    itemsize,
    round_up,
)

MAX_THREADS = 256  # threads per block: 256 x 255 registers fit any kernel's register use
SHARED_BYTES = 48 * 1024  # dynamic shared memory a block gets without opting in
MAX_CHANNELS = 16  # channels per group, in and out, up to which the direct kernels are planned
MAX_TAPS = 49  # kernel taps kh * kw up to which the direct kernels are planned
MAX_GRID_YZ = 65535  # groups and images go on the grid's y and z axes
MIN_BLOCKS = 512  # forward / grad_input prefer tiles that give at least this many blocks
GRAD_WEIGHT_BLOCKS = 2048  # grad_weight blocks: fixed by shape, so is the result
GRAD_WEIGHT_MAX_ACC = 72  # accumulators per thread in grad_weight
GRAD_INPUT_MAX_OFFSETS = 64  # rows x taps per thread in strided / dilated grad_input
SOURCE = "conv_direct.cu"


@dataclass(frozen=True)
class Launch:
    """A planned launch; `params` are the int arguments after the geometry's."""

    kernel: Kernel
    grid: Grid
    block: int
    shared: int
    params: tuple[int, ...]


def geometry_ints(g: Conv2dGeometry) -> tuple[int, ...]:
    """The int arguments every direct kernel takes after its pointers (and image count)."""
    return (g.in_channels, *g.input_hw, g.out_channels, *g.output_hw, g.groups, *g.stride,
            *g.padding, *g.dilation)


def _unit(g: Conv2dGeometry) -> bool:
    """Stride 1 and dilation 1: the kernels' compile-time fast path."""
    return g.stride == (1, 1) and g.dilation == (1, 1)


def _width(channels: int, taps: int = 1, max_acc: int = 8) -> int:
    """Channels per thread: the largest of 8, 4, 2, 1 that divides `channels` and keeps
    taps * width accumulators within `max_acc` (1 always qualifies)."""
    return next(v for v in (8, 4, 2, 1) if channels % v == 0 and (v * taps <= max_acc or v == 1))


def _tiling(
    g: Conv2dGeometry,
    rows: int,
    cols: int,
    slices: int,
    py: int,
    chunk: Callable[[int, int], tuple[int, ...] | None],
) -> tuple[int, int, int, tuple[int, ...]] | None:
    """(tile_w, tiles_w, row_groups, chunk(tile_w, tile_h)) of a forward/grad_input launch.

    A block is tile_w columns x row_groups rows of py pixels x `slices` channel slices of
    threads. Of the row counts whose window fits shared memory (chunk(...) is not None), take
    the one with the fewest rows computed plus halo rows loaded, summed over the tiles of a
    column, then the fewest rows computed, then the tallest, preferring launches of at least
    MIN_BLOCKS blocks; try narrower tiles when nothing fits.
    """
    need = ceil_div(rows, py)
    halo = (g.kernel_hw[0] - 1) * g.dilation[0] / g.stride[0]  # in rows of the tile
    for max_w in (64, 32, 16, 8, 4, 2, 1):
        tiles_w = ceil_div(cols, min(max_w, MAX_THREADS // slices))
        tile_w = ceil_div(cols, tiles_w)
        options = []
        for rg in range(1, min(need, MAX_THREADS // (tile_w * slices)) + 1):
            c = chunk(tile_w, rg * py)
            if c is not None:
                tiles_h = ceil_div(need, rg)
                few = g.batch * g.groups * tiles_w * tiles_h < MIN_BLOCKS
                options.append(((few, tiles_h * (rg * py + halo), tiles_h * rg, -rg), rg, c))
        if options:
            _, rg, c = min(options)
            return tile_w, tiles_w, rg, c
    return None


def _rows_per_thread(rows: int) -> int:
    return 4 if rows >= 4 else 2 if rows >= 2 else 1


def _tiled(g: Conv2dGeometry, ctype_: str, name: str, rows: int, cols: int, py: int,
           thread_channels: int, window_channels: int,
           window: Callable[[int, int], tuple[int, int]]) -> Launch | None:
    """A forward or grad_input launch: blocks of tile_w columns x row groups of py rows x
    slices of `thread_channels` (the channels it computes, a few per thread); shared memory
    holds the group's weights, then `window(tile_w, tile_h)` (rows, cols) of as many of the
    `window_channels` channels it reads as fit."""
    width = _width(thread_channels)
    w_elems = round_up(g.out_per_group * g.in_per_group * g.taps, 4)
    budget = SHARED_BYTES // itemsize(ctype_) - w_elems

    def chunk(tile_w: int, tile_h: int) -> tuple[int, ...] | None:
        wh, ww = window(tile_w, tile_h)
        c = min(window_channels, budget // (wh * ww))
        return (c, wh, ww) if c >= 1 else None

    tiling = _tiling(g, rows, cols, thread_channels // width, py, chunk)
    if tiling is None:
        return None
    tile_w, tiles_w, rg, (chunk_c, wh, ww) = tiling
    return Launch(
        Kernel.template(SOURCE, name, ctype_, *g.kernel_hw, width, py, _unit(g)),
        (tiles_w * ceil_div(rows, rg * py), g.groups, g.batch),
        tile_w * rg * (thread_channels // width),
        (w_elems + chunk_c * wh * ww) * itemsize(ctype_),
        (tile_w, rg, tiles_w, chunk_c, wh, ww, ww, w_elems),
    )


@cache
def plan_forward(g: Conv2dGeometry, ctype_: str) -> Launch | None:
    """conv2d_forward_direct: weights [cg][kh][kw][og], then input windows of chunk_c channels."""
    (kh, kw), (oh, ow), (sh, sw), (dh, dw) = g.kernel_hw, g.output_hw, g.stride, g.dilation
    return _tiled(g, ctype_, "conv2d_forward_direct", oh, ow, _rows_per_thread(oh),
                  g.out_per_group, g.in_per_group,
                  lambda tile_w, tile_h: ((tile_h - 1) * sh + (kh - 1) * dh + 1,
                                          (tile_w - 1) * sw + (kw - 1) * dw + 1))


@cache
def plan_grad_input(g: Conv2dGeometry, ctype_: str) -> Launch | None:
    """conv2d_grad_input_direct: weights [og][kh][kw][cg], then grad_y windows of chunk_o
    channels, tgh x tgw = the output positions a tile's pixels reach."""
    (kh, kw), (h, w), (sh, sw), (dh, dw) = g.kernel_hw, g.input_hw, g.stride, g.dilation
    py = _rows_per_thread(h)
    if not _unit(g):  # a tap offset per (row, tap) stays in registers: keep them few
        py = min(py, max(1, GRAD_INPUT_MAX_OFFSETS // (kh * kw)))
    return _tiled(g, ctype_, "conv2d_grad_input_direct", h, w, py, g.in_per_group,
                  g.out_per_group,
                  lambda tile_w, tile_h: ((tile_h - 1 + (kh - 1) * dh) // sh + 1,
                                          (tile_w - 1 + (kw - 1) * dw) // sw + 1))


@cache
def plan_grad_weight(g: Conv2dGeometry, ctype_: str) -> Launch | None:
    """conv2d_grad_weight_direct: grid (chunks, groups); the partials' chunk count is grid[0].

    Threads are `pairs` (output slice, input channel) x npt pixel lanes, npt a power of two;
    with npt < 32 the pairs are padded to whole warps. Tiles are as tall as shared memory
    allows; the input window's channel pitch is offset by npt banks so that the pairs of
    one warp read different banks.
    """
    (kh, kw), (oh, ow), (sh, sw), (dh, dw) = g.kernel_hw, g.output_hw, g.stride, g.dilation
    cg, og = g.in_per_group, g.out_per_group
    opt = _width(og, kh * kw, GRAD_WEIGHT_MAX_ACC)
    acc = opt * kh * kw
    pairs = og // opt * cg
    if pairs > MAX_THREADS:
        return None
    npt = 1
    while pairs * npt * 2 <= MAX_THREADS:
        npt *= 2
    threads = pairs * npt if npt >= 32 else round_up(pairs, 32 // npt) * npt
    reduce_elems = pairs * max(1, npt // 32) * acc
    for max_w in (64, 32, 16, 8, 4, 2, 1):
        tiles_w = ceil_div(ow, max_w)
        tile_w = ceil_div(ow, tiles_w)
        tiw = (tile_w - 1) * sw + (kw - 1) * dw + 1
        for tiles_h in range(1, oh + 1):
            tile_h = ceil_div(oh, tiles_h)
            tih = (tile_h - 1) * sh + (kh - 1) * dh + 1
            x_cpitch = round_up(tih * tiw, 32) + npt % 32
            gy_off = round_up(cg * x_cpitch, 4)
            elems = max(gy_off + og * tile_h * tile_w, reduce_elems)
            if elems * itemsize(ctype_) > SHARED_BYTES:
                continue
            tiles_h = ceil_div(oh, tile_h)
            chunks = max(1, min(g.batch * tiles_h * tiles_w, ceil_div(GRAD_WEIGHT_BLOCKS, g.groups)))
            return Launch(
                Kernel.template(SOURCE, "conv2d_grad_weight_direct", ctype_, kh, kw, opt, _unit(g)),
                (chunks, g.groups, 1),
                threads,
                elems * itemsize(ctype_),
                (tile_h, tile_w, tiles_h, tiles_w, pairs, npt, tih, tiw, tiw, x_cpitch,
                 tile_h * tile_w, gy_off),
            )
    return None


PLANNERS: dict[Pass, Callable[[Conv2dGeometry, str], Launch | None]] = {
    "forward": plan_forward, "grad_input": plan_grad_input, "grad_weight": plan_grad_weight}


def _sum_partials(ctype_: str) -> Kernel:
    return Kernel.template("conv_im2col.cu", "sum_partials", ctype_)


def _in_range(g: Conv2dGeometry) -> bool:
    return (g.max_channels <= MAX_CHANNELS and g.taps <= MAX_TAPS
            and max(g.groups, g.batch) <= MAX_GRID_YZ)


def supports(pass_: Pass, g: Conv2dGeometry) -> bool:
    """Whether the pass has a launch plan; decided for float64 (the larger tiles of float32
    always fit when those of float64 do), so that both dtypes run the same algorithm."""
    return _in_range(g) and PLANNERS[pass_](g, "double") is not None


def plan(pass_: Pass, g: Conv2dGeometry, ctype_: str) -> Launch:
    """The launch of a pass this algorithm supports (see `supports`)."""
    launch = PLANNERS[pass_](g, ctype_) if _in_range(g) else None
    if launch is None:
        raise ValueError(f"the direct CUDA kernels do not handle the {pass_} of {g}")
    return launch


def kernels(pass_: Pass, g: Conv2dGeometry, ctype_: str) -> list[Kernel]:
    """Every kernel a pass launches."""
    launch = plan(pass_, g, ctype_)
    extra = [_sum_partials(ctype_)] if pass_ == "grad_weight" and launch.grid[0] > 1 else []
    return [launch.kernel, *extra]


def forward(x: Any, w: Any, bias: Any | None, y: Any, g: Conv2dGeometry, *, runtime: Runtime
            ) -> None:
    launch = plan("forward", g, ctype(x.dtype))
    b = y if bias is None else bias
    runtime.launch(launch.kernel, launch.grid, launch.block, launch.shared,
                   [x, w, b, y, *i32(*geometry_ints(g), bias is not None, *launch.params)])


def grad_input(grad_out: Any, w: Any, grad_x: Any, g: Conv2dGeometry, *, runtime: Runtime
               ) -> None:
    launch = plan("grad_input", g, ctype(grad_out.dtype))
    runtime.launch(launch.kernel, launch.grid, launch.block, launch.shared,
                   [grad_out, w, grad_x, *i32(*geometry_ints(g), *launch.params)])


def grad_weight(x: Any, grad_out: Any, grad_w: Any, g: Conv2dGeometry, *, runtime: Runtime
                ) -> None:
    ctype_ = ctype(x.dtype)
    launch = plan("grad_weight", g, ctype_)
    chunks = launch.grid[0]
    partial = grad_w if chunks == 1 else runtime.xp.empty((chunks, *grad_w.shape), x.dtype)
    runtime.launch(launch.kernel, launch.grid, launch.block, launch.shared,
                   [x, grad_out, partial, *i32(g.batch, *geometry_ints(g), *launch.params)])
    if chunks > 1:
        runtime.launch(_sum_partials(ctype_), elementwise_grid(grad_w.size), ELEMENTWISE_THREADS,
                       0, [partial, grad_w, *i32(chunks, grad_w.size)])


ALGORITHM = ConvAlgorithm(
    "direct",
    {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight},
    "a block stages a group's weights and a haloed input tile in shared memory; each thread "
    "computes several pixels x channels",
    supports=supports,
    requirement=(f"at most {MAX_CHANNELS} input and output channels per group, at most "
                 f"{MAX_TAPS} kernel taps, at most {MAX_GRID_YZ} groups and images, and a tile "
                 "that fits shared memory"),
)
