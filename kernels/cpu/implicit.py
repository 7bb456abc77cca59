"""Implicit-GEMM convolution: output pixels on the tile's rows, output channels on its lanes.

The tiled kernel (`tiled.py`) puts consecutive output pixels on the vector lanes, so it needs
a zero-padded copy of the input and computes the padding columns and rows of that layout as
junk: on 7x7 images that is a third more work, and the copies cost more again. With a lane
tile of output channels per group or more (TILE.lanes: two vector registers, 32 with AVX-512)
the lanes can hold output channels instead, and the pixels go on the rows of the tile, where
each one is a separate broadcast:

    y[p_i, o_j] = bias[o_j] + sum over in-bounds (tap t, channel c) of
                  x[c, p_i + offset(t)] * w[o_j, c, t]          (a TILE.rows x TILE.lanes tile)

Each row reads x in place (its own address per tap), so there is no copy of the input, no
junk pixel and no padding: output pixels are grouped by the set of taps that fall inside the
image (all nine in the interior of a 3x3 convolution, six on an edge, four in a corner), a
tile takes TILE.rows pixels of one group, and its reduction runs over those taps only, which
skips the multiply-adds with zero padding that a padded layout pays for. The price is that a
tile's outputs are scattered (a pixel's output channels are H_out * W_out apart in NCHW).

A task takes one group and a block of up to `_IMAGES` images (so that the corner groups fill
a tile; fewer when a small batch and few groups would leave a thread without a task), and a
slice of the group's lane tiles of output channels where groups and blocks are still too few
(a dense or 1x1 convolution at batch 1). It packs each lane tile's weights as ``wl[c, tap,
j]``, TILE.lanes adjacent values per step, just before that tile's pixels run, into a buffer
that stays in its core's cache. The micro-kernels are generated scalar code that LLVM's
SLP vectoriser packs (`codegen`). grad_input runs the same tiles with the roles swapped, at
any stride: a tile's rows are input pixels that share the set of taps through which some output
pixel reads them (at stride 2, a quarter of the pixels are read through one tap of a 3x3 kernel,
half through two, a quarter through four), each row reads grad_out at those output pixels, and
the weights are packed with each group's input and output channels swapped.

For 3x3 convolutions (stride 1, padding 1) there are row tiles (`row_tile_source`, the
parameter ``tiles="rows"``): a segment of one image row (all of it on ResNeXt's 7x7 and 14x14
stages) by ROW_LANES output channels (one register), so each input value, broadcast once,
feeds the (up to) three outputs whose taps read it, three vector multiply-adds where the tile
above gets two, and no tap outside the image is multiplied. A segment's accumulators take one
register per pixel, so wider rows are cut into segments of a width in ROW_SEGMENTS that
divides them (two of 16 on a 32-wide image with AVX-512, four of 8 with AVX2). More output
channels per group take one pass over the row per register of them. A segment's outputs, one
register of channels per pixel, reach their channel planes through one transpose in registers
and masked stores (`intrinsics.store_transposed`).

grad_weight sums, for each tap, over the output pixels where the tap is in bounds:
``gw[o, c, t] = sum_p gy[o, p] * x[c, p + offset(t)]``. Output channels go on the rows,
broadcast from grad_out in place, and input channels on the lanes, from the input packed pixel
by pixel (``xt[pixel, c]``, the one copy, transposed in registers by `intrinsics.pack_pixels`).
A tap's shift is then a shift of xt's rows, so the taps of a kernel row read adjacent vectors:
with at most NARROW_TILE.lanes input channels per group (one register of lanes), up to RUN
adjacent taps go through a NARROW_TILE at once and share each broadcast (its rows are as many
as the registers hold beside the RUN vectors and the broadcast, up to 4). With more
input channels the tile is WEIGHT_TILE, one tap. This layout needs one broadcast per RUN x
lanes multiply-adds, where the opposite one (input channels broadcast, output channels on the
lanes) needs one per vector multiply-add, and broadcasts are what a core runs out of first. A
task owns one group, or a slice of its output channels when there are few groups, and walks
the image blocks in order, so the result does not depend on the thread count. On large
images every tile of taps and output channels runs over one chunk of a block's pixels before
the next (`_WEIGHT_CHUNK_BYTES`), so that each of them reads the chunk's packed input and
grad_out from the L2 cache, not from memory.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..geometry import Conv2dGeometry
from ..selection import Condition, ConvAlgorithm, Pass
from ._numba import fill, min_tasks_per_group, u
from .codegen import Tile, compile_tile, outer_product, slp_vectorized
from .intrinsics import pack_pixels, store_transposed
from .target import ISA

# The tiles fill the target's registers (`Tile.fitting`): with AVX-512, 8 x 32 and 4 x 16 x 3
# taps; with AVX2, 6 x 16 (forward), 4 x 16 and 3 x 8 x 3 taps (grad_weight, whose row values
# LLVM loads all at once).
TILE = Tile.fitting(ISA, vectors=2, max_rows=8)  # forward: output pixels x output channels
# grad_weight: output x input channels
WEIGHT_TILE = Tile.fitting(ISA, vectors=2, max_rows=8, hoisted=True)
RUN = 3  # grad_weight with one register of input channels: 3 adjacent taps at once
NARROW_TILE = Tile.fitting(ISA, vectors=1, max_rows=4, taps=RUN, hoisted=True)
# row tiles: one register of output channels by a segment of a row. Their widths: ResNeXt's 7-
# and 14-wide stages whole, and the widest power of two for other rows, where the accumulators
# (one register per pixel), three weight vectors and a broadcast fit the registers
ROW_LANES = ISA.lanes(np.float32)
ROW_SEGMENTS = tuple(sorted({s for s in (7, 14, 1 << (ISA.registers - 4).bit_length() - 1)
                             if s + 3 + 1 <= ISA.registers}))
_IMAGES = 8  # images per task (up to), so that the tiles of the corner pixels are full ...
_BLOCK_BYTES = 256 * 1024  # ... while the task's input stays in the per-core L2 cache
_WEIGHT_BLOCK_BYTES = 64 * 1024  # grad_weight: the packed input and grad_out in the L1 cache
# grad_weight on larger images: the tiles of every tap and output channel run over one chunk
# of the block's pixels before the next, so that its packed input and grad_out stay in the L2
# cache (a 56x56 image of 128 channels packs to 1.6 MB)
_WEIGHT_CHUNK_BYTES = 512 * 1024


class ForwardPlan(NamedTuple):
    """The forward tiles of a block of images (`_plan`). Tile T has rows[T] pixels (the rest of
    its TILE.rows rows repeat the last one and are not stored) that share the in-bounds taps
    taps[ranges[T, 0]:ranges[T, 1]]; its row i reads x at xoff[(T * taps + tap) * TILE.rows + i]
    + c * H * W and writes y at yoff[T * TILE.rows + i] + o * H_out * W_out (offsets from the
    block's first image and the group's first channel)."""

    taps: np.ndarray
    ranges: np.ndarray
    xoff: np.ndarray
    yoff: np.ndarray
    rows: np.ndarray


class Blocks(NamedTuple):
    """`count` blocks of `images` images each, from image `first` on."""

    first: int
    count: int
    images: int


class Span(NamedTuple):
    """What one forward tile reads and writes: offsets into the flat arrays and its sizes."""

    x: int  # the block's first image, the group's first input channel
    w_step: int  # between two input channels' packed weights: taps * TILE.lanes
    y: int  # the block's first image, the lane tile's first output channel
    bias: int  # the lane tile's first (lane-padded) bias
    channels: int  # input channels per group
    plane: int  # elements per input channel, H * W
    out_plane: int  # elements per output channel, H_out * W_out
    lanes: int  # output channels of the lane tile that exist (the rest are padding)
    first_tap: int  # the tile's in-bounds taps are taps[first_tap:last_tap] ...
    last_tap: int
    xoff: int  # ... its rows read x at xoff[this + tap * TILE.rows + i] (+ x)
    yoff: int  # and write y at yoff[this + i] (+ y)
    rows: int  # pixels in the tile (the rest of its rows repeat the last one, not stored)


def tile_source(rows: int, lanes: int) -> str:
    """Python source of the forward micro-kernel (module docstring) for one tile of a plan."""
    acc = [[f"s{i}_{j}" for j in range(lanes)] for i in range(rows)]
    lines = ["def tile(x, w, y, bias, ct, taps, xoff, yoff, at, zero):"]
    lines += [f"    {' = '.join(row)} = zero" for row in acc]
    lines += ["    for k in range(at.first_tap, at.last_tap):",
              "        tap = taps[k]",
              f"        ro = at.xoff + tap * {rows}",
              f"        wo = np.uint64(tap * {lanes})"]
    lines += [f"        r{i} = np.uint64(at.x + xoff[ro + {i}])" for i in range(rows)]
    lines += ["        for c in range(at.channels):",
              "            co = wo + np.uint64(c * at.w_step)",
              "            cc = np.uint64(c * at.plane)"]
    lines += [f"            b{j} = w[co + np.uint64({j})]" for j in range(lanes)]
    lines += outer_product(acc, lambda i: f"x[r{i} + cc]", " " * 12)
    # through a contiguous buffer: stores adjacent along j let SLP keep j on the lanes
    for i in range(rows):
        lines += [f"    ct[{i * lanes + j}] = {acc[i][j]} + bias[at.bias + {j}]"
                  for j in range(lanes)]
    lines.append(f"    if at.rows == {rows} and at.lanes >= {lanes}:")
    for i in range(rows):
        lines.append(f"        q = np.uint64(at.y + yoff[at.yoff + {i}])")
        lines += [f"        y[q + np.uint64({j} * at.out_plane)] = ct[{i * lanes + j}]"
                  for j in range(lanes)]
    lines += ["    else:",
              f"        for i in range(min(at.rows, {rows})):",
              "            q = at.y + yoff[at.yoff + i]",
              f"            for j in range(min(at.lanes, {lanes})):",
              f"                y[np.uint64(q + j * at.out_plane)] = ct[i * {lanes} + j]"]
    return "\n".join(lines)


class RowSpan(NamedTuple):
    """Where one row tile reads and writes, and which of its taps fall inside the image."""

    x: int  # the input row above the output row (r - 1), the group's first channel, the column
    #         before the segment
    w: int  # the lane tile's packed weights
    y: int  # the segment's first pixel in the lane tile's first output channel
    bias: int  # the lane tile's first (lane-padded) bias
    first_row: int  # kernel rows first_row .. last_row - 1 are inside the image
    last_row: int
    before: bool  # the column before the segment is inside the image (not padding) ...
    after: bool  # ... and the column after it
    segment: int  # its width, one of ROW_SEGMENTS
    channels: int  # input channels per group
    width: int  # image width
    plane: int  # elements per input channel, H * W
    out_plane: int  # elements per output channel, H_out * W_out
    lanes: int  # output channels of the lane tile that exist


def row_tile_source(segment: int, lanes: int = ROW_LANES) -> str:
    """Python source of the row tile for a 3x3 kernel, stride 1, padding 1 on a segment of
    `segment` output pixels k of a row: acc[k, l] = bias[l] + sum over the kernel rows i inside
    the image, channels c and taps j of x[row i, c, k + j - 1] * w[c, i, j, l], the columns
    before and after the segment only where they are inside the image (`at.before`,
    `at.after`: a branch per channel, so no tap on padding is multiplied). Each input value is
    broadcast once and used by every k that reads it; the outputs go through `ct` (k-major,
    lanes x lanes) to y, output channel l at l * out_plane, transposed in registers."""
    assert segment <= lanes, "a segment's outputs are stored as one transposed block"
    acc = [[f"s{k}_{lane}" for lane in range(lanes)] for k in range(segment)]
    lines = ["def tile(x, w, y, bias, ct, at, zero):"]
    lines += [f"    {' = '.join(row)} = zero" for row in acc]
    lines += ["    for i in range(at.first_row, at.last_row):",
              "        xi = at.x + i * at.width",
              f"        wi = at.w + i * {3 * lanes}",
              "        for c in range(at.channels):",
              "            xo = np.uint64(xi + c * at.plane)",
              f"            wo = np.uint64(wi + c * {9 * lanes})"]
    lines += [f"            b{j}_{lane} = w[wo + np.uint64({j * lanes + lane})]"
              for j in range(3) for lane in range(lanes)]
    for col in range(-1, segment + 1):  # relative to the segment's first pixel
        indent = "            "
        if col in (-1, segment):
            lines.append(f"{indent}if at.{'before' if col < 0 else 'after'}:")
            indent += "    "
        lines.append(f"{indent}a = x[xo + np.uint64({col + 1})]")
        for j in range(3):
            if 0 <= col + 1 - j < segment:
                lines += [f"{indent}{acc[col + 1 - j][lane]} += a * b{j}_{lane}"
                          for lane in range(lanes)]
    lines += [f"    ct[{k * lanes + lane}] = {acc[k][lane]} + bias[at.bias + {lane}]"
              for k in range(segment) for lane in range(lanes)]
    lines.append(f"    store_transposed(y, at.y, at.out_plane, ct, 0, {lanes}, {segment}, "
                 f"min(at.lanes, {lanes}))")
    return "\n".join(lines)


def row_dispatch_source(segments: tuple[int, ...]) -> str:
    """Python source of the row tile that calls the one for `at.segment`."""
    lines = ["def tile(x, w, y, bias, ct, at, zero):"]
    for i, segment in enumerate(segments):
        lines += [f"    {'if' if i == 0 else 'elif'} at.segment == {segment}:",
                  f"        row_tile_{segment}(x, w, y, bias, ct, at, zero)"]
    return "\n".join(lines)


class WeightSpan(NamedTuple):
    """Where one grad_weight tile reads and accumulates: steps first .. last - 1 of a step list,
    grad_out from `grad_out`, the packed input from `x` (the taps `tap_step` apart), the
    accumulators from `acc` (taps `acc_tap` apart, output channels `acc_row` apart)."""

    grad_out: int
    x: int
    tap_step: int
    first: int
    last: int
    acc: int
    acc_tap: int
    acc_row: int


def weight_tile_source(rows: int, lanes: int, taps: int) -> str:
    """Python source of grad_weight's micro-kernel for `taps` adjacent taps of a kernel row (a
    rows x lanes tile each): acc[at.acc + k*acc_tap + i*acc_row + j] += sum over steps d of
    g[at.grad_out + grow[d] + rowoff[i]] * x[at.x + xrow[d] + k*tap_step + j]. Output channels
    on the rows, broadcast from grad_out in place; input channels on the lanes, from the input
    packed pixel by pixel. The taps share each broadcast."""
    acc = [[[f"s{k}_{i}_{j}" for j in range(lanes)] for i in range(rows)] for k in range(taps)]
    lines = ["def tile(g, x, acc, rowoff, grow, xrow, at):"]
    lines += [f"    r{i} = np.uint64(rowoff[{i}])" for i in range(rows)]
    lines += [f"    c{k}_{i} = np.uint64(at.acc + {k} * at.acc_tap + {i} * at.acc_row)"
              for k in range(taps) for i in range(rows)]
    lines += [f"    {acc[k][i][j]} = acc[c{k}_{i} + np.uint64({j})]"
              for k in range(taps) for i in range(rows) for j in range(lanes)]
    lines += ["    for d in range(at.first, at.last):",
              "        go = np.uint64(at.grad_out + grow[d])",
              "        x0 = np.uint64(at.x + xrow[d])"]
    lines += [f"        x{k} = x0 + np.uint64({k} * at.tap_step)" for k in range(1, taps)]
    lines += [f"        b{k}_{j} = x[x{k} + np.uint64({j})]"
              for k in range(taps) for j in range(lanes)]
    for i in range(rows):
        lines.append(f"        a = g[go + r{i}]")
        for k in range(taps):
            lines += [f"        {acc[k][i][j]} += a * b{k}_{j}" for j in range(lanes)]
    lines += [f"    acc[c{k}_{i} + np.uint64({j})] = {acc[k][i][j]}"
              for k in range(taps) for i in range(rows) for j in range(lanes)]
    return "\n".join(lines)


_tile = compile_tile("implicit.tile", tile_source(*TILE))
_row_tile = compile_tile("implicit.row_tile", row_dispatch_source(ROW_SEGMENTS), {
    f"row_tile_{s}": compile_tile(f"implicit.row_tile_{s}", row_tile_source(s),
                                  {"store_transposed": store_transposed(ROW_LANES)})
    for s in ROW_SEGMENTS})  # only this target's: each segment's tile adds to the compile time
_weight_tile = compile_tile("implicit.weight_tile", weight_tile_source(*WEIGHT_TILE, 1))
_weight_tile_1, _weight_tile_2, _weight_tile_3 = (
    compile_tile(f"implicit.weight_tile_{k}", weight_tile_source(*NARROW_TILE, k))
    for k in range(1, RUN + 1))


def _taps_inside(geometry: Conv2dGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(inside, source), both [output pixel, tap]: whether the tap falls inside the image, and
    where (ih * W + iw) it reads."""
    (h, wd), (oh, ow), (kh, kw) = geometry.input_hw, geometry.output_hw, geometry.kernel_hw
    (sh, sw), (ph, pw), (dh, dw) = geometry.stride, geometry.padding, geometry.dilation
    ih = np.arange(oh)[:, None] * sh - ph + np.arange(kh) * dh
    iw = np.arange(ow)[:, None] * sw - pw + np.arange(kw) * dw
    return _by_tap((ih >= 0) & (ih < h), ih, (iw >= 0) & (iw < wd), iw, wd)


