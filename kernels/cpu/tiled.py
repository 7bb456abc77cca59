"""Register-tiled convolution for tens of channels per group.

From about 8 channels per group a 3x3 convolution does 30-70 FLOP per byte it moves: it is
compute-bound, and speed is a matter of keeping the FMA units busy, which neither the
direct kernel (bound by loads and stores) nor im2col + BLAS (bound by the 9x larger
columns, on a BLAS without AVX-512) does. Each parallel task takes one group and a block of
output pixels, copies the input it reads into a zero-padded block and multiplies it with a
register-tiled micro-kernel:

    C[i, j] (+)= sum over d of A[d, i] * B[rows[d] + j]      (an MR x NR tile)

``A`` is packed so that the MR values of one step ``d`` are adjacent (broadcast from
memory), ``B`` has NR adjacent values per step (two vector registers of float32: 32 with
AVX-512, 16 with AVX2), and the MR x NR accumulators stay in registers for the whole
reduction: per step, 2 vector loads and MR broadcasts feed 2 * MR vector FMAs. MR is as many
rows as the target's registers hold beside a step's 2 vectors and MR broadcasts (LLVM loads
them all ahead of the FMAs), up to 8: 8 with AVX-512's 32 registers, 4 with AVX2's 16
(`codegen.Tile.fitting`). The micro-kernel is generated scalar code that LLVM's SLP vectoriser
packs into vector registers (`codegen`).

No im2col. In the padded block, row ih of image b sits at ``(b*band + ih + pH) * pitch``
and an output pixel (b, r, q) at column ``p = (b*band + r) * pitch + q``, so every tap
(i, j) of every output pixel is the input at ``p + i*dH*pitch + j*dW``: a B row is a
contiguous slice of the block, found by a per-step offset. The price is a few junk output
columns per row (pitch - W_out) and rows per image, computed and dropped; consecutive rows
share their padding columns and stacked images their padding rows, which keeps the junk at
15 % for 14x14 images and 30 % for 7x7 ones.

Strided (or padded past the kernel's extent, where rows cannot share their padding), the
block holds the input's stride phases as the direct kernel's scratch does (`direct`): padded
pixel (u, v) of phase (u % sH, v % sW) at row u // sH, column v // sW of that phase's plane,
rows as long as an output row plus the farthest tap's reach. Output pixel (r, q) then reads
tap (i, j) at the same (r, q) of its phase's plane, shifted by (i*dH // sH, j*dW // sW): again
a contiguous B row at a per-step offset, so the micro-kernel is the same.

- forward (any stride, padding and dilation): A = the weights (MR output channels), B = the
  padded input, reduced over (channel, tap): ``y_g = w_g @ taps(x)``.
- grad_input (stride 1, padding within the kernel's extent): a forward convolution of
  grad_out with each group's weights transposed and flipped, padded by
  ``dilation * (k - 1) - padding``.
There is no grad_weight here: the grad_weight rules send these convolutions to the implicit
kernel, which reduces over the in-bounds pixels of each tap with no padded copy and no junk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..geometry import Conv2dGeometry, ConvArgs, Pair
from ..selection import ConvAlgorithm
from ._numba import min_tasks_per_group, u
from .codegen import Tile, compile_tile, outer_product, slp_vectorized
from .direct import _input_taps, _row_phases
from .intrinsics import prefetch_range
from .target import ISA

# rows: output channels, broadcast from the packed weights; lanes: output pixels
TILE = Tile.fitting(ISA, vectors=2, max_rows=8, hoisted=True)
MR, NR = TILE
# output pixels (junk included) of one block: its padded input and its output take about
# this many bytes, to stay in the per-core L2 cache ...
_BLOCK_BYTES = 512 * 1024
# ... and at most this many pixels
_BLOCK_COLUMNS = 2048


def tile_source(mr: int, nr: int) -> str:
    """Python source of the mr x nr micro-kernel (see the module docstring): c[ci + i*ldc + j]
    = sum over d < len(rows) of a[ai + d*mr + i] * b[bi + rows[d] + j]."""
    acc = [[f"s{i}_{j}" for j in range(nr)] for i in range(mr)]
    lines = ["def tile(a, ai, b, bi, rows, c, ci, ldc, zero):"]
    lines += [f"    {' = '.join(row)} = zero" for row in acc]
    lines += ["    for d in range(len(rows)):",
              "        bo = np.uint64(bi + rows[d])",
              f"        ao = np.uint64(ai + d * {mr})"]
    lines += [f"        b{j} = b[bo + np.uint64({j})]" for j in range(nr)]
    lines += outer_product(acc, lambda i: f"a[ao + np.uint64({i})]", " " * 8)
    for i in range(mr):
        lines.append(f"    co = np.uint64(ci + {i} * ldc)")
        lines += [f"    c[co + np.uint64({j})] = {acc[i][j]}" for j in range(nr)]
    return "\n".join(lines)


_tile = compile_tile("tiled.tile", tile_source(MR, NR))



class Block(NamedTuple):
    """The output pixels of one task: `images` whole images of `rows` rows, or (images = 1) a
    band of `rows` rows of one image."""

    images: int
    rows: int


class Layout(NamedTuple):
    """A task's zero-padded input block (module docstring): row length, rows per image, output
    columns (junk included, a multiple of NR), elements per channel and stride phase (ldc plus
    the farthest tap's reach) and stride phases."""

    pitch: int
    band: int
    ldc: int
    plane: int
    phases: int


def _blocks(n_img: int, out_hw: Pair, channels: int, itemsize: int, min_blocks: int = 1
            ) -> Block:
    """Whole images when they are small, else a band of rows of one image; `channels` (input +
    output) per pixel fit _BLOCK_BYTES. At least `min_blocks` blocks where the batch and image
    allow (fewer images per block, then bands of rows), so that a small batch still gives every
    thread work. The blocks are made equal (the threads take equal runs of tasks, so a short
    last block would leave one of them idle)."""
    out_h, out_w = out_hw
    columns = max(out_w, min(_BLOCK_COLUMNS, _BLOCK_BYTES // (channels * itemsize)))
    fit = columns // (out_h * out_w)  # whole images that fit a block
    if fit and n_img >= min_blocks:
        m = max(1, min(fit, n_img // min_blocks))
        return Block(-(-n_img // -(-n_img // m)), out_h)
    bands = max(-(-out_h // max(1, columns // out_w)), -(-min_blocks // n_img))
    return Block(1, -(-out_h // min(bands, out_h)))


def block_of(geometry: Conv2dGeometry, itemsize: int) -> Block:
    """The forward's blocks (`_blocks`) of `geometry`: its stride phases of the input channels
    and its output channels per pixel, at least as many blocks as the threads want."""
    (sh, sw), cg, og = geometry.stride, geometry.in_per_group, geometry.out_per_group
    return _blocks(geometry.batch, geometry.output_hw, cg * sh * sw + og, itemsize,
                   min_tasks_per_group(geometry.groups))


def _pack_weights(w: np.ndarray, groups: int) -> np.ndarray:
    """Weights (C_out, cg, kH, kW) as A panels (groups, ob, K, MR): a[g, b, d, i] =
    w[g*og + b*MR + i, d], zero rows up to a multiple of MR."""
    c_out = w.shape[0]
    og, depth = c_out // groups, w[0].size
    ob = -(-og // MR)
    a = np.zeros((groups, ob * MR, depth), w.dtype)
    a[:, :og] = w.reshape(groups, og, depth)
    return np.ascontiguousarray(a.reshape(groups, ob, MR, depth).transpose(0, 1, 3, 2))


@njit(cache=True)
def _layout(h: int, wd: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int,
            dw: int, out_h: int, out_w: int, m: int, nr: int) -> Layout:
    """The block layout for m images x nr output rows of an H x W input (module docstring)."""
    pb, pr = (kh - 1) * dh - ph, (kw - 1) * dw - pw  # zero rows below / columns right
    reach_h, reach_w = (kh - 1) * dh // sh, (kw - 1) * dw // sw  # in a phase's rows, columns
    if sh == 1 and sw == 1 and pb >= 0 and pr >= 0:
        pitch = wd + max(pw, pr)  # a row's right padding is the next row's left padding
        band = h + max(ph, pb) if m > 1 else nr + reach_h  # whole images share pad rows
    else:  # stride phases, each row an output row and the taps' reach in it
        pitch = out_w + reach_w
        band = (out_h if m > 1 else nr) + reach_h
    ldc = -(-m * band * pitch // NR) * NR
    return Layout(pitch, band, ldc, ldc + reach_h * pitch + reach_w, sh * sw)


@njit(cache=True, inline="always")
def _input_rows(h: int, kh: int, sh: int, ph: int, dh: int, r0: int, nr: int
                ) -> tuple[int, int]:
    """The input rows [first, last) that output rows r0 .. r0 + nr read."""
    return max(0, r0 * sh - ph), min(h, (r0 + nr - 1) * sh + (kh - 1) * dh - ph + 1)


@njit(cache=True)
def _pad_block(x: np.ndarray, n0: int, m: int, c0: int, nc: int, r0: int, nr: int, kh: int,
               sh: int, sw: int, ph: int, pw: int, dh: int, layout: Layout) -> np.ndarray:
    """The input of images n0 .. n0 + m, channels c0 .. c0 + nc, for output rows r0 .. r0 + nr,
    zero-padded into nc * phases planes of `layout.plane` elements: x[n0 + b, c0 + c, ih, iw]
    at padded (u, v) = (ih + pH, iw + pW), in plane c * phases + (u % sH) * sW + v % sW, row
    b * band + u // sH - r0 (stride 1: b * band + ih + pH - r0), column v // sW."""
    _, c_in, h, wd = x.shape
    pitch, band, _, plane, phases = layout
    xf = x.reshape(-1)
    block = np.zeros(nc * phases * plane, x.dtype)
    first, last = _input_rows(h, kh, sh, ph, dh, r0, nr)
    row, phase = divmod(first + ph, sh)  # padded row first + pH: its phase and row there
    for c in range(nc):
        for b in range(m):
            src = ((n0 + b) * c_in + c0 + c) * h * wd + first * wd - pw
            dst = (c * phases + phase * sw) * plane + (b * band + row - r0) * pitch
            a = phase  # counted along, not divided out per row
            for _ in range(first, last):
                _row_phases(xf, src, block, dst, plane, -pw, sw, wd, pitch, True)
                src += wd
                a += 1
                dst += sw * plane
                if a == sh:
                    a = 0
                    dst += pitch - sh * sw * plane
    return block


@njit(parallel=True, cache=True, fastmath={"contract"})
def _forward(x: np.ndarray, a: np.ndarray, bias: np.ndarray, y: np.ndarray, kernel_hw: Pair,
             conv: ConvArgs, block: Block) -> None:
    """y = conv(x, w) + bias, one task per (group, block of output pixels).

    Args:
        x: input (N, C_in, H, W), contiguous.
        a: the weights packed by `_pack_weights`, (groups, ob, cg * kH * kW, MR).
        bias: (C_out,).
        y: output (N, C_out, H_out, W_out), written.
        kernel_hw: (kH, kW).
        conv: stride, padding, dilation and groups.
        block: the output pixels of one task.
    """
    # (a prange body takes arrays and scalars only, so the tuples are unpacked here)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_hw, conv.stride, conv.padding, conv.dilation
    m_img, rows = block
    n_img, c_in, h, wd = x.shape
    groups, ob, depth, _ = a.shape
    _, c_out, out_h, out_w = y.shape
    og, cg = c_out // groups, c_in // groups
    img_blocks, row_blocks = -(-n_img // m_img), -(-out_h // rows)
    af, xf, yf, zero = a.reshape(-1), x.reshape(-1), y.reshape(-1), np.zeros(1, y.dtype)[0]
    for task in prange(groups * img_blocks * row_blocks):
        g = task % groups
        r0 = task // groups % row_blocks * rows
        n0 = task // (groups * row_blocks) * m_img
        m, nr = min(m_img, n_img - n0), min(rows, out_h - r0)
        layout = _layout(h, wd, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, m, nr)
        ldc = layout.ldc
        xpad = _pad_block(x, n0, m, g * cg, cg, r0, nr, kh, sh, sw, ph, pw, dh, layout)
        offsets = _input_taps(cg, kh, kw, sh, sw, dh, dw, layout.pitch, layout.plane)
        out = np.empty(ob * MR * ldc, y.dtype)
        # this thread's next task is the next group on the same pixels: its input is fetched
        # plane by plane while the tiles run, not waited for afterwards
        planes = cg * m if g + 1 < groups else 0
        first, last = _input_rows(h, kh, sh, ph, dh, r0, nr)
        k = 0
        for j0 in range(0, ldc, NR):
            while k * ldc < (j0 + NR) * planes:
                plane = ((n0 + k // cg) * c_in + (g + 1) * cg + k % cg) * h * wd
                prefetch_range(xf, plane + first * wd, (last - first) * wd)
                k += 1
            for b in range(ob):
                _tile(af, (g * ob + b) * depth * MR, xpad, j0, offsets, out, b * MR * ldc + j0,
                      ldc, zero)
        for o in range(og):
            beta = bias[g * og + o]
            for b in range(m):
                for r in range(nr):
                    dst = (((n0 + b) * c_out + g * og + o) * out_h + r0 + r) * out_w
                    src = o * ldc + (b * layout.band + r) * layout.pitch
                    for q in range(out_w):
                        yf[u(dst + q)] = out[u(src + q)] + beta


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
            geometry: Conv2dGeometry) -> None:
    """y = conv(x, w) + bias."""
    bias = np.zeros(geometry.out_channels, y.dtype) if bias is None else bias
    with slp_vectorized():
        _forward(x, _pack_weights(w, geometry.groups), bias, y, geometry.kernel_hw,
                 geometry.args, block_of(geometry, x.itemsize))


def grad_input(gy: np.ndarray, w: np.ndarray, gx: np.ndarray, geometry: Conv2dGeometry) -> None:
    """gx: the forward convolution of gy with each group's weights transposed and flipped."""
    forward(gy, geometry.transposed_weights(w), None, gx, geometry.transposed())


@njit(parallel=True, cache=True, fastmath={"contract"})
def _peak_probe(a: np.ndarray, b: np.ndarray, c: np.ndarray, repeats: int) -> None:
    steps, zero = np.arange(a.size // MR) * NR, np.zeros(1, c.dtype)[0]
    for task in prange(c.shape[0]):
        for _ in range(repeats):
            _tile(a, 0, b, 0, steps, c[task], 0, NR, zero)


def peak_probe(tasks: int = 16, depth: int = 256, repeats: int = 10_000
               ) -> tuple[Callable[[], None], float]:
    """(a call, its FLOPs): the micro-kernel on operands that stay in the L1 cache, in
    parallel, so its FLOP/s is close to the cores' float32 vector FMA peak. The roofline of
    `bench conv` takes the fastest of this and the BLAS matmuls as the peak: a BLAS built
    without AVX-512 kernels reaches only half of it. The default call lasts about 50 ms: timed
    after a pause, a much shorter call measures the threads' wake-up and the clock's ramp."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(depth * n, dtype=np.float32) for n in (MR, NR))
    c = np.empty((tasks, MR * NR), np.float32)
    with slp_vectorized():
        _peak_probe(a, b, c, 1)
    return (lambda: _peak_probe(a, b, c, repeats)), 2.0 * MR * NR * depth * tasks * repeats


ALGORITHM = ConvAlgorithm(
    "tiled",
    {"forward": forward, "grad_input": grad_input},
    f"register-tiled {MR} output channels x {NR} output pixels over a zero-padded copy of the "
    "input",
    supports=lambda pass_, g: pass_ == "forward" or g.has_transpose,
    requirement="stride 1 and padding <= dilation * (kernel size - 1)",  # grad_input's
    nonfinite_exact=frozenset({"forward"}),  # grad_input convolves a zero-padded grad_out
)
