"""The direct CUDA kernels (conv_direct.cu): launch planning and the three passes.

For few channels per group a convolution is memory-bound, so each kernel stages a group's
weights and a haloed input tile in shared memory and computes several pixels x channels per
thread. The planners here choose, per geometry and C type, the template instantiation, the
tile, the block and the shared memory of each launch; they are pure functions of their
arguments, cached, and need no GPU. grad_weight writes one partial per block and
``sum_partials`` adds them in a fixed order: deterministic, no float atomics.

Each pass has a parameter that picks between two designs, so that one run can time both:
``kernel`` ('tiles': one 2-D tile per block, or 'rows': rows.py's persistent, pipelined
full-row strips; for grad_input at stride 1, the rows forward of the transposed convolution)
and, for grad_weight, ``schedule`` ('fixed': a chunk count fixed by the shape, or 'waves': a
smaller register budget and a chunk count sized to the device's SMs, still a fixed order on a
given device).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from ..geometry import Conv2dGeometry
from ..selection import ConvAlgorithm, Pass
from . import rows
from .occupancy import HOPPER, Device, blocks_per_sm, ceil_div, register_budget, round_up
from .rows import channels_per_thread
from .runtime import (
    ELEMENTWISE_THREADS,
    Kernel,
    Launch,
    Runtime,
    ctype,
    elementwise_grid,
    i32,
    itemsize,
    unit_steps,
)

MAX_THREADS = 256  # threads per block: 256 x 255 registers fit any kernel's register use
SHARED_BYTES = 48 * 1024  # dynamic shared memory a block gets without opting in
MAX_CHANNELS = 16  # channels per group, in and out, up to which the direct kernels are planned
MAX_TAPS = 49  # kernel taps kh * kw up to which the direct kernels are planned
MAX_GRID_YZ = 65535  # groups and images go on the grid's y and z axes
MIN_GRID_BLOCKS = 512  # tiled forward / grad_input prefer tiles that give at least this many blocks
GRAD_WEIGHT_BLOCKS = 2048  # grad_weight blocks with schedule 'fixed': fixed by shape
# accumulators per thread in grad_weight, and the blocks per SM its launch bounds ask for,
# by schedule: 'waves' trades longer per-pixel loops for half the registers
GRAD_WEIGHT_MAX_ACC = {"fixed": 72, "waves": 36}
GRAD_WEIGHT_MIN_BLOCKS = {"fixed": 1, "waves": 2}
GRAD_INPUT_MAX_OFFSETS = 64  # rows x taps per thread in strided / dilated grad_input
SOURCE = "conv_direct.cu"
KERNELS = ("tiles", "rows")
SCHEDULES = ("fixed", "waves")


def geometry_ints(g: Conv2dGeometry) -> tuple[int, ...]:
    """The int arguments every direct kernel takes after its pointers (and image count)."""
    return (g.in_channels, *g.input_hw, g.out_channels, *g.output_hw, g.groups, *g.stride,
            *g.padding, *g.dilation)


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
    MIN_GRID_BLOCKS blocks; try narrower tiles when nothing fits.
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
                few = g.batch * g.groups * tiles_w * tiles_h < MIN_GRID_BLOCKS
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
    width = channels_per_thread(thread_channels)
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
        Kernel.template(SOURCE, name, ctype_, *g.kernel_hw, width, py, unit_steps(g)),
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
    if not unit_steps(g):  # a tap offset per (row, tap) stays in registers: keep them few
        py = min(py, max(1, GRAD_INPUT_MAX_OFFSETS // (kh * kw)))
    return _tiled(g, ctype_, "conv2d_grad_input_direct", h, w, py, g.in_per_group,
                  g.out_per_group,
                  lambda tile_w, tile_h: ((tile_h - 1 + (kh - 1) * dh) // sh + 1,
                                          (tile_w - 1 + (kw - 1) * dw) // sw + 1))


def _grad_weight_chunks(g: Conv2dGeometry, items: int, per_sm: int, device: Device) -> int:
    """Chunks per group for schedule 'waves': the count whose blocks (chunks x groups, in
    waves of per_sm x SMs) finish soonest, each summing ceil(items / chunks) work items; the
    fewest such chunks (fewer partials to add)."""
    slots = per_sm * device.sms
    return min(range(1, min(items, slots) + 1),
               key=lambda c: (ceil_div(c * g.groups, slots) * ceil_div(items, c), c))


@cache
def plan_grad_weight(g: Conv2dGeometry, ctype_: str, schedule: str = "fixed",
                     device: Device = HOPPER) -> Launch | None:
    """conv2d_grad_weight_direct: grid (chunks, groups); the partials' chunk count is grid[0].

    Threads are `pairs` (output slice, input channel) x npt pixel lanes, npt a power of two;
    with npt < 32 the pairs are padded to whole warps. Tiles are as tall as shared memory
    allows; the input window's channel pitch is offset by npt banks so that the pairs of
    one warp read different banks.
    """
    (kh, kw), (oh, ow), (sh, sw), (dh, dw) = g.kernel_hw, g.output_hw, g.stride, g.dilation
    cg, og = g.in_per_group, g.out_per_group
    opt = channels_per_thread(og, kh * kw, GRAD_WEIGHT_MAX_ACC[schedule])
    acc = opt * kh * kw
    pairs = og // opt * cg
    if pairs > MAX_THREADS:
        return None
    npt = 1
    while pairs * npt * 2 <= MAX_THREADS:
        npt *= 2
    threads = pairs * npt if npt >= 32 else round_up(pairs, 32 // npt) * npt
    reduce_elems = pairs * max(1, npt // 32) * acc
    min_blocks = GRAD_WEIGHT_MIN_BLOCKS[schedule]
    registers = register_budget(device, MAX_THREADS, min_blocks)
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
            items = g.batch * tiles_h * tiles_w
            if schedule == "fixed":
                chunks = max(1, min(items, ceil_div(GRAD_WEIGHT_BLOCKS, g.groups)))
            else:
                per_sm = blocks_per_sm(device, threads, registers, elems * itemsize(ctype_))
                chunks = _grad_weight_chunks(g, items, per_sm, device)
            return Launch(
                Kernel.template(SOURCE, "conv2d_grad_weight_direct", ctype_, kh, kw, opt, unit_steps(g),
                                min_blocks),
                (chunks, g.groups, 1),
                threads,
                elems * itemsize(ctype_),
                (tile_h, tile_w, tiles_h, tiles_w, pairs, npt, tih, tiw, tiw, x_cpitch,
                 tile_h * tile_w, gy_off),
                registers,
            )
    return None


def _rows_geometry(pass_: Pass, g: Conv2dGeometry) -> Conv2dGeometry | None:
    """The convolution whose forward with the rows kernel computes this pass of g: g itself
    for the forward, `g.transposed()` for grad_input (stride 1 only), none for grad_weight."""
    if pass_ == "forward":
        return g
    if pass_ == "grad_input" and g.has_transpose:
        return g.transposed()
    return None


def _sum_partials(ctype_: str) -> Kernel:
    return Kernel.template("conv_im2col.cu", "sum_partials", ctype_)


def _in_range(g: Conv2dGeometry) -> bool:
    return (g.max_channels <= MAX_CHANNELS and g.taps <= MAX_TAPS
            and max(g.groups, g.batch) <= MAX_GRID_YZ)


_TILES: dict[Pass, Callable[[Conv2dGeometry, str], Launch | None]] = {
    "forward": plan_forward, "grad_input": plan_grad_input}


def plan(pass_: Pass, g: Conv2dGeometry, ctype_: str, device: Device = HOPPER,
         **params: str) -> Launch | None:
    """The launch of a pass with these parameters (see `space`), or None where it has none."""
    if not _in_range(g):
        return None
    if pass_ == "grad_weight":
        return plan_grad_weight(g, ctype_, params.get("schedule", "fixed"), device)
    if params.get("kernel", "tiles") == "rows":
        source = _rows_geometry(pass_, g)
        return None if source is None else rows.plan(source, ctype_, device)
    return _TILES[pass_](g, ctype_)


def supports(pass_: Pass, g: Conv2dGeometry) -> bool:
    """Whether the pass has a launch plan; decided for float64 (the larger tiles of float32
    always fit when those of float64 do), so that both dtypes run the same algorithm."""
    return plan(pass_, g, "double") is not None


def space(pass_: Pass, g: Conv2dGeometry) -> Mapping[str, Sequence[str]]:
    """The parameters of a pass and their values, the default first; a value is offered
    where it has a plan (for float64, as in `supports`)."""
    if pass_ == "grad_weight":
        return {"schedule": SCHEDULES}
    return {"kernel": tuple(k for k in KERNELS if plan(pass_, g, "double", kernel=k))}


def _launch(pass_: Pass, g: Conv2dGeometry, ctype_: str, device: Device,
            params: Mapping[str, str]) -> Launch:
    launch = plan(pass_, g, ctype_, device, **params)
    if launch is None:
        raise ValueError(f"the direct CUDA kernels have no {pass_} plan {dict(params)} for {g}")
    return launch


def kernels(pass_: Pass, g: Conv2dGeometry, ctype_: str, device: Device, **params: str
            ) -> list[Kernel]:
    """Every kernel a pass launches on this device."""
    launch = _launch(pass_, g, ctype_, device, params)
    extra = [_sum_partials(ctype_)] if pass_ == "grad_weight" and launch.grid[0] > 1 else []
    return [launch.kernel, *extra]


def _run(runtime: Runtime, launch: Launch, args: Sequence[Any]) -> None:
    runtime.launch(launch.kernel, launch.grid, launch.block, launch.shared, args)


def _forward_rows(runtime: Runtime, launch: Launch, x: Any, w: Any, bias: Any | None, y: Any,
                  g: Conv2dGeometry) -> None:
    _run(runtime, launch, [x, w, bias, y, *i32(g.batch, *geometry_ints(g), bias is not None,
                                                *launch.params)])


def forward(x: Any, w: Any, bias: Any | None, y: Any, g: Conv2dGeometry, *, runtime: Runtime,
            kernel: str = "tiles") -> None:
    """y = conv(x, w) + bias by the direct kernels, written into y."""
    launch = _launch("forward", g, ctype(x.dtype), runtime.device, {"kernel": kernel})
    if kernel == "rows":
        _forward_rows(runtime, launch, x, w, bias, y, g)
    else:
        _run(runtime, launch, [x, w, bias, y, *i32(*geometry_ints(g), bias is not None,
                                                    *launch.params)])


def grad_input(grad_out: Any, w: Any, grad_x: Any, g: Conv2dGeometry, *, runtime: Runtime,
               kernel: str = "tiles") -> None:
    """grad_x of the convolution by the direct kernels, written into grad_x."""
    launch = _launch("grad_input", g, ctype(grad_out.dtype), runtime.device, {"kernel": kernel})
    if kernel == "rows":
        _forward_rows(runtime, launch, grad_out, rows.transposed_weights(runtime.xp, w, g),
                      None, grad_x, g.transposed())
    else:
        _run(runtime, launch, [grad_out, w, grad_x, *i32(*geometry_ints(g), *launch.params)])


def grad_weight(x: Any, grad_out: Any, grad_w: Any, g: Conv2dGeometry, *, runtime: Runtime,
                schedule: str = "fixed") -> None:
    """grad_w of the convolution by the direct kernels, deterministic, written into grad_w."""
    ctype_ = ctype(x.dtype)
    launch = _launch("grad_weight", g, ctype_, runtime.device, {"schedule": schedule})
    chunks = launch.grid[0]
    partial = grad_w if chunks == 1 else runtime.xp.empty((chunks, *grad_w.shape), x.dtype)
    _run(runtime, launch, [x, grad_out, partial, *i32(g.batch, *geometry_ints(g),
                                                       *launch.params)])
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
    space=space,
)
