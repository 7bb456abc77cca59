"""Direct grouped-convolution kernels for few channels per group (and depthwise).

With a handful of channels per group a convolution does ~9 FLOP per byte it must move, so it
is memory-bound: the job is to read x and write y once and keep the vector units busy in
between. Each parallel task takes one (image, group, block of output rows). It copies the
input rows the block needs into a zero-padded scratch buffer whose rows all have the same
pitch, split into stride phases (``buf[a, b][u, v] = x_padded[u*sH + a, v*sW + b]``). In that
layout every kernel tap is a plain shift, so the whole block is one long contiguous loop per
output channel and tap:

    ybuf[o, :] += w[o, c, i, j] * xbuf[c, phase(i, j)][shift(i, j) :]

done in blocks of four output channels by four taps: each loaded input vector feeds four
outputs and each output vector is loaded and stored once per four taps (loads and stores,
not arithmetic, bound this loop). The few columns past the image edge (the ``pitch - W_out``
tail of every row) are computed and dropped, which costs a few percent and removes every
bounds check from the inner loop.
grad_input is the same loop with x and y swapped: per stride phase of the input, a
correlation of a zero-padded copy of grad_out with that phase's taps. grad_weight replaces
the update by dot products.

The copies in and out cost more than the multiply-adds with a few channels per group (60 % of
a 4-channel forward on 56x56 images), so a 3x3 convolution at stride 1 with padding =
dilation, in whole blocks of four channels (`reads_in_place`), reads x in place (the tuning
parameter `read`: "stream", the default, or "buffers"): one loop over each plane sums all nine
kernel positions of four input channels for four outputs in registers and stores each output
vector once (`intrinsics.plane_taps`), masked loads dropping the taps that leave the image;
an output larger than the last-level cache is written past the caches (`bypasses_caches`).
grad_input at stride 1 is that forward on the transposed geometry
(`Conv2dGeometry.transposed`).

The per-row helpers work on flat arrays with unsigned offsets and are inlined, like those
of `_numba` (see there why).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..geometry import Conv2dGeometry, ConvArgs
from ..selection import ConvAlgorithm, Pass
from . import memory
from ._numba import fill, ints, transfer, u, valid_cols
from .intrinsics import VECTOR_BYTES, pair_phases, plane_taps

# Scratch per task (input and output blocks) is sized to stay in the per-core L2 cache.
_BLOCK_BYTES = 128 * 1024
# forward/grad_input hand out their (image, group, row block) units in about this many
# tasks, each allocating its scratch once.
_TASKS = 256
# grad_weight: the number of partial sums per group is chosen from the shape only, so the
# fixed-order reduction gives bitwise the same result whatever the thread count.
_GRAD_WEIGHT_TASKS = 16
# read="stream" (and depthwise's write="stream") computes this many vectors of pixels per
# step of `plane_taps`, each weight broadcast once for all of them: more run as fast on cached
# planes and slower on planes streamed from memory, and on small planes (14 x 14, 28 x 28)
# much slower
STREAM_STEP = 2
_four_plane_taps = plane_taps(4, 4, STREAM_STEP)


@njit(cache=True)
def _segments(
    total_rows: int, halo: int, pitch: int, buffers: int, itemsize: int
) -> tuple[int, int]:
    """How the rows of one image's output (or phase) grid go into blocks whose `buffers`
    scratch rows of `pitch` elements fit _BLOCK_BYTES: (rows per segment, segments per
    block). A block is a run of rows of one image or, for small images, several whole
    images stacked with `halo` rows between them, so that the inner loops stay long."""
    rb = max(1, _BLOCK_BYTES // (buffers * pitch * itemsize))
    if total_rows + halo > rb:
        return min(rb, total_rows), 1
    return total_rows, rb // (total_rows + halo)


# --- moving rows between images and scratch buffers ------------------------------------------


@njit(cache=True, inline="always")
def _row_phases(
    img: np.ndarray,
    i: int,
    buf: np.ndarray,
    b: int,
    phase_len: int,
    col0: int,
    step: int,
    width: int,
    count: int,
    load: bool,
) -> None:
    """Move one image row (pixel col0 at img[i]) to or from its `step` column phases
    buf[b + p*phase_len + v] <-> img[i + v*step + p], for the v < count inside the row.

    Those pixels are one run of the row, [first, last): at a stride of 2 its pixels go in
    pairs, one to each phase, starting with whichever phase the first pixel is in."""
    first, last = max(0, col0), min(width, col0 + step * count)
    if step == 1:
        transfer(buf, b + first - col0, img, i + first - col0, 1, last - first, load)
    elif step == 2:
        v, p = divmod(first - col0, 2)  # first pixel: phase p, column v; the next: 1 - p, v + p
        pairs = max(0, last - first) // 2
        pair_phases(buf, b + p * phase_len + v, b + (1 - p) * phase_len + v + p, img,
                    i + first - col0, pairs, load)
        if first + 2 * pairs < last:  # an odd pixel at the end
            transfer(buf, b + p * phase_len + v + pairs, img, i + last - 1 - col0, 0, 1, load)
    else:
        for p in range(step):
            lo, hi = valid_cols(col0 + p, step, width, count)
            transfer(buf, b + p * phase_len + lo, img, i + p + lo * step, step, hi - lo, load)


@njit(cache=True)
def _load_plane(
    img: np.ndarray,
    plane: int,
    h: int,
    width: int,
    row0: int,
    row_step: int,
    col0: int,
    col_step: int,
    buf: np.ndarray,
    b: int,
    phase_len: int,
    rows: int,
    pitch: int,
) -> None:
    """buf[b + p*phase_len + rr*pitch + v] = padded image plane (flat, at img[plane], h x width)
    at row row0 + rr*row_step, column col0 + v*col_step + p, for rr < rows, v < pitch,
    p < col_step: rows of the column phases of a zero-padded plane."""
    for rr in range(rows):
        base = b + rr * pitch
        for p in range(col_step):
            fill(buf, base + p * phase_len, pitch, 0)
        ih = row0 + rr * row_step
        if 0 <= ih < h:
            i = plane + ih * width + col0
            _row_phases(img, i, buf, base, phase_len, col0, col_step, width, pitch, True)


@njit(cache=True)
def _store_plane(
    buf: np.ndarray,
    b: int,
    phase_len: int,
    rows: int,
    pitch: int,
    count: int,
    img: np.ndarray,
    plane: int,
    h: int,
    width: int,
    row0: int,
    row_step: int,
    col0: int,
    col_step: int,
) -> None:
    """The inverse of `_load_plane` for v < count: write the phase rows back into the plane,
    skipping pixels outside it."""
    for rr in range(rows):
        ih = row0 + rr * row_step
        if 0 <= ih < h:
            i = plane + ih * width + col0
            base = b + rr * pitch
            _row_phases(img, i, buf, base, phase_len, col0, col_step, width, count, False)


@njit(cache=True)
def _load_input(
    xf: np.ndarray,
    x_shape: tuple[int, int, int, int],
    n: int,
    c0: int,
    cg: int,
    r0: int,
    rows: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    pitch: int,
    xbuf: np.ndarray,
    phase_len: int,
    at: int,
) -> None:
    """Rows r0 .. r0 + rows of stride phase (a, b) of zero-padded x[n, c0 + c] (x flat in xf)
    into phase k = (c*sH + a)*sW + b of xbuf, from element `at` of that phase on."""
    _, c_in, h, wd = x_shape
    for c in range(cg):
        plane = ((n * c_in) + c0 + c) * h * wd
        for a in range(sh):
            b = (c * sh + a) * sw * phase_len + at
            _load_plane(
                xf, plane, h, wd, r0 * sh + a - ph, sh, -pw, sw, xbuf, b, phase_len, rows, pitch
            )


@njit(cache=True)
def _load_block(
    xf: np.ndarray,
    x_shape: tuple[int, int, int, int],
    c0: int,
    cg: int,
    first: int,
    last: int,
    per_img: int,
    seg_rows: int,
    seg_len: int,
    out_h: int,
    oi_max: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    pitch: int,
    xbuf: np.ndarray,
    phase_len: int,
) -> int:
    """The input of segments first .. last (segment = (image, block of seg_rows output rows))
    into xbuf, one after the other `seg_len` apart (see `_load_input`); returns how many
    elements of each phase the block's output rows span."""
    size = 0
    for item in range(first, last):
        n, r0 = item // per_img, item % per_img * seg_rows
        rows = min(seg_rows, out_h - r0)
        at = (item - first) * seg_len
        _load_input(
            xf, x_shape, n, c0, cg, r0, rows + oi_max + 1, sh, sw, ph, pw, pitch, xbuf, phase_len, at
        )
        size = at + rows * pitch
    return size


