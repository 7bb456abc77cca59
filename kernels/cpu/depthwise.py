"""Depthwise convolution (one input channel per group), one plane at a time.

A depthwise 3x3 convolution does 9 multiply-adds per value it reads: it is memory-bound, and
the job is to read each input plane once, write each output value once, and do as little as
possible in between. Each parallel task takes a run of (image, output channel) planes. It
copies the input plane into the interior of a zero-padded buffer of its own, whose padding it
writes once (the planes are all the same size, so the padding stays zero), and every tap
(i, j) of every output pixel (r, q) is then a load at a fixed offset:

    y[r, q] = bias + sum over taps of w[i, j] * xbuf[(r + i*dH) * pitch + q + j*dW]

Strided, the buffer is split into stride phases as in the direct kernel (`direct`), so that a
tap is again a shift; only the rows some tap reads are copied (at stride 2 and dilation 2,
every other row), each asking for the row `PREFETCH_ROWS` read rows further on.

A generated loop sums `TAPS` taps (9: a 3x3 kernel in one pass) and stores each output once;
larger kernels take several passes, and a short last pass reads zero weights against a block of
zeros past the plane (zero times a value of the plane could be NaN). The direct kernel, by
contrast, fills its scratch rows, reads and writes each output four times per 3x3 kernel and
copies the result out, which costs more than the memory traffic itself. Three ways to write
the outputs (the tuning parameter `write`):

- "rows": each output row straight into y, for wide images (the loop is the row);
- "plane": the whole plane, junk columns included (`pitch - W_out` per row), in one long loop
  into a scratch plane, then copied into y: for narrow images, whose rows are a few vectors;
- "stream", the default wherever it applies (3x3 at stride 1 with padding = dilation, the
  output as large as the input: `streams`): no buffer at all. The direct
  kernel's in-place step for one output plane from one input plane
  (`intrinsics.plane_taps`) runs over the whole plane: each tap a load at its fixed offset,
  masked where the tap leaves the image (across a row's end, above the first row, below the
  last), so nothing outside the plane is read, and each output vector stored once; an output
  larger than the last-level cache is written past the caches, as the direct kernel's is.
  It saves the pass that copies each plane into a buffer, and its reads and writes run as one
  long stream per plane. It replaced a generated loop from the first pixel whose taps all
  lie in the image to the last, with the edge rows and pixels done apart: 1.1-1.5x faster on
  56 x 56 planes and 1.5-3x on 14 x 14 and 28 x 28, whose edges are a larger part.

grad_input with one output channel per group (stride 1, padding within the kernel's extent) is
the forward convolution of grad_out with the flipped kernel (`Conv2dGeometry.transposed`);
other depthwise grad_inputs are the direct kernel's. grad_weight: per plane, the TAPS dot
products of grad_out with the input at each tap's offset, one load of grad_out for all of
them; the per-plane sums are added over the images in order, so the result does not depend on
the thread count. Two ways to read the planes (the tuning parameter `read`):

- "buffers": x into its padded buffer as above, grad_out into one of the same pitch whose junk
  columns stay zero;
- "stream" (where `streams`, the default on wide images): both in place, one loop from the
  first pixel whose taps all lie in the image to the last, 0/1 masks of the columns selecting
  zero for grad_out where a tap of the first or last kernel column reads across a row's end
  (a select, not a product, so a NaN or Inf read there goes nowhere; the masks span a few
  rows, `MASK_LEN`, and stay in L1); then the first and last dH rows, and the dW pixels on
  either side of the loop, from the taps that reach the image. Copying both planes cost more
  than their dot products: two 56 x 56 buffers and the lines streaming into them do not fit
  in L1.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..geometry import Conv2dGeometry, ConvArgs
from ..selection import ConvAlgorithm, Pass
from ._numba import TASKS_PER_THREAD, one_thread_below, transfer, u
from .codegen import compile_tile
from .direct import (
    STREAM_STEP,
    _column_masks,
    _input_taps,
    _row_phases,
    bypasses_caches,
    in_place_plane,
    streams,
)
from .intrinsics import VECTOR_BYTES, plane_taps, prefetch_range

TAPS = 9
# "rows" (and grad_weight's "stream") by default from this output width on, where saving the
# plane's copy pays; on narrower images a row is a loop of a vector or two, and one long loop
# over a buffered plane is faster
ROWS_MIN_WIDTH = 32
# below this many multiply-adds a call runs on one thread, which is faster there than waking
# the others (on 2 vCPUs, a 3x3 depthwise convolution of one 144 x 56 x 56 image)
PARALLEL_MIN_MACS = 1 << 22
WRITES = ("rows", "plane", "stream")  # the `write` parameter's values; the kernel takes the index
PLANE, STREAM = WRITES.index("plane"), WRITES.index("stream")
# about this many pixels per call of grad_weight's "stream" loop (whole rows): its two masks
# stay in L1, and the 9 sums are reduced across the vector lanes once per call
MASK_LEN = 512
# Strided rows that skip the rows no tap reads (stride 2, dilation 2: every other one) are not
# a stream the hardware prefetcher follows: each read row asks for the one this many read rows
# further on (8: 16 rows of a 112-pixel plane, 7 KB ahead).
PREFETCH_ROWS = 8
_one_plane_taps = plane_taps(1, 1, STREAM_STEP)


def taps_source(taps: int) -> str:
    """Python source of the `taps`-tap loop: dst[d + k] = init (or, accumulating, dst[d + k]) +
    sum over q < taps of coef[c + q] * src[s + offsets[t + q] + k], for k < n."""
    terms = " + ".join(f"a{q} * src[np.uint64(o{q} + k)]" for q in range(taps))
    lines = ["def tile(dst, d, n, src, s, offsets, t, coef, c, init, accumulate):"]
    lines += [f"    o{q} = s + offsets[t + {q}]" for q in range(taps)]
    lines += [f"    a{q} = coef[c + {q}]" for q in range(taps)]
    lines += ["    if accumulate:",
              "        for k in range(n):",
              f"            dst[np.uint64(d + k)] += {terms}",
              "    else:",
              "        for k in range(n):",
              f"            dst[np.uint64(d + k)] = init + {terms}"]
    return "\n".join(lines)


def dots_source(taps: int) -> str:
    """Python source of the `taps` dot products sum over k < n of a[k] * b[offsets[t + q] + k]
    (q < taps), returned as a tuple: one load of `a` feeds them all."""
    lines = ["def tile(a, n, b, offsets, t):",
             "    zero = a.dtype.type(0)"]
    lines += [f"    o{q} = offsets[t + {q}]" for q in range(taps)]
    lines += [f"    s{q} = zero" for q in range(taps)]
    lines += ["    for k in range(n):",
              "        v = a[np.uint64(k)]"]
    lines += [f"        s{q} += v * b[np.uint64(o{q} + k)]" for q in range(taps)]
    lines.append(f"    return ({', '.join(f's{q}' for q in range(taps))},)")
    return "\n".join(lines)


def masked_dots_source() -> str:
    """Python source of read="stream"'s 9 dot products for a 3x3 kernel, in place: sum over
    k < n of v[k] * b[bb + offsets[q] + k] for tap q, where v[k] is a[ab + k], or 0 where the
    mask of the tap's kernel column (left: column 0, right: column 2) is 0 at m + k."""
    masked = ("vl", "v", "vr")
    lines = ["def tile(a, ab, n, b, bb, offsets, left, right, m):",
             "    zero = a.dtype.type(0)"]
    lines += [f"    o{q} = bb + offsets[{q}]" for q in range(TAPS)]
    lines += [f"    s{q} = zero" for q in range(TAPS)]
    lines += ["    for k in range(n):",
              "        v = a[np.uint64(ab + k)]",
              "        vl = v if left[np.uint64(m + k)] else zero",
              "        vr = v if right[np.uint64(m + k)] else zero"]
    lines += [f"        s{q} += {masked[q % 3]} * b[np.uint64(o{q} + k)]" for q in range(TAPS)]
    lines.append(f"    return ({', '.join(f's{q}' for q in range(TAPS))},)")
    return "\n".join(lines)


