"""1x1 convolutions as register-tiled matrix products on Numba's threads, without BLAS.

A 1x1 convolution without padding is, per group, a matrix product over pixels:

    y[n, o, p] = bias[o] + sum over c of A[o, c] * x[n, c, src(p)]   (an MR x NR tile)

where the forward reads the input at every stride-th pixel (A = w) and grad_input is the same
product with the roles swapped (A = w transposed, written at every stride-th pixel of a zeroed
grad_input). im2col + BLAS computes it as one GEMM per image (`gemm.py`), whose columns are one
image's pixels: 49 on a 7x7 image, too few for BLAS's blocking. Here a column is a pixel of any
image, so the columns of a batch run on across images (a 7x7 image at batch 8 fills 13 strips
of 32 columns where per image it would fill 16, a quarter of them junk), and the products run
on Numba's threads, the pool every other kernel uses, instead of BLAS's own.

Each parallel task takes one group, a panel of strips of NR columns and a block of MR-row
tiles of output channels. It copies the panel's input, all K input channels of each strip,
into a contiguous block that stays in the L2 cache (one row run per image; at a stride, every
stride-th pixel; zeros past the last column), then runs each tile over the panel's strips, so
that its MR rows of weights, read in place (each a sequential stream), come from memory once
per panel and from the L1 cache for the other strips: packing the weights would cost as much
as the whole product at batch 1 on a 7x7 image. A tile stores its outputs straight into y
where its strip is NR adjacent pixels of one image, else through a buffer (a strip across two
images, the last one, strided grad_input). The tasks split the panels' strips or their tiles,
whichever repeats fewer bytes (`_tasks`). The forward's epilogue (an inference plan's fused
shortcut addition and ReLU, `inference.freeze`) is applied to each tile's rows right after
they are stored, while they are in the L1 cache: no pass over y follows.

The rules choose it where NumPy's BLAS computes with narrower vectors than the kernels' target,
for convolutions large enough to earn its compilation back (`rules.py` says why, from its
measurements against BLAS); the tuner times it beside the GEMM wherever it applies.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..geometry import Conv2dGeometry, Pair
from ..selection import ConvAlgorithm
from ._numba import min_tasks_per_group, one_thread_below, u
from .codegen import Tile, compile_tile, outer_product, slp_vectorized
from .intrinsics import finish_row
from .target import ISA

# rows: output channels, broadcast from the weights; lanes: columns (pixels of any image)
TILE = Tile.fitting(ISA, vectors=2, max_rows=8, hoisted=True)
MR, NR = TILE
_PANEL_BYTES = 512 * 1024  # a panel's packed input: half the L2 cache
# Below this many multiply-adds (0.1-0.2 ms on one core) the product runs on the calling
# thread: waking a second one cost 40-60 us, so 8.4M ran at 0.84-1.01x on two threads, 16.8M
# at 1.10-1.22x (AMD EPYC, 2 vCPUs).
PARALLEL_MIN_MACS = 1 << 24


def tile_source(mr: int, nr: int) -> str:
    """Python source of the mr x nr tile: acc[i, j] = bias[bo + i] + sum over d < k of
    a[ao + rows[i] + d * step] * b[bi + d * nr + j], written to y[yo + i * ldy + j]
    (`direct`) or to ct[i * nr + j]."""
    acc = [[f"s{i}_{j}" for j in range(nr)] for i in range(mr)]
    lines = ["def tile(a, ao, rows, step, b, bi, k, bias, bo, y, yo, ldy, direct, ct):"]
    lines += [f"    r{i} = np.uint64(ao + rows[{i}])" for i in range(mr)]
    lines += [f"    {' = '.join(acc[i])} = bias[bo + {i}]" for i in range(mr)]
    lines += ["    for d in range(k):",
              f"        bd = np.uint64(bi + d * {nr})",
              "        ad = np.uint64(d * step)"]
    lines += [f"        b{j} = b[bd + np.uint64({j})]" for j in range(nr)]
    lines += outer_product(acc, lambda i: f"a[r{i} + ad]", " " * 8)
    lines.append("    if direct:")
    for i in range(mr):
        lines.append(f"        q = np.uint64(yo + {i} * ldy)")
        lines += [f"        y[q + np.uint64({j})] = {acc[i][j]}" for j in range(nr)]
    lines.append("    else:")
    lines += [f"        ct[{i * nr + j}] = {acc[i][j]}" for i in range(mr) for j in range(nr)]
    return "\n".join(lines)


_tile = compile_tile("pointwise.tile", tile_source(MR, NR))
_finish_row = finish_row(NR)


@njit(cache=True)
def _columns(c0: int, count: int, grid: Pair, x_hw: Pair, x_step: Pair, x_image: int,
             y_hw: Pair, y_step: Pair, y_image: int, src: np.ndarray, dst: np.ndarray) -> None:
    """Where columns c0 .. c0 + count (pixel p of image n: column n * pixels + p of the grid)
    read x and write y, from their images' first channel."""
    oh, ow = grid
    for j in range(count):
        n, p = divmod(c0 + j, oh * ow)
        r, q = divmod(p, ow)
        src[j] = n * x_image + r * x_step[0] * x_hw[1] + q * x_step[1]
        dst[j] = n * y_image + r * y_step[0] * y_hw[1] + q * y_step[1]