# --- the vectorised inner loops ------------------------------------------------------------


@njit(cache=True)
def _axpy(dst: np.ndarray, d: int, n: int, src: np.ndarray, s: int, a: float) -> None:
    """dst[d : d + n] += a * src[s : s + n]."""
    for k in range(n):
        dst[u(d + k)] += a * src[u(s + k)]


@njit(cache=True)
def _axpy4(
    dst: np.ndarray,
    d: int,
    n: int,
    src: np.ndarray,
    s0: int,
    s1: int,
    s2: int,
    s3: int,
    a0: float,
    a1: float,
    a2: float,
    a3: float,
) -> None:
    """dst[d : d + n] += sum of a_t * src[s_t : s_t + n] over four taps."""
    for k in range(n):
        dst[u(d + k)] += (
            a0 * src[u(s0 + k)]
            + a1 * src[u(s1 + k)]
            + a2 * src[u(s2 + k)]
            + a3 * src[u(s3 + k)]
        )


@njit(cache=True)
def _axpy4x4(
    dst: np.ndarray,
    d: int,
    d_stride: int,
    n: int,
    src: np.ndarray,
    offsets: np.ndarray,
    t: int,
    coef: np.ndarray,
    c: int,
    c_stride: int,
) -> None:
    """Four outputs p, four taps q: dst[d + p*d_stride :][:n] += coef[c + p*c_stride + q] *
    src[offsets[t + q] :][:n]. Each loaded input vector feeds four outputs, so the loop does
    16 multiply-adds per 8 loads and 4 stores."""
    s0, s1, s2, s3 = offsets[t], offsets[t + 1], offsets[t + 2], offsets[t + 3]
    d0, d1, d2, d3 = d, d + d_stride, d + 2 * d_stride, d + 3 * d_stride
    c0, c1, c2, c3 = c, c + c_stride, c + 2 * c_stride, c + 3 * c_stride
    a00, a01, a02, a03 = coef[c0], coef[c0 + 1], coef[c0 + 2], coef[c0 + 3]
    a10, a11, a12, a13 = coef[c1], coef[c1 + 1], coef[c1 + 2], coef[c1 + 3]
    a20, a21, a22, a23 = coef[c2], coef[c2 + 1], coef[c2 + 2], coef[c2 + 3]
    a30, a31, a32, a33 = coef[c3], coef[c3 + 1], coef[c3 + 2], coef[c3 + 3]
    for k in range(n):
        x0, x1 = src[u(s0 + k)], src[u(s1 + k)]
        x2, x3 = src[u(s2 + k)], src[u(s3 + k)]
        dst[u(d0 + k)] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
        dst[u(d1 + k)] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
        dst[u(d2 + k)] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
        dst[u(d3 + k)] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3