def _taps_reaching(geometry: Conv2dGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(inside, source), both [input pixel, tap]: whether an output pixel reads this input pixel
    through the tap, and which one (oh * W_out + ow): grad_input's in-bounds pairs, any stride."""
    (h, wd), (oh, ow), (kh, kw) = geometry.input_hw, geometry.output_hw, geometry.kernel_hw
    (sh, sw), (ph, pw), (dh, dw) = geometry.stride, geometry.padding, geometry.dilation
    rh = np.arange(h)[:, None] + ph - np.arange(kh) * dh  # oh * sh for the pairs that exist
    rw = np.arange(wd)[:, None] + pw - np.arange(kw) * dw
    ih, iw = rh // sh, rw // sw
    return _by_tap((rh % sh == 0) & (ih >= 0) & (ih < oh), ih,
                   (rw % sw == 0) & (iw >= 0) & (iw < ow), iw, ow)


def _by_tap(fits_h: np.ndarray, at_h: np.ndarray, fits_w: np.ndarray, at_w: np.ndarray,
            width: int) -> tuple[np.ndarray, np.ndarray]:
    """(inside, source) as [pixel, tap] from the per-axis [row or column, kernel row or column]
    arrays: whether both axes fit, and the pixel at_h * width + at_w read there."""
    inside = fits_h[:, None, :, None] & fits_w[None, :, None, :]
    source = at_h[:, None, :, None] * width + at_w[None, :, None, :]
    pixels, taps = fits_h.shape[0] * fits_w.shape[0], fits_h.shape[1] * fits_w.shape[1]
    return inside.reshape(pixels, taps), source.reshape(pixels, taps)


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.flags.writeable = False  # cached: shared by every call with this shape
    return arrays


@functools.lru_cache(maxsize=64)
def _plan(geometry: Conv2dGeometry, gradient: bool = False) -> ForwardPlan:
    """The forward tiles of a block of `geometry.batch` images; `gradient`: those of its
    grad_input, which reads grad_out through the same taps and writes the input's pixels."""
    m, rows = geometry.batch, TILE.rows
    c_in, c_out = geometry.in_channels, geometry.out_channels
    image_in, image_out = math.prod(geometry.input_hw), math.prod(geometry.output_hw)
    inside, source = _taps_reaching(geometry) if gradient else _taps_inside(geometry)
    if gradient:
        (c_in, c_out), (image_in, image_out) = (c_out, c_in), (image_out, image_in)
    taps, ranges, xoff, yoff, counts = [], [], [], [], []
    for pattern in np.unique(inside, axis=0):
        pixels = np.flatnonzero((inside == pattern).all(axis=1))
        tap_ids = np.flatnonzero(pattern)
        image, pixel = np.repeat(np.arange(m), len(pixels)), np.tile(pixels, m)
        for s in range(0, len(pixel), rows):
            take = np.minimum(np.arange(s, s + rows), len(pixel) - 1)  # repeat the last pixel
            b, p = image[take], pixel[take]
            off = np.zeros((geometry.taps, rows), np.int64)
            off[tap_ids] = (b[:, None] * c_in * image_in + source[p][:, tap_ids]).T
            ranges.append((len(taps), len(taps) + len(tap_ids)))
            taps.extend(tap_ids)
            xoff.append(off)
            yoff.append(b * c_out * image_out + p)
            counts.append(min(rows, len(pixel) - s))
    return ForwardPlan(*_frozen(np.array(taps, np.int64), np.array(ranges, np.int64).reshape(-1, 2),
                                np.concatenate(xoff, axis=None), np.concatenate(yoff),
                                np.array(counts, np.int64)))


class WeightPlan(NamedTuple):
    """grad_weight's steps for a block of images (`_weight_plan`). Step list r covers taps
    first_tap[r] .. first_tap[r] + taps[r] - 1 (adjacent taps of a kernel row) over the output
    pixels where all of them fall inside the image, steps cuts[r, 0] to cuts[r, -1]: grad_out
    at grow[d] (image * C_out * H_out * W_out + pixel) and the first tap's input pixel at
    xrow[d] / lanes (image * H * W + ih * W + iw) of the packed input. Its steps on chunk k of
    the block's output pixels (image * H_out * W_out + pixel, `chunk` of them a chunk) are
    cuts[r, k] to cuts[r, k + 1]."""

    first_tap: np.ndarray
    taps: np.ndarray
    cuts: np.ndarray
    grow: np.ndarray
    xrow: np.ndarray


@functools.lru_cache(maxsize=64)
def _weight_plan(geometry: Conv2dGeometry, run: int, lanes: int, chunk: int) -> WeightPlan:
    """The step lists for a block of `geometry.batch` images, runs of up to `run` taps, cut at
    every `chunk` output pixels. Every in-bounds (pixel, tap) pair is in exactly one list: the
    in-bounds taps of a pixel in a kernel row are an interval, cut into runs of `run`."""
    m, (kh, kw) = geometry.batch, geometry.kernel_hw
    image_in, image_out = math.prod(geometry.input_hw), math.prod(geometry.output_hw)
    inside, source = _taps_inside(geometry)
    inside = inside.reshape(-1, kh, kw)
    lists: dict[tuple[int, int], list[np.ndarray]] = {}
    for i in range(kh):
        hit = inside[:, i].any(axis=1)  # pixels with an in-bounds tap in kernel row i
        first = np.argmax(inside[:, i], axis=1)
        last = kw - 1 - np.argmax(inside[:, i, ::-1], axis=1)
        for ja, jb in set(zip(first[hit], last[hit])):
            pixels = np.flatnonzero(hit & (first == ja) & (last == jb))
            for j in range(ja, jb + 1, run):
                lists.setdefault((i * kw + j, min(run, jb + 1 - j)), []).append(pixels)
    bounds = np.arange(0, m * image_out + chunk, chunk)  # the chunks' first pixels, and the end
    first_tap, taps, cuts, grow, xrow = [], [], [], [], []
    steps = 0
    for (t, count), parts in sorted(lists.items()):
        pixels = np.sort(np.concatenate(parts))
        image, pixel = np.repeat(np.arange(m), len(pixels)), np.tile(pixels, m)
        first_tap.append(t)
        taps.append(count)
        grow.append(image * geometry.out_channels * image_out + pixel)
        xrow.append((image * image_in + source[pixel, t]) * lanes)
        cuts.append(steps + np.searchsorted(image * image_out + pixel, bounds))
        steps += len(pixel)
    return WeightPlan(*_frozen(
        np.array(first_tap, np.int64), np.array(taps, np.int64),
        np.array(cuts, np.int64).reshape(-1, len(bounds)),
        np.concatenate([[], *grow]).astype(np.int64),  # no list at all: every tap on padding
        np.concatenate([[], *xrow]).astype(np.int64)))


def _pad_bias(bias: np.ndarray | None, out_channels: int, groups: int, lanes: int,
              dtype: np.dtype) -> np.ndarray:
    """bias (zeros if None) laid out like the packed weights' output channels: each group's
    zero-padded to a multiple of `lanes`, so a tile's lanes never read past the end."""
    og = out_channels // groups
    padded = np.zeros((groups, -(-og // lanes) * lanes), dtype)
    if bias is not None:
        padded[:, :og] = bias.reshape(groups, og)
    return padded.reshape(-1)


@njit(cache=True, inline="always")
def _zero_past(wl: np.ndarray, at: int, lanes: int, valid: int, steps: int, zero: float) -> None:
    """Lanes valid .. lanes - 1 of `steps` packed steps from wl[at] on: the lanes past a lane
    tile's last channel are computed, never stored, so they hold zeros (no denormals)."""
    for p in range(steps):
        fill(wl, at + p * lanes + valid, lanes - valid, zero)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _forward(x: np.ndarray, w: np.ndarray, transposed: bool, bias: np.ndarray, y: np.ndarray,
             blocks: Blocks, plan: ForwardPlan, parts: int) -> None:
    """y (+ bias) for `blocks` of images, one task per (group, block, slice of the lane tiles):
    the lane tiles are sliced only where groups and blocks are too few for the threads (a
    dense convolution at batch 1). A task packs each lane tile's weights just before its tiles
    run, wl[c, tap, j] = w[g*og + jt*TILE.lanes + j, c, tap] (zero past the last output
    channel), into a buffer that stays in its core's cache: a separate packing pass would read
    and write all the weights once more.

    Args:
        x: input (N, C_in, H, W), contiguous.
        w: weights (C_out, cg, kH, kW), contiguous; `transposed`: grad_input's, the forward
            convolution's (C_in, C_out / groups, kH, kW), read with each group's channels
            swapped.
        bias: (groups * lane tiles * TILE.lanes,), laid out by `_pad_bias`.
        y: output (N, C_out, H_out, W_out), written for the blocks' images.
        blocks: which images, in blocks of `plan`'s size.
        plan: the tiles of one block.
        parts: slices of each group's lane tiles wanted (at most one per lane tile).
    """
    # (a prange body takes arrays and scalars only, so the tuples are unpacked here)
    first, count, images = blocks
    taps, ranges, xoff, yoff, rows = plan
    _, c_in, h, wd = x.shape
    _, c_out, oh, ow = y.shape
    ntap, lanes = w.shape[2] * w.shape[3], TILE.lanes
    groups = (c_out if transposed else c_in) // w.shape[1]
    cg, og = c_in // groups, c_out // groups
    per_out = cg * ntap  # weights per output channel
    jts = -(-og // lanes)
    parts = min(parts, jts)
    per_part = -(-jts // parts)
    xf, yf, wf = x.reshape(-1), y.reshape(-1), w.reshape(-1)
    zero = np.zeros(1, y.dtype)[0]
    for task in prange(groups * count * parts):
        g, block, part = task % groups, task // groups % count, task // (groups * count)
        n = first + block * images
        ct = np.empty(TILE.rows * lanes, y.dtype)
        wl = np.empty(per_out * lanes, w.dtype)
        for jt in range(part * per_part, min(jts, (part + 1) * per_part)):
            valid = min(lanes, og - jt * lanes)
            if transposed:  # w[g*cg + c, jt*lanes + j, tap]: per c, valid x ntap in a run
                for c in range(cg):
                    pack_pixels(wl, c * ntap * lanes, lanes, wf,
                                ((g * cg + c) * og + jt * lanes) * ntap, ntap, ntap, valid)
            else:
                pack_pixels(wl, 0, lanes, wf, (g * og + jt * lanes) * per_out, per_out,
                            per_out, valid)
            _zero_past(wl, 0, lanes, valid, per_out, zero)
            xb = (n * c_in + g * cg) * h * wd
            yb, bb = (n * c_out + g * og + jt * lanes) * oh * ow, (g * jts + jt) * lanes
            for t in range(rows.shape[0]):
                span = Span(xb, ntap * lanes, yb, bb, cg, h * wd, oh * ow, valid, ranges[t, 0],
                            ranges[t, 1], t * ntap * TILE.rows, t * TILE.rows, rows[t])
                _tile(xf, wl, yf, bias, ct, taps, xoff, yoff, span, zero)


def row_segment(width: int) -> int:
    """The row tiles' segment on images `width` wide: the widest of ROW_SEGMENTS that divides
    it, or 0 where none does."""
    return max((s for s in ROW_SEGMENTS if width % s == 0), default=0)


def rows_fit(geometry: Conv2dGeometry) -> bool:
    """Whether the forward convolution runs on row tiles (module docstring)."""
    return (geometry.kernel_hw == (3, 3) and geometry.stride == (1, 1)
            and geometry.padding == (1, 1) and geometry.dilation == (1, 1)
            and row_segment(geometry.input_hw[1]) > 0)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _forward_rows(x: np.ndarray, w: np.ndarray, bias: np.ndarray, y: np.ndarray,
                  per_task: int, parts: int, segment: int) -> None:
    """y (+ bias) on row tiles, one task per (group, block of images, slice of the lane tiles):
    the lane tiles are sliced only where groups and images are too few for the threads (a
    dense convolution at batch 1). Each task packs its slice's weights for the tiles first,
    wl[jt, c, i, j, l] = w[g*og + jt*ROW_LANES + l, c, i, j] (zero past the last output
    channel), into a buffer that stays in its core's cache: a separate packing pass would read
    and write all the weights once more.

    Args:
        x: input (N, C_in, H, W), contiguous, W a multiple of `segment`.
        w: weights (C_out, cg, 3, 3), contiguous.
        bias: (groups * lane tiles * ROW_LANES,), laid out by `_pad_bias`.
        y: output (N, C_out, H, W), written.
        per_task: images per task.
        parts: slices of each group's lane tiles wanted (at most one per lane tile).
        segment: pixels per row tile, one of ROW_SEGMENTS.
    """
    n_img, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    _, _, oh, ow = y.shape
    per_out = cg * kh * kw  # weights per output channel
    groups, nr = c_in // cg, ROW_LANES
    og = c_out // groups
    jts, blocks = -(-og // nr), -(-n_img // per_task)
    parts = min(parts, jts)
    per_part = -(-jts // parts)
    xf, yf, wf = x.reshape(-1), y.reshape(-1), w.reshape(-1)
    zero = np.zeros(1, y.dtype)[0]
    for task in prange(groups * blocks * parts):
        g, block, part = task // (blocks * parts), task // parts % blocks, task % parts
        first, jt0 = block * per_task, part * per_part
        jt1 = min(jt0 + per_part, jts)
        wl = np.empty(per_part * per_out * nr, w.dtype)
        for jt in range(jt0, jt1):
            lanes, base = min(nr, og - jt * nr), (jt - jt0) * per_out
            pack_pixels(wl, base * nr, nr, wf, (g * og + jt * nr) * per_out, per_out,
                        per_out, lanes)
            _zero_past(wl, base * nr, nr, lanes, per_out, zero)
        ct = np.zeros(nr * nr, y.dtype)  # read as a whole block, stored in part
        for n in range(first, min(first + per_task, n_img)):
            for r in range(oh):  # all lane tiles of a row while its input rows are in cache
                for jt in range(jt0, jt1):
                    for k in range(0, ow, segment):
                        span = RowSpan(
                            (n * c_in + g * cg) * h * wd + (r - 1) * wd + k - 1,
                            (jt - jt0) * per_out * nr,
                            ((n * c_out + g * og + jt * nr) * oh + r) * ow + k,
                            (g * jts + jt) * nr,
                            max(0, 1 - r), min(kh, h + 1 - r), k > 0, k + segment < ow, segment,
                            cg, wd, h * wd, oh * ow, og - jt * nr)
                        _row_tile(xf, wl, yf, bias, ct, span, zero)


def _images(n_img: int, image_bytes: int, budget: int, min_blocks: int = 1) -> int:
    """Images per block: up to _IMAGES, a power of two, that fit `budget` bytes, in at least
    `min_blocks` blocks where the batch allows."""
    m = _IMAGES
    while m > 1 and (m > n_img or m * image_bytes > budget or -(-n_img // m) < min_blocks):
        m //= 2
    return m


def _convolve(x: np.ndarray, w: np.ndarray, gradient: bool, bias: np.ndarray | None,
              y: np.ndarray, geometry: Conv2dGeometry, tiles: str) -> None:
    """y = the convolution `geometry` of x with w + bias (`gradient`: y = its grad_input, x its
    grad_out), on row tiles or on planned tiles in blocks of images."""
    groups, n_img = geometry.groups, geometry.batch
    with slp_vectorized():
        lanes = ROW_LANES if tiles == "rows" else TILE.lanes
        b = _pad_bias(bias, y.shape[1], groups, lanes, y.dtype)
        per_group = min_tasks_per_group(groups)  # tasks each group's work should make
        if tiles == "rows":
            if gradient:
                w = np.ascontiguousarray(geometry.transposed_weights(w))
            blocks = min(n_img, per_group)
            _forward_rows(x, w, b, y, -(-n_img // blocks), -(-per_group // blocks),
                          row_segment(x.shape[3]))
            return
        m = _images(n_img, x.shape[1] // groups * x.shape[2] * x.shape[3] * x.itemsize,
                    _BLOCK_BYTES, per_group)
        full, tail = n_img // m * m, n_img % m
        for blocks in (Blocks(0, n_img // m, m), Blocks(full, 1, tail)):
            if blocks.count and blocks.images:
                _forward(x, w, gradient, b, y, blocks,
                         _plan(geometry.with_batch(blocks.images), gradient),
                         -(-per_group // blocks.count))


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
            geometry: Conv2dGeometry, tiles: str = "planned") -> None:
    """y = conv(x, w) + bias, any stride, padding and dilation (row tiles: see `rows_fit`)."""
    _convolve(x, w, False, bias, y, geometry, tiles)


def grad_input(gy: np.ndarray, w: np.ndarray, gx: np.ndarray, geometry: Conv2dGeometry,
               tiles: str = "planned") -> None:
    """gx, any stride, padding and dilation: each input pixel's tile rows read grad_out at the
    output pixels that saw it through each tap (`_taps_reaching`), with each group's weights
    transposed; row tiles run the forward convolution `geometry.transposed()` instead."""
    _convolve(gy, w, True, None, gx, geometry, tiles)


class WeightLayout(NamedTuple):
    """How grad_weight's tasks split the work: `parts` slices of each group's output channels,
    input channels padded to `lanes` (NARROW_TILE.lanes: runs of taps on the narrow tile),
    blocks of `images` images, adjacent taps `tap_step` apart in the packed input."""

    parts: int
    lanes: int
    images: int
    tap_step: int


@njit(parallel=True, cache=True, fastmath={"contract"})
def _grad_weight(x: np.ndarray, gy: np.ndarray, gw: np.ndarray, layout: WeightLayout,
                 plan: WeightPlan, tail: WeightPlan) -> None:
    """gw, one task per (group, slice of its output channels), image blocks in order.

    Args:
        x: input (N, C_in, H, W), contiguous.
        gy: grad_out (N, C_out, H_out, W_out), contiguous.
        gw: grad_weight (C_out, cg, kH, kW), written.
        layout: the split of the work.
        plan: the steps of a block of `layout.images` images.
        tail: the steps of the last block when N is not a multiple of `layout.images`.
    """
    # (a prange body takes arrays and scalars only, so the tuples are unpacked here)
    parts, cgp, m_img, tap_step = layout
    full_first, full_taps, full_cuts, full_grow, full_xrow = plan
    tail_first, tail_taps, tail_cuts, tail_grow, tail_xrow = tail
    n_img, c_in, h, wd = x.shape
    _, c_out, oh, ow = gy.shape
    _, cg, kh, kw = gw.shape
    groups, taps, hw, ohw = c_in // cg, kh * kw, h * wd, oh * ow
    og = c_out // groups
    narrow = cgp == NARROW_TILE.lanes
    rows = NARROW_TILE.rows if narrow else WEIGHT_TILE.rows
    per_part = -(-og // parts)
    ldt = -(-per_part // rows) * rows * cgp  # acc[tap, o, c]
    xf, gyf, gwf = x.reshape(-1), gy.reshape(-1), gw.reshape(-1)
    for task in prange(groups * parts):
        g, o0 = task // parts, task % parts * per_part
        no = min(per_part, og - o0)
        if no <= 0:
            continue
        acc = np.zeros(taps * ldt, gw.dtype)
        xt = np.zeros(m_img * hw * cgp, gw.dtype)  # xt[pixel, c]: the input's block
        rowoff = np.empty(rows, np.int64)
        for n0 in range(0, n_img, m_img):
            m = min(m_img, n_img - n0)
            # the last, smaller block has its own plan
            first_tap, run_taps, cuts, grow, xrow = (
                (full_first, full_taps, full_cuts, full_grow, full_xrow) if m == m_img
                else (tail_first, tail_taps, tail_cuts, tail_grow, tail_xrow))
            for b in range(m):
                pack_pixels(xt, b * hw * cgp, cgp, xf, ((n0 + b) * c_in + g * cg) * hw, hw, hw,
                            cg)
            gb = (n0 * c_out + g * og + o0) * ohw
            tiles = -(-no // rows)
            for kt in range((cuts.shape[1] - 1) * tiles):  # pixel chunk by pixel chunk
                k, ot = kt // tiles, kt % tiles * rows
                for i in range(rows):  # rows past the slice repeat its last channel
                    rowoff[i] = min(ot + i, no - 1) * ohw
                for r in range(first_tap.shape[0]):
                    d0, d1, ai = cuts[r, k], cuts[r, k + 1], first_tap[r] * ldt + ot * cgp
                    if d0 == d1:
                        continue
                    if not narrow:
                        for jt in range(0, cgp, WEIGHT_TILE.lanes):
                            span = WeightSpan(gb, jt, tap_step, d0, d1, ai + jt, ldt, cgp)
                            _weight_tile(gyf, xt, acc, rowoff, grow, xrow, span)
                        continue
                    span = WeightSpan(gb, 0, tap_step, d0, d1, ai, ldt, cgp)
                    if run_taps[r] == 3:
                        _weight_tile_3(gyf, xt, acc, rowoff, grow, xrow, span)
                    elif run_taps[r] == 2:
                        _weight_tile_2(gyf, xt, acc, rowoff, grow, xrow, span)
                    else:
                        _weight_tile_1(gyf, xt, acc, rowoff, grow, xrow, span)
        for o in range(no):
            for c in range(cg):
                for t in range(taps):
                    gwf[u(((g * og + o0 + o) * cg + c) * taps + t)] = acc[u(t * ldt + o * cgp + c)]


def grad_weight(x: np.ndarray, gy: np.ndarray, gw: np.ndarray, geometry: Conv2dGeometry
                ) -> None:
    """gw = for each tap, the in-bounds pixels of grad_out times the input they saw, summed in a
    fixed order (one task per group, or per slice of its output channels when there are few
    groups), so the result does not depend on the thread count."""
    n_img, cg, og = geometry.batch, geometry.in_per_group, geometry.out_per_group
    # slices of a group's output channels keep the threads busy where groups are few; each
    # packs the block's input again, so no more of them (the slices change no sum)
    parts = min(max(1, og // WEIGHT_TILE.rows), min_tasks_per_group(geometry.groups))
    m = _images(n_img, (cg + og) * math.prod(geometry.output_hw) * x.itemsize,
                _WEIGHT_BLOCK_BYTES)
    # input channels on the lanes: up to NARROW_TILE.lanes of them with runs of up to RUN taps,
    # more in multiples of WEIGHT_TILE.lanes, one tap at a time
    narrow = cg <= NARROW_TILE.lanes
    cgp = NARROW_TILE.lanes if narrow else -(-cg // WEIGHT_TILE.lanes) * WEIGHT_TILE.lanes
    run = RUN if narrow else 1
    chunk = max(1, _WEIGHT_CHUNK_BYTES // ((cgp + og // parts) * x.itemsize))  # output pixels
    plan, tail = (_weight_plan(geometry.with_batch(k), run, cgp, chunk)
                  for k in (m, max(1, n_img % m)))
    with slp_vectorized():
        _grad_weight(x, gy, gw, WeightLayout(parts, cgp, m, geometry.dilation[1] * cgp), plan,
                     tail)


_ALIASED_PLANE = 512  # pixels: 2 KiB in float32, 4 KiB in float64


def planes_spread(geometry: Conv2dGeometry) -> bool:
    """Whether grad_input's tiles store without thrashing the L1 cache: a tile's lanes are
    input channels, each stored to its own plane of the input, and planes a multiple of
    `_ALIASED_PLANE` pixels apart put those lines into one or two sets of the cache, more than
    a set's ways hold."""
    return math.prod(geometry.input_hw) % _ALIASED_PLANE != 0


PLANES_SPREAD = Condition(f"input planes not a multiple of {_ALIASED_PLANE} pixels",
                          planes_spread)
ROWS_FIT = Condition("3x3, stride 1, padding 1 on images a multiple of "
                     f"{' or '.join(map(str, ROW_SEGMENTS))} wide", rows_fit)


def _space(pass_: Pass, geometry: Conv2dGeometry) -> dict[str, tuple[str, ...]]:
    if pass_ == "grad_weight":
        return {}
    if pass_ == "grad_input":  # row tiles run grad_input as the transposed convolution
        fits = geometry.has_transpose and rows_fit(geometry.transposed())
    else:
        fits = rows_fit(geometry)
    return {"tiles": ("rows", "planned") if fits else ("planned",)}


ALGORITHM = ConvAlgorithm(
    "implicit",
    {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight},
    "implicit GEMM: output pixels x output channels per tile, the input read in place, no "
    "multiply-adds with padding",
    space=_space,
    nonfinite_exact=frozenset({"grad_input"}),  # forward and grad_weight skip padding taps
)
