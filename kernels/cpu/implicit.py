"""Implicit-GEMM convolution: output pixels on the tile's rows, output channels on its lanes.

The tiled kernel (`tiled.py`) puts 32 consecutive output pixels on the vector lanes, so it
needs a zero-padded copy of the input and computes the padding columns and rows of that
layout as junk: on 7x7 images that is a third more work, and the copies cost a third of the
time again. With 32 or more output channels per group the lanes can hold output channels
instead, and the pixels go on the rows of the tile, where each one is a separate broadcast:

    y[p_i, o_j] = bias[o_j] + sum over in-bounds (tap t, channel c) of
                  x[c, p_i + offset(t)] * w[o_j, c, t]          (an MR x NR tile)

Each row reads x in place (its own address per tap), so there is no copy of the input, no
junk pixel and no padding: output pixels are grouped by the set of taps that fall inside the
image (all nine in the interior of a 3x3 convolution, six on an edge, four in a corner), a
tile takes MR pixels of one group, and its reduction runs over those taps only. That skips
the multiply-adds with zero padding (18 % of them on 7x7 images) that a padded layout pays
for. The price is that a tile's outputs are scattered (a pixel's output channels are
H_out * W_out apart in NCHW): MR * NR scalar stores after a reduction of (taps x channels)
steps of 2 * MR vector FMAs, about a fifth of the time on 7x7 images with 32 channels per
group (measured by leaving the stores out).

A task takes one group and a block of up to 8 images (so that the corner groups fill a tile);
the weights are packed per (group, NR output channels) as ``wp[tap, c, j]``, NR adjacent
values per step. As in `tiled.py` the micro-kernel is generated scalar code that LLVM's SLP
vectoriser packs (`tiled.slp_vectorized`). grad_input is this forward convolution with the
flipped, group-transposed weights, which `_pack` lays out directly.

With at most ROW_LANES output channels per group the lanes are one register, and a tile of
rows would need a broadcast per multiply-add. For the 3x3 convolutions (stride 1, padding 1)
of ResNeXt's 7x7 and 14x14 stages there is a row tile instead (`row_tile_source`): all the
output pixels of one image row are the tile's rows, so each input value, broadcast once, feeds
the (up to) three outputs whose taps read it: per input row and channel, 14 broadcasts and 3
weight vectors for 40 multiply-adds, and no tap outside the image is multiplied.

grad_weight (also the tiled algorithm's) sums, for each tap, over the output pixels where the
tap is in bounds: ``gw[o, c, t] = sum_p gy[o, p] * x[c, p + offset(t)]``. Output channels go on
the rows, broadcast from grad_out in place, and input channels on the lanes, from the input
packed pixel by pixel (``xt[pixel, c]``, the one copy, transposed in registers by
`intrinsics.pack_pixels`). A tap's shift is then a shift of xt's rows, so the taps of a kernel
row read adjacent vectors: with at most NARROW input channels per group (one register of
lanes), up to RUN adjacent taps go through a NARROW_ROWS x NARROW tile at once and share each
broadcast, 12 vector multiply-adds per 4 broadcasts and 3 vector loads (with 8 rows, 24
accumulators, 8 broadcasts and 3 vectors need more than the 32 registers and spill). With more
input channels the tile is MR x NR, one tap. Broadcasts from memory are what this core runs out
of first (about 1.4 a cycle, against 2 multiply-adds): the opposite layout, input channels
broadcast and 16 output channels on the lanes, needs one per multiply-add and its tile ran at
63 % of the FMA peak, this one at 97 % (one thread, operands in the L1 cache). A task owns one
group, or a slice of its output channels when there are few groups, and walks the image blocks
in order, so the result does not depend on the thread count.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from .direct import _u
from .intrinsics import pack_pixels
from .tiled import compile_tile, slp_vectorized, transposed_padding

MR, NR = 8, 32  # tile: output pixels (rows, one broadcast each) x output channels (lanes)
NARROW, NARROW_ROWS, RUN = 16, 4, 3  # grad_weight, <= 16 input channels per group: 4 x 16 x 3 taps
_IMAGES = 8  # images per task (up to), so that the tiles of the corner pixels are full ...
_BLOCK_BYTES = 256 * 1024  # ... while the task's input stays in the per-core L2 cache
# grad_weight's blocks (the packed input and grad_out) stay in the L1 cache: at 7x7 with 32
# channels per group, 4 images per block ran 13 % faster than 8 (with the earlier layout)
_WEIGHT_BLOCK_BYTES = 64 * 1024
_WEIGHT_TASKS = 16  # grad_weight: up to this many tasks (groups x channel slices), fixed by shape


def tile_source(mr: int, nr: int) -> str:
    """Python source of the mr x nr micro-kernel (see the module docstring)."""
    acc = [[f"s{i}_{j}" for j in range(nr)] for i in range(mr)]
    lines = ["def tile(x, xb, xoff, xo, taps, t0, t1, cg, cs, w, wb, y, yb, yoff, yo, ys, rows,",
             "         cols, bias, bo, ct, zero):"]
    lines += [f"    {' = '.join(row)} = zero" for row in acc]
    lines += ["    for k in range(t0, t1):",
              "        t = taps[k]",
              f"        ro = xo + t * {mr}",
              f"        wo = np.uint64(wb + t * cg * {nr})"]
    lines += [f"        r{i} = np.uint64(xb + xoff[ro + {i}])" for i in range(mr)]
    lines += ["        for c in range(cg):",
              f"            co = wo + np.uint64(c * {nr})",
              "            cc = np.uint64(c * cs)"]
    lines += [f"            b{j} = w[co + np.uint64({j})]" for j in range(nr)]
    for i in range(mr):
        lines.append(f"            a{i} = x[r{i} + cc]")
        lines += [f"            {acc[i][j]} += a{i} * b{j}" for j in range(nr)]
    # through a contiguous buffer: stores adjacent along j let SLP keep j on the lanes
    for i in range(mr):
        lines += [f"    ct[{i * nr + j}] = {acc[i][j]} + bias[bo + {j}]" for j in range(nr)]
    lines.append(f"    if rows == {mr} and cols >= {nr}:")
    for i in range(mr):
        lines.append(f"        q = np.uint64(yb + yoff[yo + {i}])")
        lines += [f"        y[q + np.uint64({j} * ys)] = ct[{i * nr + j}]" for j in range(nr)]
    lines += ["    else:",
              f"        for i in range(min(rows, {mr})):",
              "            q = yb + yoff[yo + i]",
              f"            for j in range(min(cols, {nr})):",
              f"                y[np.uint64(q + j * ys)] = ct[i * {nr} + j]"]
    return "\n".join(lines)


def weight_tile_source(mr: int, nr: int, taps: int) -> str:
    """Python source of grad_weight's micro-kernel for `taps` adjacent taps of a kernel row (an
    mr x nr tile each): acc[ai + k*ldt + i*ldc + j] += sum over steps d of
    g[gb + grow[d] + rowoff[i]] * x[xb + xrow[d] + k*dx + j]. Output channels on the rows,
    broadcast from grad_out in place; input channels on the lanes, from the input packed pixel
    by pixel (the taps' vectors are dx apart). The taps share each broadcast."""
    acc = [[[f"s{k}_{i}_{j}" for j in range(nr)] for i in range(mr)] for k in range(taps)]
    lines = ["def tile(g, gb, rowoff, grow, x, xb, xrow, dx, d0, d1, acc, ai, ldt, ldc):"]
    lines += [f"    r{i} = np.uint64(rowoff[{i}])" for i in range(mr)]
    lines += [f"    c{k}_{i} = np.uint64(ai + {k} * ldt + {i} * ldc)"
              for k in range(taps) for i in range(mr)]
    lines += [f"    {acc[k][i][j]} = acc[c{k}_{i} + np.uint64({j})]"
              for k in range(taps) for i in range(mr) for j in range(nr)]
    lines += ["    for d in range(d0, d1):",
              "        go = np.uint64(gb + grow[d])",
              "        x0 = np.uint64(xb + xrow[d])"]
    lines += [f"        x{k} = x0 + np.uint64({k} * dx)" for k in range(1, taps)]
    lines += [f"        b{k}_{j} = x[x{k} + np.uint64({j})]" for k in range(taps) for j in range(nr)]
    for i in range(mr):
        lines.append(f"        a = g[go + r{i}]")
        for k in range(taps):
            lines += [f"        {acc[k][i][j]} += a * b{k}_{j}" for j in range(nr)]
    lines += [f"    acc[c{k}_{i} + np.uint64({j})] = {acc[k][i][j]}"
              for k in range(taps) for i in range(mr) for j in range(nr)]
    return "\n".join(lines)


ROW_LANES, ROW_WIDTHS = 16, (7, 14)  # row tiles: output channels per tile, image widths


def row_tile_source(width: int, nr: int = ROW_LANES) -> str:
    """Python source of the row tile for a 3x3 kernel, stride 1, padding 1 on images `width`
    wide: acc[k, l] = bias[l] + sum over kernel rows i0 <= i < i1, channels c and taps j of
    x[row i, c, k + j - 1] * w[i, c, j, l] for the `width` outputs k of one row, skipping the
    taps outside the row. Each input value is broadcast once and used by every k that reads
    it; the outputs go through `ct` (k-major) to y, output channel l at yb + l * ys."""
    acc = [[f"s{k}_{lane}" for lane in range(nr)] for k in range(width)]
    lines = ["def tile(x, xrow, hw, wd, i0, i1, cg, w, wb, y, yb, ys, cols, bias, bo, ct, zero):"]
    lines += [f"    {' = '.join(row)} = zero" for row in acc]
    lines += ["    for i in range(i0, i1):",
              "        xi = xrow + i * wd",
              f"        wi = wb + i * cg * {3 * nr}",
              "        for c in range(cg):",
              "            xo = np.uint64(xi + c * hw)",
              f"            wo = np.uint64(wi + c * {3 * nr})"]
    lines += [f"            b{j}_{lane} = w[wo + np.uint64({j * nr + lane})]"
              for j in range(3) for lane in range(nr)]
    for u in range(width):
        lines.append(f"            a = x[xo + np.uint64({u})]")
        for j in range(3):
            if 0 <= u + 1 - j < width:
                lines += [f"            {acc[u + 1 - j][lane]} += a * b{j}_{lane}"
                          for lane in range(nr)]
    lines += [f"    ct[{k * nr + lane}] = {acc[k][lane]} + bias[bo + {lane}]"
              for k in range(width) for lane in range(nr)]
    lines += [f"    for lane in range(min(cols, {nr})):",
              "        q = yb + lane * ys",
              f"        for k in range({width}):",
              f"            y[np.uint64(q + k)] = ct[k * {nr} + lane]"]
    return "\n".join(lines)


_tile = compile_tile(tile_source(MR, NR))
_row_tile_7, _row_tile_14 = (compile_tile(row_tile_source(w)) for w in ROW_WIDTHS)
_weight_tile = compile_tile(weight_tile_source(MR, NR, 1))
_weight_tile_1, _weight_tile_2, _weight_tile_3 = (
    compile_tile(weight_tile_source(NARROW_ROWS, NARROW, k)) for k in range(1, RUN + 1))


def _taps_inside(x_chw: tuple[int, int, int], y_chw: tuple[int, int, int],
                 kernel_hw: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(inside, source), both [output pixel, tap]: whether the tap falls inside the image, and
    where (ih * W + iw) it reads."""
    (_, h, wd), (_, oh, ow), (kh, kw) = x_chw, y_chw, kernel_hw
    ih = np.arange(oh)[:, None] * stride[0] - padding[0] + np.arange(kh) * dilation[0]
    iw = np.arange(ow)[:, None] * stride[1] - padding[1] + np.arange(kw) * dilation[1]
    inside = ((ih >= 0) & (ih < h))[:, None, :, None] & ((iw >= 0) & (iw < wd))[None, :, None, :]
    source = ih[:, None, :, None] * wd + iw[None, :, None, :]
    return inside.reshape(oh * ow, kh * kw), source.reshape(oh * ow, kh * kw)


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.flags.writeable = False  # cached: shared by every call with this shape
    return arrays


@functools.lru_cache(maxsize=64)
def _plan(m: int, x_chw: tuple[int, int, int], y_chw: tuple[int, int, int],
          kernel_hw: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
          dilation: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """The forward tiles of a block of m images: (taps, tap_ranges, xoff, yoff, rows). Tile T
    has rows[T] pixels (the rest of its MR rows repeat the last one and are not stored) that
    share the in-bounds taps taps[tap_ranges[T, 0]:tap_ranges[T, 1]]; row i reads x at
    xoff[T, tap, i] + c * H * W and writes y at yoff[T, i] + o * H_out * W_out (offsets from
    the block's first image and the group's first channel)."""
    (c_in, h, wd), (c_out, oh, ow) = x_chw, y_chw
    inside, source = _taps_inside(x_chw, y_chw, kernel_hw, stride, padding, dilation)
    taps, ranges, xoff, yoff, rows = [], [], [], [], []
    for pattern in np.unique(inside, axis=0):
        pixels = np.flatnonzero((inside == pattern).all(axis=1))
        tap_ids = np.flatnonzero(pattern)
        image, pixel = np.repeat(np.arange(m), len(pixels)), np.tile(pixels, m)
        for s in range(0, len(pixel), MR):
            take = np.minimum(np.arange(s, s + MR), len(pixel) - 1)  # repeat the last pixel
            b, p = image[take], pixel[take]
            off = np.zeros((math.prod(kernel_hw), MR), np.int64)
            off[tap_ids] = (b[:, None] * c_in * h * wd + source[p][:, tap_ids]).T
            ranges.append((len(taps), len(taps) + len(tap_ids)))
            taps.extend(tap_ids)
            xoff.append(off)
            yoff.append(b * c_out * oh * ow + p)
            rows.append(min(MR, len(pixel) - s))
    return _frozen(np.array(taps, np.int64), np.array(ranges, np.int64).reshape(-1, 2),
                   np.concatenate(xoff, axis=None), np.concatenate(yoff),
                   np.array(rows, np.int64))


@functools.lru_cache(maxsize=64)
def _weight_plan(m: int, run: int, lanes: int, x_chw: tuple[int, int, int],
                 y_chw: tuple[int, int, int], kernel_hw: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """grad_weight's steps for a block of m images: (first_tap, taps, starts, grow, xrow). Step
    list r covers taps first_tap[r] .. first_tap[r] + taps[r] - 1 (adjacent taps of a kernel
    row, at most `run`) over the output pixels where all of them fall inside the image, steps
    starts[r] to starts[r + 1]: grad_out at grow[d] (image * C_out * H_out * W_out + pixel) and
    the first tap's input pixel at xrow[d] / lanes (image * H * W + ih * W + iw) of the packed
    input. Every in-bounds (pixel, tap) pair is in exactly one list: the in-bounds taps of a
    pixel in a kernel row are an interval, cut into runs of `run`."""
    (_, h, wd), (c_out, oh, ow), (kh, kw) = x_chw, y_chw, kernel_hw
    inside, source = _taps_inside(x_chw, y_chw, kernel_hw, stride, padding, dilation)
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
    first_tap, taps, starts, grow, xrow = [], [], [0], [], []
    for (t, count), parts in sorted(lists.items()):
        pixels = np.sort(np.concatenate(parts))
        image, pixel = np.repeat(np.arange(m), len(pixels)), np.tile(pixels, m)
        first_tap.append(t)
        taps.append(count)
        grow.append(image * c_out * oh * ow + pixel)
        xrow.append((image * h * wd + source[pixel, t]) * lanes)
        starts.append(starts[-1] + len(pixel))
    return _frozen(np.array(first_tap, np.int64), np.array(taps, np.int64),
                   np.array(starts, np.int64), np.concatenate([[], *grow]).astype(np.int64),
                   np.concatenate([[], *xrow]).astype(np.int64))  # no list: all padding


def _by_lane_tiles(w: np.ndarray, groups: int, transposed: bool, lanes: int) -> np.ndarray:
    """Each group's weights as [g, jt, j, c, kh, kw] = w[g*og + jt*lanes + j, c], zero output
    channels up to a multiple of `lanes` (a view when none are needed); `transposed`: those of
    grad_input's convolution (input and output channels of each group swapped, taps flipped)."""
    c_out, cg, kh, kw = w.shape
    wg = w.reshape(groups, c_out // groups, cg, kh, kw)
    if transposed:
        wg = wg[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    cols, rows = wg.shape[1:3]
    if cols % lanes:
        wg = np.concatenate([wg, np.zeros((groups, -cols % lanes, rows, kh, kw), w.dtype)], 1)
    return wg.reshape(groups, -1, lanes, rows, kh, kw)


def _pack(w: np.ndarray, groups: int, transposed: bool) -> np.ndarray:
    """The forward kernel's weights wp[g, jt, tap, c, j] = w[g*og + jt*NR + j, c, tap] (see
    `_by_lane_tiles`), in one copy."""
    wt = _by_lane_tiles(w, groups, transposed, NR)
    return np.ascontiguousarray(wt.reshape(*wt.shape[:4], -1).transpose(0, 1, 4, 3, 2))


@njit(parallel=True, cache=True, fastmath={"contract"})
def _forward(x, wp, bias, y, n0, blocks, m_img, taps, ranges, xoff, yoff, rows):
    _, c_in, h, wd = x.shape
    _, c_out, oh, ow = y.shape
    groups, jts, ntap, cg, _ = wp.shape
    og = c_out // groups
    xf, yf, wf = x.reshape(-1), y.reshape(-1), wp.reshape(-1)
    zero = np.zeros(1, y.dtype)[0]
    for task in prange(groups * blocks):
        g, n = task % groups, n0 + task // groups * m_img
        ct = np.empty(MR * NR, y.dtype)
        xb = (n * c_in + g * cg) * h * wd
        for jt in range(jts):
            wb = (g * jts + jt) * ntap * cg * NR
            yb = (n * c_out + g * og + jt * NR) * oh * ow
            for t in range(rows.shape[0]):
                _tile(xf, xb, xoff, t * ntap * MR, taps, ranges[t, 0], ranges[t, 1], cg, h * wd,
                      wf, wb, yf, yb, yoff, t * MR, oh * ow, rows[t], og - jt * NR, bias,
                      g * og + jt * NR, ct, zero)


def rows_fit(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: tuple[int, int],
             padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> bool:
    """Whether the forward convolution runs on row tiles (module docstring)."""
    return (w_shape[0] // groups <= ROW_LANES and w_shape[2:] == (3, 3) and stride == (1, 1)
            and padding == (1, 1) and dilation == (1, 1) and x_shape[3] in ROW_WIDTHS)


def _pack_rows(w: np.ndarray, groups: int, transposed: bool) -> np.ndarray:
    """The row tiles' weights wq[g, jt, i, c, j, l] = w[g*og + jt*ROW_LANES + l, c, i, j] (see
    `_by_lane_tiles`), in one copy."""
    return np.ascontiguousarray(
        _by_lane_tiles(w, groups, transposed, ROW_LANES).transpose(0, 1, 4, 3, 5, 2))


@njit(parallel=True, cache=True, fastmath={"contract"})
def _forward_rows(x, wq, bias, y):
    n_img, c_in, h, wd = x.shape
    _, c_out, oh, ow = y.shape
    groups, jts, kh, cg, kw, nr = wq.shape
    og = c_out // groups
    xf, yf, wf = x.reshape(-1), y.reshape(-1), wq.reshape(-1)
    zero = np.zeros(1, y.dtype)[0]
    for task in prange(n_img * groups):
        n, g = task // groups, task % groups
        ct = np.empty(ow * nr, y.dtype)
        xb = (n * c_in + g * cg) * h * wd
        for jt in range(jts):
            wb, o0 = (g * jts + jt) * kh * cg * kw * nr, g * og + jt * nr
            for r in range(oh):  # kernel rows i0..i1 fall inside the image
                i0, i1, yb = max(0, 1 - r), min(kh, h + 1 - r), ((n * c_out + o0) * oh + r) * ow
                if wd == 7:
                    _row_tile_7(xf, xb + (r - 1) * wd, h * wd, wd, i0, i1, cg, wf, wb, yf, yb,
                                oh * ow, og - jt * nr, bias, o0, ct, zero)
                else:
                    _row_tile_14(xf, xb + (r - 1) * wd, h * wd, wd, i0, i1, cg, wf, wb, yf, yb,
                                 oh * ow, og - jt * nr, bias, o0, ct, zero)


def _images(n_img: int, image_bytes: int, budget: int) -> int:
    """Images per block: up to _IMAGES, a power of two, that fit `budget` bytes."""
    m = _IMAGES
    while m > 1 and (m > n_img or m * image_bytes > budget):
        m //= 2
    return m


def _convolve(x: np.ndarray, w: np.ndarray, transposed: bool, groups: int, bias: np.ndarray,
              y: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
              dilation: tuple[int, int]) -> None:
    """y = conv(x, w, or grad_input's weights made from w if `transposed`) + bias: on row
    tiles where they fit, else in blocks of images with one plan each."""
    n_img, c_in, h, wd = x.shape
    kernel_hw = w.shape[2:]
    conv_w_shape = (y.shape[1], c_in // groups, *kernel_hw)
    with slp_vectorized():
        if rows_fit(x.shape, conv_w_shape, stride, padding, dilation, groups):
            _forward_rows(x, _pack_rows(w, groups, transposed), bias, y)
            return
        wp = _pack(w, groups, transposed)
        m = _images(n_img, wp.shape[3] * h * wd * x.itemsize, _BLOCK_BYTES)
        geometry = (x.shape[1:], y.shape[1:], kernel_hw, stride, padding, dilation)
        full, tail = n_img // m * m, n_img % m
        for n0, count, size in ((0, n_img // m, m), (full, 1, tail)):
            if count and size:
                _forward(x, wp, bias, y, n0, count, size, *_plan(size, *geometry))


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray, y: np.ndarray,
            stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
            groups: int) -> None:
    """y = conv(x, w) + bias, any stride, padding and dilation."""
    _convolve(x, w, False, groups, bias, y, stride, padding, dilation)


def grad_input(gy: np.ndarray, w: np.ndarray, gx: np.ndarray, padding: tuple[int, int],
               dilation: tuple[int, int], groups: int) -> None:
    """gx: the forward convolution of gy with the flipped, group-transposed weights (stride 1)."""
    _convolve(gy, w, True, groups, np.zeros(gx.shape[1], gx.dtype), gx, (1, 1),
              transposed_padding(padding, dilation, w.shape[2:]), dilation)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _grad_weight(x, gy, gw, parts, cgp, m_img, dx, first, count, starts, grow, xrow, tail_first,
                 tail_count, tail_starts, tail_grow, tail_xrow):
    n_img, c_in, h, wd = x.shape
    _, c_out, oh, ow = gy.shape
    _, cg, kh, kw = gw.shape
    groups, taps, hw, ohw = c_in // cg, kh * kw, h * wd, oh * ow
    og, narrow = c_out // groups, cgp == NARROW  # narrow: one vector of lanes, runs of taps
    rows = NARROW_ROWS if narrow else MR
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
            d_first, d_count, d_starts, d_g, d_x = (first, count, starts, grow, xrow) if (
                m == m_img) else (tail_first, tail_count, tail_starts, tail_grow, tail_xrow)
            for b in range(m):
                pack_pixels(xt, b * hw * cgp, cgp, xf, ((n0 + b) * c_in + g * cg) * hw, hw, hw,
                            cg)
            gb = (n0 * c_out + g * og + o0) * ohw
            for ot in range(0, no, rows):
                for i in range(rows):  # rows past the slice repeat its last channel
                    rowoff[i] = min(ot + i, no - 1) * ohw
                for r in range(d_first.shape[0]):
                    d0, d1, ai = d_starts[r], d_starts[r + 1], (d_first[r] * ldt + ot * cgp)
                    if not narrow:
                        for jt in range(0, cgp, NR):
                            _weight_tile(gyf, gb, rowoff, d_g, xt, jt, d_x, dx, d0, d1, acc,
                                         ai + jt, ldt, cgp)
                    elif d_count[r] == 3:
                        _weight_tile_3(gyf, gb, rowoff, d_g, xt, 0, d_x, dx, d0, d1, acc, ai,
                                       ldt, cgp)
                    elif d_count[r] == 2:
                        _weight_tile_2(gyf, gb, rowoff, d_g, xt, 0, d_x, dx, d0, d1, acc, ai,
                                       ldt, cgp)
                    else:
                        _weight_tile_1(gyf, gb, rowoff, d_g, xt, 0, d_x, dx, d0, d1, acc, ai,
                                       ldt, cgp)
        for o in range(no):
            for c in range(cg):
                for t in range(taps):
                    gwf[_u(((g * og + o0 + o) * cg + c) * taps + t)] = acc[_u(t * ldt + o * cgp + c)]


def grad_weight(x: np.ndarray, gy: np.ndarray, gw: np.ndarray, stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> None:
    """gw = for each tap, the in-bounds pixels of grad_out times the input they saw, summed in a
    fixed order (one task per group, or per slice of its output channels when there are few
    groups), so the result does not depend on the thread count."""
    n_img = x.shape[0]
    c_out, cg = gw.shape[:2]
    og = c_out // groups
    parts = min(max(1, og // MR), -(-_WEIGHT_TASKS // groups))
    m = _images(n_img, (cg + og) * gy.shape[2] * gy.shape[3] * x.itemsize, _WEIGHT_BLOCK_BYTES)
    # input channels on the lanes: up to NARROW of them in NARROW lanes with runs of up to RUN
    # taps, more in multiples of NR lanes, one tap at a time
    narrow = cg <= NARROW
    cgp = NARROW if narrow else -(-cg // NR) * NR
    geometry = (x.shape[1:], gy.shape[1:], gw.shape[2:], stride, padding, dilation)
    plans = [_weight_plan(k, RUN if narrow else 1, cgp, *geometry) for k in (m, max(1, n_img % m))]
    with slp_vectorized():
        _grad_weight(x, gy, gw, parts, cgp, m, dilation[1] * cgp, *plans[0], *plans[1])