@njit(cache=True)
def _accumulate_taps(
    dst: np.ndarray,
    d: int,
    d_stride: int,
    outs: int,
    n: int,
    src: np.ndarray,
    offsets: np.ndarray,
    t0: int,
    t1: int,
    coef: np.ndarray,
    c: int,
    c_stride: int,
) -> None:
    """For outputs p < outs: dst[d + p*d_stride :][:n] += sum over taps t in [t0, t1) of
    coef[c + p*c_stride + t] * src[offsets[t] :][:n]. Blocks of four outputs by four taps, then
    four taps per pass for the leftover outputs, then single taps (the loops are bound by loads
    and stores, so the blocks decide the speed)."""
    p = 0
    while p + 4 <= outs:
        t = t0
        while t + 4 <= t1:
            _axpy4x4(dst, d + p * d_stride, d_stride, n, src, offsets, t, coef,
                     c + p * c_stride + t, c_stride)
            t += 4
        _single_taps(dst, d, d_stride, p, p + 4, n, src, offsets, t, t1, coef, c, c_stride)
        p += 4
    for q in range(p, outs):
        dq, cq = d + q * d_stride, c + q * c_stride
        t = t0
        while t + 4 <= t1:
            s0, s1, s2, s3 = offsets[t], offsets[t + 1], offsets[t + 2], offsets[t + 3]
            a0, a1, a2, a3 = coef[cq + t], coef[cq + t + 1], coef[cq + t + 2], coef[cq + t + 3]
            _axpy4(dst, dq, n, src, s0, s1, s2, s3, a0, a1, a2, a3)
            t += 4
        _single_taps(dst, d, d_stride, q, q + 1, n, src, offsets, t, t1, coef, c, c_stride)


@njit(cache=True)
def _single_taps(dst: np.ndarray, d: int, d_stride: int, p0: int, p1: int, n: int,
                 src: np.ndarray, offsets: np.ndarray, t0: int, t1: int, coef: np.ndarray,
                 c: int, c_stride: int) -> None:
    """`_accumulate_taps` for outputs p0 .. p1 and taps t0 .. t1, one (output, tap) at a time."""
    for q in range(p0, p1):
        for r in range(t0, t1):
            _axpy(dst, d + q * d_stride, n, src, offsets[r], coef[c + q * c_stride + r])


