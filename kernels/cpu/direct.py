"""Direct grouped-convolution kernels for few channels per group (and depthwise).

With a handful of channels per group a convolution does ~9 FLOP per byte it must move, so it
is memory-bound: the job is to read x and write y once and keep the vector units busy in
between. Each parallel task takes one (image, group, block of output rows). It copies the
input rows the block needs into a zero-padded scratch buffer whose rows all have the same
pitch, split into stride phases (``buf[a, b][u, v] = x_padded[u*sH + a, v*sW + b]``). In that
layout every kernel tap is a plain shift, so the whole block is one long contiguous loop per
output channel and tap:

    ybuf[:] += w[o, c, i, j] * xbuf[c, phase(i, j)][shift(i, j) :]

done four taps per pass over ybuf (the loop is bound by loads and stores, not arithmetic).
The few columns past the image edge (the ``pitch - W_out`` tail of every row) are computed
and dropped, which costs a few percent and removes every bounds check from the inner loop.
grad_input is the same loop with x and y swapped: per stride phase of the input, a
correlation of a zero-padded copy of grad_out with that phase's taps. grad_weight replaces
the update by dot products.

Implementation notes. Helpers work on flat 1-D arrays with explicit offsets and index them
with unsigned integers (`_u`): Numba then emits no negative-index wraparound, so the loops
vectorise, and no array views (whose reference counting costs more than copying a short
row) are created per row. Every offset is in range by construction. The helpers are inlined
into the kernels (`inline="always"`): a call between Numba functions costs about as much as
moving a 56-pixel row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Scratch per task (input and output blocks) is sized to stay in the per-core L2 cache.
_BLOCK_BYTES = 128 * 1024
# forward/grad_input hand out their (image, group, row block) units in about this many
# tasks, each allocating its scratch once.
_TASKS = 256
# grad_weight: the number of partial sums per group is chosen from the shape only, so the
# fixed-order reduction gives bitwise the same result whatever the thread count.
_GRAD_WEIGHT_TASKS = 16


@njit(cache=True, inline="always")
def _u(i: int) -> int:
    """i as an unsigned array index (no wraparound check; i >= 0 is guaranteed)."""
    return np.uint64(i)


@njit(cache=True, inline="always")
def valid_cols(offset: int, stride: int, width: int, count: int) -> tuple[int, int]:
    """Indices q in [lo, hi) within [0, count) whose column q*stride + offset lies in [0, width)."""
    lo = max(0, (stride - 1 - offset) // stride)
    hi = min(count, (width - offset + stride - 1) // stride)
    return lo, max(lo, hi)


@njit(cache=True)
def _block_rows(total_rows: int, pitch: int, buffers: int, itemsize: int) -> int:
    """Rows per block so that `buffers` scratch rows of `pitch` elements fit _BLOCK_BYTES."""
    return max(1, min(total_rows, _BLOCK_BYTES // (buffers * pitch * itemsize)))


# --- moving rows between images and scratch buffers ------------------------------------------


@njit(cache=True, inline="always")
def _fill(dst: np.ndarray, d: int, n: int, value: float) -> None:
    for k in range(n):
        dst[_u(d + k)] = value


@njit(cache=True, inline="always")
def _move(
    dst: np.ndarray, d: int, d_step: int, src: np.ndarray, s: int, s_step: int, n: int
) -> None:
    """dst[d + k*d_step] = src[s + k*s_step] for k < n."""
    if d_step == 1 and s_step == 1:  # the contiguous case in a loop of its own, so it vectorises
        for k in range(n):
            dst[_u(d + k)] = src[_u(s + k)]
    else:
        for k in range(n):
            dst[_u(d + k * d_step)] = src[_u(s + k * s_step)]


@njit(cache=True, inline="always")
def _move_pair(
    buf: np.ndarray, b0: int, b1: int, img: np.ndarray, i: int, n: int, load: bool
) -> None:
    """buf[b0 + k], buf[b1 + k] <-> img[i + 2k], img[i + 2k + 1] (both stride-2 phases in one
    pass: vector shuffles, where moving one strided phase alone compiles to slow gathers)."""
    if load:
        for k in range(n):
            buf[_u(b0 + k)] = img[_u(i + 2 * k)]
            buf[_u(b1 + k)] = img[_u(i + 2 * k + 1)]
    else:
        for k in range(n):
            img[_u(i + 2 * k)] = buf[_u(b0 + k)]
            img[_u(i + 2 * k + 1)] = buf[_u(b1 + k)]


@njit(cache=True, inline="always")
def _move_cols(
    buf: np.ndarray, b: int, img: np.ndarray, i: int, step: int, n: int, load: bool
) -> None:
    """buf[b + k] <-> img[i + k*step] for k < n (load: into buf)."""
    if load:
        _move(buf, b, 1, img, i, step, n)
    else:
        _move(img, i, step, buf, b, 1, n)


@njit(cache=True, inline="always")
def _col_ranges(
    col0: int, step: int, width: int, count: int
) -> tuple[int, int, int, int, int, int]:
    """Phase columns v < count inside a row of `width` (pixel col0 + v*step + b): [lo0, hi0)
    for phase 0, [lo1, hi1) for phase 1, and [mid_lo, mid_hi) where both are inside."""
    lo0, hi0 = valid_cols(col0, step, width, count)
    lo1, hi1 = valid_cols(col0 + 1, step, width, count)
    mid_lo = max(lo0, lo1)
    return lo0, hi0, lo1, hi1, mid_lo, max(mid_lo, min(hi0, hi1))


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
    ranges: tuple[int, int, int, int, int, int],
    load: bool,
) -> None:
    """Move one image row (pixel col0 at img[i]) to or from its `step` column phases
    buf[b + p*phase_len + v] <-> img[i + v*step + p], for the v < count inside the row;
    `ranges` is `_col_ranges(col0, step, width, count)`."""
    lo0, hi0, lo1, hi1, mid_lo, mid_hi = ranges
    if step == 1:
        _move_cols(buf, b + lo0, img, i + lo0, 1, hi0 - lo0, load)
    elif step == 2:  # both phases together in [mid_lo, mid_hi), the 0-2 edge pixels apart
        for p, lo, hi in ((0, lo0, hi0), (1, lo1, hi1)):
            bp, ip = b + p * phase_len, i + p
            _move_cols(buf, bp + lo, img, ip + 2 * lo, 2, min(hi, mid_lo) - lo, load)
            v = max(lo, mid_hi)
            _move_cols(buf, bp + v, img, ip + 2 * v, 2, hi - v, load)
        n = mid_hi - mid_lo
        _move_pair(buf, b + mid_lo, b + phase_len + mid_lo, img, i + 2 * mid_lo, n, load)
    else:
        for p in range(step):
            lo, hi = valid_cols(col0 + p, step, width, count)
            _move_cols(buf, b + p * phase_len + lo, img, i + p + lo * step, step, hi - lo, load)


@njit(cache=True, inline="always")
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
    ranges = _col_ranges(col0, col_step, width, pitch)
    for rr in range(rows):
        base = b + rr * pitch
        for p in range(col_step):
            _fill(buf, base + p * phase_len, pitch, 0)
        ih = row0 + rr * row_step
        if 0 <= ih < h:
            i = plane + ih * width + col0
            _row_phases(img, i, buf, base, phase_len, col0, col_step, width, pitch, ranges, True)


@njit(cache=True, inline="always")
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
    ranges = _col_ranges(col0, col_step, width, count)
    for rr in range(rows):
        ih = row0 + rr * row_step
        if 0 <= ih < h:
            i = plane + ih * width + col0
            base = b + rr * pitch
            _row_phases(img, i, buf, base, phase_len, col0, col_step, width, count, ranges, False)


@njit(cache=True, inline="always")
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
) -> None:
    """Phase k = (c*sH + a)*sW + b of xbuf (rows*pitch elements each) = rows r0.. of stride
    phase (a, b) of zero-padded x[n, c0 + c] (x flat in xf)."""
    _, c_in, h, wd = x_shape
    phase_len = rows * pitch
    for c in range(cg):
        plane = ((n * c_in) + c0 + c) * h * wd
        for a in range(sh):
            k = (c * sh + a) * sw
            row0 = r0 * sh + a - ph
            _load_plane(
                xf, plane, h, wd, row0, sh, -pw, sw, xbuf, k * phase_len, phase_len, rows, pitch
            )


# --- the vectorised inner loops ------------------------------------------------------------


@njit(cache=True, inline="always")
def _axpy(dst: np.ndarray, d: int, n: int, src: np.ndarray, s: int, a: float) -> None:
    """dst[d : d + n] += a * src[s : s + n]."""
    for k in range(n):
        dst[_u(d + k)] += a * src[_u(s + k)]


@njit(cache=True, inline="always")
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
        dst[_u(d + k)] += (
            a0 * src[_u(s0 + k)]
            + a1 * src[_u(s1 + k)]
            + a2 * src[_u(s2 + k)]
            + a3 * src[_u(s3 + k)]
        )


@njit(cache=True, inline="always")
def _accumulate_taps(
    dst: np.ndarray,
    d: int,
    n: int,
    src: np.ndarray,
    offsets: np.ndarray,
    coef: np.ndarray,
    c: int,
    t0: int,
    t1: int,
) -> None:
    """dst[d : d + n] += sum over taps t in [t0, t1) of coef[c + t - t0] * src[offsets[t] :][:n],
    four taps per pass over dst, which halves the passes (loads and stores bound this loop)."""
    t = t0
    while t + 4 <= t1:
        s0, s1, s2, s3 = offsets[t], offsets[t + 1], offsets[t + 2], offsets[t + 3]
        a0, a1, a2, a3 = (
            coef[c + t - t0],
            coef[c + t + 1 - t0],
            coef[c + t + 2 - t0],
            coef[c + t + 3 - t0],
        )
        _axpy4(dst, d, n, src, s0, s1, s2, s3, a0, a1, a2, a3)
        t += 4
    for r in range(t, t1):
        _axpy(dst, d, n, src, offsets[r], coef[c + r - t0])


@njit(cache=True, fastmath={"reassoc"})
def _dot(a: np.ndarray, i: int, b: np.ndarray, j: int, n: int) -> float:
    """sum(a[i : i + n] * b[j : j + n]). Reassociation (only) lets LLVM keep one partial sum per
    vector lane: the result differs from a sequential sum by rounding and is the same on every
    run."""
    s = a.dtype.type(0)
    for k in range(n):
        s += a[_u(i + k)] * b[_u(j + k)]
    return s


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


# --- the kernels -----------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    y: np.ndarray,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
    groups: int,
) -> None:
    """y = conv(x, w) + bias, one task per run of (image, group, output row block) units."""
    n_img = x.shape[0]
    c_out, cg, kh, kw = w.shape
    out_h, out_w = y.shape[2], y.shape[3]
    og, n_taps = c_out // groups, cg * kh * kw
    oi_max, oj_max = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    pitch = out_w + oj_max
    rb = _block_rows(out_h, pitch, 1 + cg * sh * sw, x.itemsize)
    blocks = -(-out_h // rb)
    units = n_img * groups * blocks
    tasks = min(units, _TASKS)
    x_rows = rb + oi_max + 1  # input rows per block, one spare for the tail overrun
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    offsets = _input_taps(cg, kh, kw, sh, sw, dh, dw, pitch, x_rows * pitch)
    for t in prange(tasks):
        xbuf = np.empty(cg * sh * sw * x_rows * pitch, x.dtype)
        ybuf = np.empty(rb * pitch, x.dtype)
        for unit in range(t * units // tasks, (t + 1) * units // tasks):
            n, g, r0 = unit // (groups * blocks), unit // blocks % groups, unit % blocks * rb
            rows = min(rb, out_h - r0)
            _load_input(xf, x.shape, n, g * cg, cg, r0, x_rows, sh, sw, ph, pw, pitch, xbuf)
            for o in range(g * og, (g + 1) * og):
                ybuf[:] = bias[o]
                _accumulate_taps(ybuf, 0, rows * pitch, xbuf, offsets, wf, o * n_taps, 0, n_taps)
                plane = (n * c_out + o) * out_h * out_w
                _store_plane(ybuf, 0, 0, rows, pitch, out_w, yf, plane, out_h, out_w, r0, 1, 0, 1)


@njit(parallel=True, cache=True)
def grad_input(
    gy: np.ndarray,
    w: np.ndarray,
    gx: np.ndarray,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
    groups: int,
) -> None:
    """gx = conv^T(gy, w). Per stride phase (a, b) of the padded input, gx is a stride-1
    correlation of zero-padded gy with the taps of that phase; rows/cols of the phase grid
    that fall in the padding are skipped."""
    n_img, c_in, h, wd = gx.shape
    c_out, cg, kh, kw = w.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    og = c_out // groups
    oi_max, oj_max = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    u_lo, u_hi = ph // sh, (ph + h - 1) // sh + 1  # phase rows holding input rows
    v_lo, v_hi = pw // sw, (pw + wd - 1) // sw + 1
    pitch = v_hi - v_lo + oj_max
    rb = _block_rows(u_hi - u_lo, pitch, og + sw, gy.itemsize)
    blocks = -(-(u_hi - u_lo) // rb)
    units = n_img * groups * blocks
    tasks = min(units, _TASKS)
    gy_rows = rb + oi_max + 1
    gyf, wf, gxf = gy.reshape(-1), w.reshape(-1), gx.reshape(-1)
    start, offsets, outs, kpos = _output_taps(og, kh, kw, sh, sw, dh, dw, pitch, gy_rows * pitch)
    for t in prange(tasks):
        gybuf = np.empty(og * gy_rows * pitch, gy.dtype)
        gxbuf = np.empty(sw * rb * pitch, gy.dtype)
        coef = np.empty(og * kh * kw, gy.dtype)
        for unit in range(t * units // tasks, (t + 1) * units // tasks):
            n, g = unit // (groups * blocks), unit // blocks % groups
            u0 = u_lo + unit % blocks * rb
            rows = min(rb, u_hi - u0)
            for o in range(og):
                plane = (n * c_out + g * og + o) * out_h * out_w
                row0, col0, b = u0 - oi_max, v_lo - oj_max, o * gy_rows * pitch
                _load_plane(gyf, plane, out_h, out_w, row0, 1, col0, 1, gybuf, b, 0, gy_rows, pitch)
            for a in range(sh):
                for c in range(cg):
                    for b in range(sw):
                        t0, t1 = start[a * sw + b], start[a * sw + b + 1]
                        for k in range(t0, t1):  # w[g*og + o, c, i, j] of each tap (o, i, j)
                            coef[k - t0] = wf[((g * og + outs[k]) * cg + c) * kh * kw + kpos[k]]
                        d = b * rb * pitch
                        _fill(gxbuf, d, rows * pitch, 0)
                        _accumulate_taps(gxbuf, d, rows * pitch, gybuf, offsets, coef, 0, t0, t1)
                    plane = (n * c_in + g * cg + c) * h * wd
                    row0, col0 = u0 * sh + a - ph, v_lo * sw - pw
                    _store_plane(
                        gxbuf, 0, rb * pitch, rows, pitch, v_hi - v_lo, gxf, plane, h, wd, row0,
                        sh, col0, sw,
                    )  # fmt: skip


@njit(parallel=True, cache=True)
def grad_weight(
    x: np.ndarray,
    gy: np.ndarray,
    gw: np.ndarray,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
    groups: int,
) -> None:
    """gw = sum over images and pixels of gy * shifted x, deterministically: task (group,
    chunk of row blocks) owns its partial sums, which are added in chunk order at the end."""
    n_img = x.shape[0]
    c_out, cg, kh, kw = gw.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    og, n_taps = c_out // groups, cg * kh * kw
    oi_max, oj_max = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    pitch = out_w + oj_max
    rb = _block_rows(out_h, pitch, 1 + cg * sh * sw, x.itemsize)
    blocks = -(-out_h // rb)
    items = n_img * blocks
    chunks = min(items, max(1, _GRAD_WEIGHT_TASKS // groups))
    x_rows = rb + oi_max + 1
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    offsets = _input_taps(cg, kh, kw, sh, sw, dh, dw, pitch, x_rows * pitch)
    partial = np.zeros((groups * chunks, og, n_taps), x.dtype)
    for t in prange(groups * chunks):
        g, k = t // chunks, t % chunks
        xbuf = np.empty(cg * sh * sw * x_rows * pitch, x.dtype)
        gybuf = np.empty(rb * pitch, x.dtype)
        for item in range(k * items // chunks, (k + 1) * items // chunks):
            n, r0 = item // blocks, item % blocks * rb
            rows = min(rb, out_h - r0)
            _load_input(xf, x.shape, n, g * cg, cg, r0, x_rows, sh, sw, ph, pw, pitch, xbuf)
            for o in range(og):
                plane = (n * c_out + g * og + o) * out_h * out_w
                _load_plane(gyf, plane, out_h, out_w, r0, 1, 0, 1, gybuf, 0, 0, rows, pitch)
                for tap in range(n_taps):
                    partial[t, o, tap] += _dot(gybuf, 0, xbuf, offsets[tap], rows * pitch)
    gw2 = gw.reshape(c_out, n_taps)
    for g in range(groups):
        gw2[g * og : (g + 1) * og] = partial[g * chunks]
        for k in range(1, chunks):
            gw2[g * og : (g + 1) * og] += partial[g * chunks + k]