@njit(parallel=True, cache=True, fastmath={"contract"})
def _product(x: np.ndarray, a: np.ndarray, row_step: int, k_step: int, bias: np.ndarray,
             y: np.ndarray, grid: Pair, x_step: Pair, y_step: Pair, groups: int,
             panel_strips: int, tiles_per_task: int, residual: np.ndarray, relu: bool) -> None:
    """y[n, g*R + m, dst(p)] = bias[g*R + m] + sum over c < K of
    a[g*R*K + m*row_step + c*k_step] * x[n, g*K + c, src(p)] over the pixels p of `grid`,
    then plus `residual` and through a ReLU where asked (the epilogue).

    Args:
        x: the operand read, (N, groups * K, Hx, Wx), contiguous.
        a: the weights, flat: group g's R x K matrix at g*R*K, element (m, c) at m*row_step +
            c*k_step (forward: w itself; grad_input: w read transposed).
        row_step, k_step: see `a`.
        bias: (groups * R + MR,): the last tile's rows past the last read it.
        y: written, (N, groups * R, Hy, Wy), contiguous; pixels outside dst(grid) untouched.
        grid: the pixels of the product (the output's for the forward).
        x_step, y_step: pixel (r, q) of the grid is x's (r, q) * x_step, y's (r, q) * y_step.
        groups: convolution groups.
        panel_strips: strips of NR columns packed together, for all K channels.
        tiles_per_task: MR-row tiles of one task (a panel's tiles may be split over tasks).
        residual: y-shaped, flat, added to each output as it is stored; empty: none.
        relu: each output (after the residual) below zero is stored as zero.
    """
    n_img, x_channels, xh, xw = x.shape
    _, y_channels, yh, yw = y.shape
    k_all, r_all = x_channels // groups, y_channels // groups
    x_plane, y_plane = xh * xw, yh * yw
    columns = n_img * grid[0] * grid[1]
    strips = -(-columns // NR)
    panels = -(-strips // panel_strips)
    tiles = -(-r_all // MR)
    blocks = -(-tiles // tiles_per_task)
    xf, yf = x.reshape(-1), y.reshape(-1)
    add = residual.size > 0
    epilogue = add or relu
    lo = y.dtype.type(0) if relu else y.dtype.type(-np.inf)  # the ReLU as a clamp below
    for task in prange(groups * panels * blocks):
        block = task % blocks
        panel = task // blocks % panels
        g = task // (blocks * panels)
        s0 = panel * panel_strips
        s1 = min(strips, s0 + panel_strips)
        b = np.empty((s1 - s0) * k_all * NR, x.dtype)
        src = np.empty((s1 - s0) * NR, np.int64)
        dst = np.empty((s1 - s0) * NR, np.int64)
        direct = np.empty(s1 - s0, np.bool_)
        ct = np.empty(MR * NR, y.dtype)
        rows = np.empty(MR, np.int64)
        x0, y0 = g * k_all * x_plane, g * r_all * y_plane
        for s in range(s0, s1):  # the panel's input, all K channels of NR columns per strip
            j0, count = (s - s0) * NR, min(NR, columns - s * NR)
            _columns(s * NR, count, grid, (xh, xw), x_step, x_channels * x_plane, (yh, yw),
                     y_step, y_channels * y_plane, src[j0:], dst[j0:])
            adjacent = count == NR and src[j0 + NR - 1] - src[j0] == NR - 1
            direct[s - s0] = count == NR and dst[j0 + NR - 1] - dst[j0] == NR - 1
            for d in range(k_all):
                bo, xo = ((s - s0) * k_all + d) * NR, x0 + d * x_plane
                if adjacent:
                    xo += src[j0]
                    for j in range(NR):
                        b[u(bo + j)] = xf[u(xo + j)]
                else:
                    for j in range(count):
                        b[u(bo + j)] = xf[u(xo + src[j0 + j])]
                    for j in range(count, NR):
                        b[u(bo + j)] = 0
        for t in range(block * tiles_per_task, min(tiles, (block + 1) * tiles_per_task)):
            m0 = t * MR
            valid = min(MR, r_all - m0)
            for i in range(MR):  # rows past the last repeat it (not stored)
                rows[i] = min(i, valid - 1) * row_step
            for s in range(s0, s1):  # each weight row is read once from memory per panel
                j0, count = (s - s0) * NR, min(NR, columns - s * NR)
                store = direct[s - s0] and valid == MR
                _tile(a, g * r_all * k_all + m0 * row_step, rows, k_step, b,
                      (s - s0) * k_all * NR, k_all, bias, g * r_all + m0, yf,
                      y0 + m0 * y_plane + dst[j0], y_plane, store, ct)
                if store:  # the tile's rows are in the L1 cache: the epilogue reads them there
                    if epilogue:
                        for i in range(MR):
                            _finish_row(yf, y0 + (m0 + i) * y_plane + dst[j0], residual, add,
                                        lo)
                    continue
                for i in range(valid):
                    yo = y0 + (m0 + i) * y_plane
                    for j in range(count):
                        v = ct[i * NR + j]
                        if add:
                            v += residual[u(yo + dst[j0 + j])]
                        yf[u(yo + dst[j0 + j])] = lo if v < lo else v


def _tasks(geometry: Conv2dGeometry, rows: int, depth: int, itemsize: int) -> tuple[int, int]:
    """(strips per panel, tiles per task): at least as many panels as keep a panel's packed
    input, `depth` channels of NR columns per strip, within _PANEL_BYTES, and as many tasks
    (panels times blocks of tiles) as the threads need for TASKS_PER_THREAD each, split where
    it costs least: every panel reads all of its group's weights, every block of tiles packs
    its panel's input again. At batch 1 the weights are the larger (2 MB against 0.4 MB on a
    14x14 image of 512 channels to 1024), so the tiles are split and the panel kept whole;
    on large images the input is, and the strips are split."""
    wanted = min_tasks_per_group(geometry.groups)
    columns = geometry.batch * geometry.output_hw[0] * geometry.output_hw[1]
    strips, tiles = -(-columns // NR), -(-rows // MR)
    fewest = -(-strips // max(1, _PANEL_BYTES // (depth * NR * itemsize)))

    def blocks(panels: int) -> int:
        return min(tiles, -(-wanted // panels))

    def traffic(panels: int) -> tuple[int, int]:
        return rows * panels + columns * blocks(panels), panels

    panels = min(range(fewest, max(fewest, min(strips, wanted)) + 1), key=traffic)
    return -(-strips // panels), -(-tiles // blocks(panels))


def _padded(bias: np.ndarray | None, channels: int, dtype: np.dtype) -> np.ndarray:
    """The bias (None: zeros) followed by MR zeros."""
    padded = np.zeros(channels + MR, dtype)
    if bias is not None:
        padded[:channels] = bias
    return padded


def _run(x: np.ndarray, a: np.ndarray, row_step: int, k_step: int, bias: np.ndarray,
         y: np.ndarray, geometry: Conv2dGeometry, x_step: Pair, y_step: Pair,
         residual: np.ndarray | None = None, relu: bool = False) -> None:
    """`_product` split into tasks for the threads it runs on (one below PARALLEL_MIN_MACS)."""
    rows, depth = y.shape[1] // geometry.groups, x.shape[1] // geometry.groups
    extra = np.empty(0, y.dtype) if residual is None else residual.reshape(-1)
    with one_thread_below(geometry.macs, PARALLEL_MIN_MACS), slp_vectorized():
        per_panel, per_task = _tasks(geometry, rows, depth, x.itemsize)
        _product(x, a, row_step, k_step, bias, y, geometry.output_hw, x_step, y_step,
                 geometry.groups, per_panel, per_task, extra, relu)


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
            geometry: Conv2dGeometry, residual: np.ndarray | None = None,
            relu: bool = False) -> None:
    """y = conv(x, w) + bias: the input at every stride-th pixel times each group's weights;
    plus `residual` (y's shape, contiguous) and through a ReLU where asked, as each tile of y
    is stored."""
    _run(x, w.reshape(-1), geometry.in_per_group, 1,
         _padded(bias, geometry.out_channels, y.dtype), y, geometry, geometry.stride, (1, 1),
         residual, relu)


def grad_input(gy: np.ndarray, w: np.ndarray, gx: np.ndarray, geometry: Conv2dGeometry) -> None:
    """gx = each group's weights transposed times grad_out, at every stride-th input pixel (the
    others are read by no output: zero)."""
    if not geometry.unit_stride:
        gx[...] = 0
    _run(gy, w.reshape(-1), 1, geometry.in_per_group,
         _padded(None, geometry.in_channels, gx.dtype), gx, geometry, (1, 1), geometry.stride)


ALGORITHM = ConvAlgorithm(
    "pointwise",
    {"forward": forward, "grad_input": grad_input},
    f"register-tiled {MR} output channels x {NR} pixels of any image, the weights and input "
    "read in place (a 1x1 convolution without padding)",
    supports=lambda pass_, g: g.pointwise,
    requirement="a 1x1 kernel without padding",
    epilogue=True,
)