@njit(cache=True, fastmath={"reassoc"})
def _dot(a: np.ndarray, i: int, b: np.ndarray, j: int, n: int) -> float:
    """sum(a[i : i + n] * b[j : j + n]). Reassociation (only) lets LLVM keep one partial sum per
    vector lane: the result differs from a sequential sum by rounding and is the same on every
    run. The same holds for `_dot4x4`."""
    s = a.dtype.type(0)
    for k in range(n):
        s += a[u(i + k)] * b[u(j + k)]
    return s


@njit(cache=True, fastmath={"reassoc"})
def _dot4x4(
    a: np.ndarray, i: int, i_stride: int, b: np.ndarray, offsets: np.ndarray, t: int, n: int
) -> tuple:
    """The 16 dot products of a[i + p*i_stride :][:n] (p < 4) with b[offsets[t + q] :][:n]
    (q < 4), row-major in (p, q): four loads of each side feed 16 multiply-adds."""
    i0, i1, i2, i3 = i, i + i_stride, i + 2 * i_stride, i + 3 * i_stride
    j0, j1, j2, j3 = offsets[t], offsets[t + 1], offsets[t + 2], offsets[t + 3]
    z = a.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    for k in range(n):
        a0, a1, a2, a3 = a[u(i0 + k)], a[u(i1 + k)], a[u(i2 + k)], a[u(i3 + k)]
        b0, b1, b2, b3 = b[u(j0 + k)], b[u(j1 + k)], b[u(j2 + k)], b[u(j3 + k)]
        s00 += a0 * b0
        s01 += a0 * b1
        s02 += a0 * b2
        s03 += a0 * b3
        s10 += a1 * b0
        s11 += a1 * b1
        s12 += a1 * b2
        s13 += a1 * b3
        s20 += a2 * b0
        s21 += a2 * b1
        s22 += a2 * b2
        s23 += a2 * b3
        s30 += a3 * b0
        s31 += a3 * b1
        s32 += a3 * b2
        s33 += a3 * b3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


# --- tap tables ------------------------------------------------------------------------------