# inlined, the tiles compile with the fast-math flags of the kernel that calls them
_taps = compile_tile("depthwise.taps", taps_source(TAPS))
_dots = compile_tile("depthwise.dots", dots_source(TAPS))
_masked_dots = compile_tile("depthwise.masked_dots", masked_dots_source())


@njit(cache=True)
def _layout(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, out_h: int, out_w: int
            ) -> tuple[int, int, int]:
    """(pitch, rows, phase_len) of a plane's buffer: one block of `rows` rows of `pitch` per
    stride phase (one block at stride 1), each output row and its taps' reach."""
    pitch = out_w + (kw - 1) * dw // sw
    rows = out_h + (kh - 1) * dh // sh
    return pitch, rows, rows * pitch


@njit(cache=True)
def _tap_offsets(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pitch: int,
                 phase_len: int, pad: int) -> np.ndarray:
    """Where tap (i, j) reads for output pixel 0, the taps padded to whole passes with `pad`."""
    taps = kh * kw
    offsets = np.full(-(-taps // TAPS) * TAPS, pad, np.int64)
    offsets[:taps] = _input_taps(1, kh, kw, sh, sw, dh, dw, pitch, phase_len)
    return offsets


@njit(cache=True, inline="always")
def _load(img: np.ndarray, plane: int, h: int, width: int, sh: int, sw: int, ph: int, pw: int,
          dh: int, kh: int, buf: np.ndarray, pitch: int, rows: int, phase_len: int) -> None:
    """`_load_phases`, at stride 1 whole rows: inlined, that copy is a quarter faster."""
    if sh == 1 and sw == 1:
        for ih in range(h):
            transfer(buf, (ih + ph) * pitch + pw, img, plane + ih * width, 1, width, True)
    else:
        _load_phases(img, plane, h, width, sh, sw, ph, pw, dh, kh, buf, pitch, rows, phase_len)


@njit(cache=True)
def _load_phases(img: np.ndarray, plane: int, h: int, width: int, sh: int, sw: int, ph: int,
                 pw: int, dh: int, kh: int, buf: np.ndarray, pitch: int, rows: int,
                 phase_len: int) -> None:
    """The image plane at img[plane] (h x width) into the interior of its zero-padded, phase-split
    buffer: padded pixel (u, v) at buf[(u % sH * sW + v % sW) * phase_len + u // sH * pitch +
    v // sW]. Only the rows that some tap reads; the padding is never written."""
    read = 0  # bit a: some tap reads the rows of phase a
    for i in range(kh):
        read |= 1 << (i * dh % sh)
    skips = read != (1 << sh) - 1  # rows no tap reads: gaps in the stream of rows read
    row, a = divmod(ph, sh)  # of padded row ih + pH, counted along rather than divided out
    for ih in range(h):
        if row >= rows:
            break
        if read >> a & 1:
            if skips:  # (past the plane: the next plane's rows, which a task reads next)
                prefetch_range(img, plane + (ih + PREFETCH_ROWS * sh) * width, width)
            _row_phases(img, plane + ih * width - pw, buf, a * sw * phase_len + row * pitch,
                        phase_len, -pw, sw, width, pitch, True)
        a += 1
        if a == sh:
            a, row = 0, row + 1


@njit(cache=True, inline="always")
def _loop(h: int, wd: int, dh: int, dw: int, masks: tuple[np.ndarray, np.ndarray]
          ) -> tuple[int, int, int]:
    """(first, n, per_call) of grad_weight's "stream" loop over a plane: the first output
    pixel whose taps all reach into the image, how many pixels from there to the last, and how
    many a call covers (whole rows, so that every call starts at column dw of the masks)."""
    return dh * wd + dw, (h - 2 * dh) * wd - 2 * dw, masks[0].size - wd


@njit(cache=True)
def _edges(h: int, wd: int, dh: int, dw: int) -> tuple[np.ndarray, np.ndarray]:
    """What grad_weight's "stream" loop over a plane leaves out. (rows, ends): the first and
    last dh rows as (row, i), which see kernel rows i and i + 1 only; and the taps (pixel,
    source, tap) that reach the image from the dw pixels on either side of the loop
    (`_loop`)."""
    rows = np.empty((2 * dh, 2), np.int64)
    for r in range(dh):  # the top rows see kernel rows 1 and 2, the bottom ones 0 and 1
        rows[2 * r] = (r, 1)
        rows[2 * r + 1] = (h - dh + r, 0)
    ends, count = np.empty((2 * dw * TAPS, 3), np.int64), 0
    for row, lo in ((dh, 0), (h - dh - 1, wd - dw)):
        for q in range(lo, lo + dw):
            for t in range(TAPS):
                ih, iw = row + (t // 3 - 1) * dh, q + (t % 3 - 1) * dw
                if 0 <= ih < h and 0 <= iw < wd:
                    ends[count] = (row * wd + q, ih * wd + iw, t)
                    count += 1
    return rows, ends[:count]


@njit(parallel=True, cache=True, fastmath={"contract"})
def _forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray, y: np.ndarray, conv: ConvArgs,
             tasks: int, mode: int, bypass: bool) -> None:
    """y = depthwise conv(x, w) + bias; tasks take equal runs of (image, output channel) planes.

    Args:
        x: input (N, C_in, H, W), contiguous.
        w: weights (C_out, 1, kH, kW), contiguous.
        bias: (C_out,).
        y: output (N, C_out, H_out, W_out), written.
        conv: stride, padding, dilation and groups (= C_in).
        tasks: parallel tasks (at most the planes).
        mode: the `write` parameter, its index in WRITES (module docstring).
        bypass: "stream" writes y past the caches (`direct.bypasses_caches`).
    """
    (sh, sw), (ph, pw), (dh, dw), groups = conv.stride, conv.padding, conv.dilation, conv.groups
    n_img, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    out_h, out_w = y.shape[2], y.shape[3]
    og = c_out // groups
    pitch, rows, phase_len = _layout(kh, kw, sh, sw, dh, dw, out_h, out_w)
    zeros = sh * sw * phase_len  # where the block of zeros starts, if a pass is padded
    offsets = _tap_offsets(kh, kw, sh, sw, dh, dw, pitch, phase_len, zeros)
    zero_len = phase_len if offsets.size > kh * kw else 0
    passes = offsets.size // TAPS
    coef = np.zeros((c_out, offsets.size), w.dtype)
    coef[:, : kh * kw] = w.reshape(c_out, kh * kw)
    coef = coef.reshape(-1)
    planes = n_img * c_out
    xf, yf = x.reshape(-1), y.reshape(-1)
    in_place = _input_taps(1, kh, kw, 1, 1, dh, dw, wd, 0)  # "stream": the taps in x itself
    stream, plane = mode == STREAM, mode == PLANE
    # "stream": `plane_taps`' masks, a step past the plane (a token 1 x 1 plane for the others)
    masks, rows_in, first = (in_place_plane(h, wd, dh, dw, STREAM_STEP * VECTOR_BYTES // x.itemsize)
                             if stream else in_place_plane(1, 1, 0, 0, 0))
    for t in prange(tasks):
        xbuf = np.zeros(0 if stream else zeros + zero_len, x.dtype)
        ybuf = np.empty(out_h * pitch if plane else 0, x.dtype)
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            n, o = p // c_out, p % c_out
            xb, out, b = (n * c_in + o // og) * h * wd, p * out_h * out_w, bias[o]
            if stream:
                _one_plane_taps(yf, out, h * wd, xf, xb - first, in_place, 0, 1, coef, o * TAPS,
                                masks, rows_in, False, bias, o, bypass)
                continue
            _load(xf, xb, h, wd, sh, sw, ph, pw, dh, kh, xbuf, pitch, rows, phase_len)
            if plane:
                for q in range(passes):
                    _taps(ybuf, 0, (out_h - 1) * pitch + out_w, xbuf, 0, offsets, q * TAPS, coef,
                          (o * passes + q) * TAPS, b, q > 0)
                for r in range(out_h):
                    transfer(ybuf, r * pitch, yf, out + r * out_w, 1, out_w, False)
            else:
                for r in range(out_h):
                    for q in range(passes):
                        _taps(yf, out + r * out_w, out_w, xbuf, r * pitch, offsets, q * TAPS,
                              coef, (o * passes + q) * TAPS, b, q > 0)


@njit(cache=True, inline="always")
def _row_dots(s: np.ndarray, gyf: np.ndarray, gb: int, xf: np.ndarray, xr: int, wd: int,
              dw: int, i: int) -> None:
    """s[3i + j] += the dot products of grad_out's row at gy[gb] with the taps (i, j) of kernel
    row i on the image row at x[xr], each over the columns it reaches (q - dw, q and q + dw
    inside the row)."""
    zero = s.dtype.type(0)
    t0, t1, t2 = zero, zero, zero
    for q in range(dw, wd):
        t0 += gyf[u(gb + q)] * xf[u(xr + q - dw)]
    for q in range(wd):
        t1 += gyf[u(gb + q)] * xf[u(xr + q)]
    for q in range(wd - dw):
        t2 += gyf[u(gb + q)] * xf[u(xr + q + dw)]
    s[3 * i] += t0
    s[3 * i + 1] += t1
    s[3 * i + 2] += t2


@njit(cache=True, inline="always")
def _stream_dots(s: np.ndarray, xf: np.ndarray, xb: int, gyf: np.ndarray, gb: int, h: int,
                 wd: int, dh: int, dw: int, offsets: np.ndarray,
                 masks: tuple[np.ndarray, np.ndarray], edges: tuple[np.ndarray, np.ndarray]
                 ) -> None:
    """read="stream" on one plane, at x[xb] and gy[gb] (the output as large as the input): s =
    the 9 taps' dot products, over the loop (`_loop`) and then the `edges` (`_edges`);
    `offsets`: where each tap reads, from the pixel the first tap of output pixel 0 reads;
    `masks`: `_column_masks`, one row more than a call of the loop covers."""
    first, n, per_call = _loop(h, wd, dh, dw, masks)
    left, right = masks
    s[:] = 0
    for k in range(0, n, per_call):
        sums = _masked_dots(gyf, gb + first + k, min(per_call, n - k), xf, xb + k, offsets,
                            left, right, dw)
        for q in range(TAPS):
            s[q] += sums[q]
    rows, ends = edges
    for e in range(ends.shape[0]):
        pixel, source, t = ends[e]
        s[t] += gyf[u(gb + pixel)] * xf[u(xb + source)]
    for e in range(rows.shape[0]):
        row, top = rows[e]
        for i in range(top, top + 2):
            _row_dots(s, gyf, gb + row * wd, xf, xb + (row + (i - 1) * dh) * wd, wd, dw, i)


# reassociation (only) lets LLVM keep one partial sum per vector lane in `_dots`: the sums differ
# from sequential ones by rounding and are the same on every run
@njit(parallel=True, cache=True, fastmath={"contract", "reassoc"})
def _grad_weight(x: np.ndarray, gy: np.ndarray, partial: np.ndarray, kh: int, kw: int,
                 conv: ConvArgs, tasks: int, masks: tuple[np.ndarray, np.ndarray]) -> None:
    """partial[n, o, tap] = the grad_weight of plane (n, o).

    Args:
        x: input (N, C_in, H, W), contiguous.
        gy: grad_out (N, C_out, H_out, W_out), contiguous.
        partial: (N, C_out, kH*kW), written.
        kh, kw: the kernel's size.
        conv: stride, padding, dilation and groups (= C_in).
        tasks: parallel tasks (at most the planes).
        masks: read="stream" (module docstring): its `_column_masks`, one row more than a
            call of its dot products covers; empty: "buffers".
    """
    (sh, sw), (ph, pw), (dh, dw), groups = conv.stride, conv.padding, conv.dilation, conv.groups
    n_img, c_in, h, wd = x.shape
    c_out, out_h, out_w = gy.shape[1], gy.shape[2], gy.shape[3]
    og, n_taps = c_out // groups, kh * kw
    pitch, rows, phase_len = _layout(kh, kw, sh, sw, dh, dw, out_h, out_w)
    offsets = _tap_offsets(kh, kw, sh, sw, dh, dw, pitch, phase_len, 0)  # padded: dropped
    n = (out_h - 1) * pitch + out_w
    planes = n_img * c_out
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    in_place = _input_taps(1, kh, kw, 1, 1, dh, dw, wd, 0)
    stream = masks[0].size > 0
    edges = _edges(h, wd, dh, dw) if stream else _edges(0, 0, 0, 0)
    for t in prange(tasks):
        xbuf = np.zeros(0 if stream else sh * sw * phase_len, x.dtype)
        gybuf = np.zeros(0 if stream else out_h * pitch, x.dtype)  # junk columns stay zero
        s = np.empty(TAPS, x.dtype)
        for p in range(t * planes // tasks, (t + 1) * planes // tasks):
            img, o = p // c_out, p % c_out
            xb = (img * c_in + o // og) * h * wd
            if stream:
                _stream_dots(s, xf, xb, gyf, p * h * wd, h, wd, dh, dw, in_place, masks, edges)
                partial[img, o, :] = s
                continue
            _load(xf, xb, h, wd, sh, sw, ph, pw, dh, kh, xbuf, pitch, rows, phase_len)
            for r in range(out_h):
                transfer(gybuf, r * pitch, gyf, (p * out_h + r) * out_w, 1, out_w, True)
            for q0 in range(0, n_taps, TAPS):
                sums = _dots(gybuf, n, xbuf, offsets, q0)
                for q in range(min(TAPS, n_taps - q0)):
                    partial[img, o, q0 + q] = sums[q]


def _tasks(planes: int) -> int:
    return min(planes, TASKS_PER_THREAD * numba.get_num_threads())


def forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
            geometry: Conv2dGeometry, write: str = "rows") -> None:
    """y = conv(x, w) + bias."""
    bias = np.zeros(geometry.out_channels, y.dtype) if bias is None else bias
    if write == "stream" and not np.isfinite(w).all():
        write = "rows"  # the definition multiplies the padding too: 0 x NaN, which "stream" skips
    with one_thread_below(geometry.macs, PARALLEL_MIN_MACS):
        _forward(x, w, bias, y, geometry.args, _tasks(y.shape[0] * y.shape[1]),
                 WRITES.index(write), bypasses_caches(y))


def _masks(geometry: Conv2dGeometry, stream: bool) -> tuple[np.ndarray, np.ndarray]:
    """grad_weight's "stream" `_column_masks`: whole rows, about MASK_LEN pixels (a row at
    least) per call of its loop and a row more (a call starts at column dW); none for
    "buffers"."""
    wd, dw = geometry.input_hw[1], geometry.dilation[1]
    return _column_masks(wd, dw, max(1, MASK_LEN // wd) + 1 if stream else 0)


def grad_input(gy: np.ndarray, w: np.ndarray, gx: np.ndarray, geometry: Conv2dGeometry,
               write: str = "rows") -> None:
    """gx: the forward convolution of gy with the flipped kernel."""
    flipped = np.ascontiguousarray(geometry.transposed_weights(w))
    forward(gy, flipped, None, gx, geometry.transposed(), write)


def grad_weight(x: np.ndarray, gy: np.ndarray, gw: np.ndarray, geometry: Conv2dGeometry,
                read: str = "buffers") -> None:
    """gw: the adjoint of the forward in w, deterministic."""
    partial = np.empty((x.shape[0], gw.shape[0], gw.shape[2] * gw.shape[3]), gw.dtype)
    with one_thread_below(geometry.macs, PARALLEL_MIN_MACS):
        _grad_weight(x, gy, partial, *geometry.kernel_hw, geometry.args,
                     _tasks(partial.shape[0] * partial.shape[1]),
                     _masks(geometry, read == "stream"))
    gw[...] = partial.sum(axis=0).reshape(gw.shape)


def _supports(pass_: Pass, g: Conv2dGeometry) -> bool:
    if pass_ == "grad_input":
        return g.depthwise and g.out_per_group == 1 and g.has_transpose
    return g.depthwise


def _space(pass_: Pass, g: Conv2dGeometry) -> dict[str, tuple[str, ...]]:
    wide = (g.input_hw[1] if pass_ == "grad_input" else g.output_hw[1]) >= ROWS_MIN_WIDTH
    # on narrow images the edges that grad_weight's "stream" does row by row are a large part
    # of a plane; the forward's masked loads cover its edges in the same loop
    if pass_ == "grad_weight":
        if not streams(g):
            return {}
        return {"read": ("stream", "buffers") if wide else ("buffers", "stream")}
    buffered = ("rows", "plane") if wide else ("plane", "rows")
    return {"write": ("stream", *buffered) if streams(g) else buffered}


ALGORITHM = ConvAlgorithm(
    "depthwise",
    {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight},
    f"one plane at a time in a zero-padded buffer, {TAPS} taps summed per store",
    supports=_supports,
    requirement="one input channel per group (grad_input: also one output channel per group, "
                "stride 1 and padding <= dilation * (kernel size - 1))",
    space=_space,
    nonfinite_exact=frozenset({"forward"}),  # grad_input and grad_weight read zero padding
)