@njit(cache=True)
def _input_taps(
    cg: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pitch: int, phase_len: int
) -> np.ndarray:
    """For tap t = (c*kH + i)*kW + j: where in `_load_input`'s buffer it reads for output
    position 0 (the phase of channel c it falls in, plus its row/column shift)."""
    offsets = np.empty(cg * kh * kw, np.int64)
    for c in range(cg):
        for i in range(kh):
            for j in range(kw):
                phase = (c * sh + i * dh % sh) * sw + j * dw % sw
                shift = (i * dh // sh) * pitch + j * dw // sw
                offsets[(c * kh + i) * kw + j] = phase * phase_len + shift
    return offsets


@njit(cache=True)
def _output_taps(
    og: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pitch: int, phase_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """grad_input's taps (o, i, j) sorted by the stride phase p = a*sW + b of the input they
    reach: taps start[p]:start[p + 1]; for each, where it reads in the zero-padded grad_out
    buffer (channel o at o*phase_len, plus the shift), o, and the kernel position i*kW + j."""
    oi_max, oj_max = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    start = np.zeros(sh * sw + 1, np.int64)
    for i in range(kh):
        for j in range(kw):
            start[(i * dh % sh) * sw + j * dw % sw + 1] += og
    start = np.cumsum(start)
    fill = start[:-1].copy()
    n = og * kh * kw
    offsets, outs, kpos = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    for i in range(kh):
        for j in range(kw):
            p = (i * dh % sh) * sw + j * dw % sw
            for o in range(og):
                t = fill[p]
                fill[p] += 1
                shift = (oi_max - i * dh // sh) * pitch + oj_max - j * dw // sw
                offsets[t], outs[t], kpos[t] = o * phase_len + shift, o, i * kw + j
    return start, offsets, outs, kpos


@njit(cache=True)
def _column_masks(wd: int, dw: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(left, right): `rows` rows `wd` wide, left 0 on a row's first `dw` columns and right on
    its last `dw` (where a tap of kernel column 0 or 2 leaves the row), 1 elsewhere."""
    col = np.arange(rows * wd) % wd
    return (col >= dw).astype(np.uint8), (col < wd - dw).astype(np.uint8)


@njit(cache=True)
def in_place_plane(h: int, wd: int, dh: int, dw: int, pad: int
                   ) -> tuple[np.ndarray, tuple[int, int], int]:
    """What `plane_taps` needs to know of an h x wd plane (masks, rows, first): its column
    masks (rows left, inside and right of the plane and `pad` pixels past it, 0 there; left
    and right as `_column_masks`), the pixels from which kernel row 0 reaches the image and
    up to which row 2 does, and how far before an output pixel its first tap reads."""
    plane = h * wd
    masks = np.zeros((3, plane + pad), np.uint8)
    masks[0, :plane], masks[2, :plane] = _column_masks(wd, dw, h)
    masks[1, :plane] = 1
    return masks, (dh * wd, (h - dh) * wd), dh * wd + dw


@njit(cache=True)
def _in_place_taps(cg: int, dh: int, dw: int, wd: int, plane: int) -> np.ndarray:
    """The 3x3 forward's taps read in place (read="stream"), ordered by kernel position q =
    i*3 + j, then input channel c (t = q*cg + c), so that the taps of one position are one
    range: where each reads in x for an output pixel k, as an offset from the group's first
    plane plus k - (dH*W + dW)."""
    offsets = np.empty(cg * 9, np.int64)
    for q in range(9):
        for c in range(cg):
            offsets[q * cg + c] = c * plane + q // 3 * dh * wd + q % 3 * dw
    return offsets


@njit(cache=True)
def _weight_blocks(w: np.ndarray) -> np.ndarray:
    """3x3 weights (C_out, cg, 3, 3) in `plane_taps`' order, flat: per block of four output
    channels, per block of four input channels, the 144 weights (o % 4, q, c % 4) in a row."""
    c_out, cg = w.shape[0], w.shape[1]
    blocks = cg // 4
    out = np.empty(w.size, w.dtype)
    for o in range(c_out):
        for c in range(cg):
            at = (o // 4 * blocks + c // 4) * 144 + o % 4 * 36 + c % 4
            for q in range(9):
                out[at + 4 * q] = w[o, c, q // 3, q % 3]
    return out


# --- the kernels -----------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    y: np.ndarray,
    conv: ConvArgs,
) -> None:
    """y = conv(x, w) + bias; one task per run of (group, block) units (see `_segments`),
    output channels four at a time.

    Args:
        x: input (N, C_in, H, W), contiguous.
        w: weights (C_out, C_in / groups, kH, kW), contiguous.
        bias: (C_out,).
        y: output (N, C_out, H_out, W_out), written.
        conv: stride, padding, dilation and groups.
    """
    (sh, sw), (ph, pw), (dh, dw), groups = conv.stride, conv.padding, conv.dilation, conv.groups
    zero, one = ints(0, 1)
    n_img = x.shape[0]
    c_out, cg, kh, kw = w.shape
    out_h, out_w = y.shape[2], y.shape[3]
    og, n_taps = c_out // groups, cg * kh * kw
    oi_max, oj_max = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    pitch = out_w + oj_max
    seg_rows, segs = _segments(out_h, oi_max, pitch, 4 + cg * sh * sw, x.itemsize)
    per_img = -(-out_h // seg_rows)
    items = n_img * per_img  # (image, row block) segments, `segs` of them per block
    blocks = -(-items // segs)
    units = groups * blocks
    tasks = min(units, _TASKS)
    seg_len = (seg_rows + oi_max) * pitch  # a segment's output rows and the halo after them
    phase_len = segs * seg_len + pitch  # plus one spare row for the tail overrun
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    offsets = _input_taps(cg, kh, kw, sh, sw, dh, dw, pitch, phase_len)
    for t in prange(tasks):
        xbuf = np.empty(cg * sh * sw * phase_len, x.dtype)
        ybuf = np.empty(4 * segs * seg_len, x.dtype)
        for unit in range(t * units // tasks, (t + 1) * units // tasks):
            g, first = unit % groups, unit // groups * segs
            last = min(items, first + segs)
            size = _load_block(xf, x.shape, g * cg, cg, first, last, per_img, seg_rows, seg_len,
                               out_h, oi_max, sh, sw, ph, pw, pitch, xbuf, phase_len)
            for o0 in range(g * og, (g + 1) * og, 4):
                outs = min(4, (g + 1) * og - o0)
                for p in range(outs):
                    fill(ybuf, p * size, size, bias[o0 + p])
                _accumulate_taps(ybuf, zero, size, outs, size, xbuf, offsets, zero, n_taps, wf,
                                 o0 * n_taps, n_taps)
                for item in range(first, last):
                    n, r0 = item // per_img, item % per_img * seg_rows
                    rows = min(seg_rows, out_h - r0)
                    for p in range(outs):
                        plane = (n * c_out + o0 + p) * out_h * out_w
                        _store_plane(
                            ybuf, p * size + (item - first) * seg_len, zero, rows, pitch, out_w, yf,
                            plane, out_h, out_w, r0, one, zero, one,
                        )  # fmt: skip


@njit(parallel=True, cache=True)
def _forward_in_place(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    y: np.ndarray,
    conv: ConvArgs,
    bypass: bool,
) -> None:
    """y = conv(x, w) + bias for read="stream" (`reads_in_place`: 3x3, stride 1, padding =
    dilation, whole blocks of four channels on both sides), x read in place; one task per
    (image, group, block of four output channels), each output vector summed in registers over
    all nine kernel positions of four input channels at a time (`plane_taps`, masked loads
    where a tap leaves the image).

    Args:
        x: input (N, C_in, H, W), contiguous.
        w: weights (C_out, C_in / groups, 3, 3), contiguous, finite (a tap on the padding is
            dropped, not multiplied by zero).
        bias: (C_out,).
        y: output (N, C_out, H, W), written.
        conv: stride, padding, dilation and groups.
        bypass: write y past the caches (`bypasses_caches`; needs four input channels per
            group, so that each output is stored once).
    """
    (dh, dw), groups = conv.dilation, conv.groups
    n_img, c_in, h, wd = x.shape
    c_out, cg = w.shape[0], w.shape[1]
    og, plane = c_out // groups, h * wd
    offsets, coef = _in_place_taps(cg, dh, dw, wd, plane), _weight_blocks(w)
    masks, rows, first = in_place_plane(h, wd, dh, dw, STREAM_STEP * VECTOR_BYTES // x.itemsize)
    blocks = og // 4
    units = n_img * groups * blocks
    xf, yf = x.reshape(-1), y.reshape(-1)
    for unit in prange(units):
        plane_group = unit // blocks  # img * groups + g
        img, g, b = plane_group // groups, plane_group % groups, unit % blocks
        o0 = g * og + 4 * b
        xb, yb = (img * c_in + g * cg) * plane, (img * c_out + o0) * plane
        for e in range(0, cg, 4):
            _four_plane_taps(yf, yb, plane, xf, xb - first, offsets, e, cg, coef,
                             (o0 // 4 * cg + e) * 36, masks, rows, e > 0, bias, o0,
                             bypass and cg == 4)


@njit(parallel=True, cache=True)
def _grad_input(
    gy: np.ndarray,
    w: np.ndarray,
    gx: np.ndarray,
    conv: ConvArgs,
) -> None:
    """gx = conv^T(gy, w). Per stride phase (a, b) of the padded input, gx is a stride-1
    correlation of zero-padded gy with the taps of that phase; rows/cols of the phase grid
    that fall in the padding are skipped. Blocks as in `forward`, input channels four at a
    time.

    Args:
        gy: grad_out (N, C_out, H_out, W_out), contiguous.
        w: weights (C_out, C_in / groups, kH, kW), contiguous.
        gx: grad_input (N, C_in, H, W), written.
        conv: stride, padding, dilation and groups.
    """
    (sh, sw), (ph, pw), (dh, dw), groups = conv.stride, conv.padding, conv.dilation, conv.groups
    zero, one = ints(0, 1)
    n_img, c_in, h, wd = gx.shape
    c_out, cg, kh, kw = w.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    og = c_out // groups
    oi_max, oj_max = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    u_lo, u_hi = ph // sh, (ph + h - 1) // sh + 1  # phase rows holding input rows
    v_lo, v_hi = pw // sw, (pw + wd - 1) // sw + 1
    pitch = v_hi - v_lo + oj_max
    seg_rows, segs = _segments(u_hi - u_lo, oi_max, pitch, og + 4 * sw, gy.itemsize)
    per_img = -(-(u_hi - u_lo) // seg_rows)
    items = n_img * per_img
    blocks = -(-items // segs)
    units = groups * blocks
    tasks = min(units, _TASKS)
    seg_len = (seg_rows + oi_max) * pitch
    gx_len = segs * seg_len
    gy_len = gx_len + pitch
    gyf, wf, gxf = gy.reshape(-1), w.reshape(-1), gx.reshape(-1)
    start, offsets, outs, kpos = _output_taps(og, kh, kw, sh, sw, dh, dw, pitch, gy_len)
    for t in prange(tasks):
        gybuf = np.empty(og * gy_len, gy.dtype)
        gxbuf = np.empty(4 * sw * gx_len, gy.dtype)
        coef = np.empty(4 * og * kh * kw, gy.dtype)
        for unit in range(t * units // tasks, (t + 1) * units // tasks):
            g, first = unit % groups, unit // groups * segs
            last = min(items, first + segs)
            size = 0
            for item in range(first, last):
                n, u0 = item // per_img, u_lo + item % per_img * seg_rows
                rows = min(seg_rows, u_hi - u0)
                at = (item - first) * seg_len
                for o in range(og):
                    plane = (n * c_out + g * og + o) * out_h * out_w
                    _load_plane(
                        gyf, plane, out_h, out_w, u0 - oi_max, one, v_lo - oj_max, one, gybuf,
                        o * gy_len + at, zero, rows + oi_max + 1, pitch,
                    )  # fmt: skip
                size = at + rows * pitch
            for a in range(sh):
                for c0 in range(0, cg, 4):
                    chans = min(4, cg - c0)
                    for b in range(sw):
                        t0, t1 = start[a * sw + b], start[a * sw + b + 1]
                        for p in range(chans):  # w[g*og + o, c0 + p, i, j] of each tap (o, i, j)
                            for k in range(t0, t1):
                                wi = ((g * og + outs[k]) * cg + c0 + p) * kh * kw + kpos[k]
                                coef[p * (t1 - t0) + k - t0] = wf[wi]
                        for p in range(chans):
                            fill(gxbuf, (p * sw + b) * gx_len, size, 0)
                        _accumulate_taps(gxbuf, b * gx_len, sw * gx_len, chans, size, gybuf,
                                         offsets, t0, t1, coef, -t0, t1 - t0)
                    for item in range(first, last):
                        n, u0 = item // per_img, u_lo + item % per_img * seg_rows
                        rows = min(seg_rows, u_hi - u0)
                        row0, col0 = u0 * sh + a - ph, v_lo * sw - pw
                        for p in range(chans):
                            plane = (n * c_in + g * cg + c0 + p) * h * wd
                            _store_plane(
                                gxbuf, p * sw * gx_len + (item - first) * seg_len, gx_len, rows,
                                pitch, v_hi - v_lo, gxf, plane, h, wd, row0, sh, col0, sw,
                            )  # fmt: skip


@njit(parallel=True, cache=True)
def _grad_weight(
    x: np.ndarray,
    gy: np.ndarray,
    gw: np.ndarray,
    conv: ConvArgs,
) -> None:
    """gw = sum over images and pixels of gy * shifted x, deterministically: task (group,
    chunk of blocks) owns its partial sums, which are added in chunk order at the end.
    Blocks as in `forward`; four output channels by four taps share their loads.

    Args:
        x: input (N, C_in, H, W), contiguous.
        gy: grad_out (N, C_out, H_out, W_out), contiguous.
        gw: grad_weight (C_out, C_in / groups, kH, kW), written.
        conv: stride, padding, dilation and groups.
    """
    (sh, sw), (ph, pw), (dh, dw), groups = conv.stride, conv.padding, conv.dilation, conv.groups
    zero, one = ints(0, 1)
    n_img = x.shape[0]
    c_out, cg, kh, kw = gw.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    og, n_taps = c_out // groups, cg * kh * kw
    oi_max, oj_max = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    pitch = out_w + oj_max
    seg_rows, segs = _segments(out_h, oi_max, pitch, 4 + cg * sh * sw, x.itemsize)
    per_img = -(-out_h // seg_rows)
    items = n_img * per_img
    blocks = -(-items // segs)
    chunks = min(blocks, max(1, _GRAD_WEIGHT_TASKS // groups))
    seg_len = (seg_rows + oi_max) * pitch
    gy_len = segs * seg_len
    phase_len = gy_len + pitch
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    offsets = _input_taps(cg, kh, kw, sh, sw, dh, dw, pitch, phase_len)
    partial = np.zeros((groups * chunks, og, n_taps), x.dtype)
    for t in prange(groups * chunks):
        g, k = t // chunks, t % chunks
        xbuf = np.empty(cg * sh * sw * phase_len, x.dtype)
        gybuf = np.empty(4 * gy_len, x.dtype)
        acc = partial[t]
        for blk in range(k * blocks // chunks, (k + 1) * blocks // chunks):
            first, last = blk * segs, min(items, (blk + 1) * segs)
            size = _load_block(xf, x.shape, g * cg, cg, first, last, per_img, seg_rows, seg_len,
                               out_h, oi_max, sh, sw, ph, pw, pitch, xbuf, phase_len)
            for o0 in range(0, og, 4):
                outs = min(4, og - o0)
                for item in range(first, last):
                    # grad_out rows, and zeros in the halo rows between stacked images
                    n, r0 = item // per_img, item % per_img * seg_rows
                    rows = min(seg_rows, out_h - r0) + (oi_max if item < last - 1 else 0)
                    at = (item - first) * seg_len
                    for p in range(outs):
                        plane = (n * c_out + g * og + o0 + p) * out_h * out_w
                        b = p * size + at
                        _load_plane(
                            gyf,
                            plane,
                            out_h,
                            out_w,
                            r0,
                            one,
                            zero,
                            one,
                            gybuf,
                            b,
                            zero,
                            rows,
                            pitch,
                        )
                tap = 0
                if outs == 4:
                    while tap + 4 <= n_taps:
                        s = _dot4x4(gybuf, zero, size, xbuf, offsets, tap, size)
                        for p in range(4):
                            for q in range(4):
                                acc[o0 + p, tap + q] += s[4 * p + q]
                        tap += 4
                for p in range(outs):
                    for q in range(tap, n_taps):
                        acc[o0 + p, q] += _dot(gybuf, p * size, xbuf, offsets[q], size)
    gw2 = gw.reshape(c_out, n_taps)
    for g in range(groups):
        gw2[g * og : (g + 1) * og] = partial[g * chunks]
        for k in range(1, chunks):
            gw2[g * og : (g + 1) * og] += partial[g * chunks + k]


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
            geometry: Conv2dGeometry, read: str = "buffers") -> None:
    """y = conv(x, w) + bias."""
    bias = np.zeros(geometry.out_channels, y.dtype) if bias is None else bias
    # "stream" drops the taps on the padding, where the definition multiplies them: 0 x NaN
    if read == "stream" and np.isfinite(w).all():
        _forward_in_place(x, w, bias, y, geometry.args, bypasses_caches(y))
    else:
        _forward(x, w, bias, y, geometry.args)


def grad_input(gy: np.ndarray, w: np.ndarray, gx: np.ndarray, geometry: Conv2dGeometry,
               read: str = "buffers") -> None:
    """gx: the adjoint of the forward in x; with read="stream", the forward convolution of gy
    with the transposed, flipped weights (`Conv2dGeometry.transposed`) read in place."""
    if read == "stream":
        flipped = np.ascontiguousarray(geometry.transposed_weights(w))
        forward(gy, flipped, None, gx, geometry.transposed(), read)
    else:
        _grad_input(gy, w, gx, geometry.args)


def grad_weight(x: np.ndarray, gy: np.ndarray, gw: np.ndarray, geometry: Conv2dGeometry
                ) -> None:
    """gw: the adjoint of the forward in w, deterministic."""
    _grad_weight(x, gy, gw, geometry.args)


def streams(g: Conv2dGeometry) -> bool:
    """Whether a 3x3 convolution can be read in place ("stream", here and in `depthwise`): at
    stride 1 with padding = dilation (the output as large as the input, and so is grad_input's),
    on images larger than the padding on both sides."""
    (h, wd), (dh, dw) = g.input_hw, g.dilation
    return (g.kernel_hw == (3, 3) and g.unit_stride and g.padding == g.dilation
            and h > 2 * dh and wd > 2 * dw)


def bypasses_caches(y: np.ndarray) -> bool:
    """Whether the in-place forward writes y past the caches (non-temporal stores): y is
    larger than the last-level cache, so the next layer would read it from memory anyway, and
    each of its planes starts on a vector (`memory.empty_aligned` outputs do). Then no output
    line is read from memory before it is written: a third of the traffic at batch 32."""
    plane = y.shape[2] * y.shape[3] * y.itemsize
    return (y.nbytes > memory.last_level_cache_bytes() and plane % VECTOR_BYTES == 0
            and y.ctypes.data % VECTOR_BYTES == 0)


def reads_in_place(g: Conv2dGeometry) -> bool:
    """Whether the direct kernel can read x in place (read="stream"): `streams`, in whole blocks
    of four input and four output channels (`plane_taps`; grad_input swaps them)."""
    return streams(g) and g.in_per_group % 4 == 0 and g.out_per_group % 4 == 0


def _space(pass_: Pass, g: Conv2dGeometry) -> dict[str, tuple[str, ...]]:
    if pass_ == "grad_weight" or not reads_in_place(g):
        return {}
    return {"read": ("stream", "buffers")}


ALGORITHM = ConvAlgorithm(
    "direct",
    {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight},
    "one pass over the input per (image, group, block of rows), four output channels by four "
    "taps per inner loop",
    space=_space,
    nonfinite_exact=frozenset({"forward"}),  # grad_input and grad_weight read zero padding
)
