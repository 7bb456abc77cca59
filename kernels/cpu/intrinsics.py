"""What the CPU kernels need from LLVM that Numba and its vectorisers do not produce, written
as Numba intrinsics (LLVM IR): a block transpose in registers and a software prefetch.

The kernels that put channels on the vector lanes read a block of an NCHW array packed pixel
by pixel, ``dst[p, c] = src[c, p]``. Element by element, every store of that copy lands in
another cache line, and LLVM's vectorisers do not turn it into shuffles, so the copy would
cost as much as a good part of the arithmetic it feeds. `transpose_block` does one square
block of the target's vector width (one row per register: 16 x 16 float32 or 8 x 8 float64
with AVX-512, 8 x 8 or 4 x 4 with AVX2): it loads the rows, swaps the row and column index one
bit at a time with log2(lanes) rounds of two-input shuffles, and stores the rows.
`pack_pixels` covers a whole block with it and does the ragged edges element by element.
`store_transposed` goes the other way for a tile computed pixel by pixel: the same shuffles,
then masked stores of only the part of each channel's row the tile owns.

`prefetch` asks for a cache line ahead of its use, so that a kernel can fetch the next task's
input while it computes on the current one instead of waiting for it afterwards.

`plane_taps` is the in-place 3x3 step of the direct kernel (four outputs from four input
channels: 36 input streams and four output streams that LLVM's loop vectoriser cannot prove
apart) and of the depthwise forward (one from one), so the vectors, the masked loads at the
image's edges and the non-temporal stores of outputs too large for the caches are written out
here.

`pair_phases` moves a stride-2 row to or from its two column phases, a vector of pairs per
step, where LLVM's vector loop needs rows longer than the strided layers' (below).
"""

from __future__ import annotations

import functools

from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._numba import u
from .memory import CACHE_LINE_BYTES
from .target import ISA, OTHER

VECTOR_BYTES = ISA.vector_bytes  # one register of the target the kernels are compiled for


def butterfly_masks(lanes: int) -> list[tuple[int, list[int], list[int]]]:
    """For each bit k of a lane index: (k, lo, hi), the shuffles of rows (a, b) = (i, i + k)
    (i without bit k) into lo[c] = a[c] if c lacks bit k else b[c - k] and hi[c] = a[c + k]
    if c lacks bit k else b[c]; an element's row bit k and column bit k trade places. Shuffle
    indices count a's lanes first, then b's."""
    stages, k = [], 1
    while k < lanes:
        lo = [c if not c & k else lanes + c - k for c in range(lanes)]
        hi = [c + k if not c & k else lanes + c for c in range(lanes)]
        stages.append((k, lo, hi))
        k *= 2
    return stages


@intrinsic
def transpose_block(typingctx, dst, dst_off, dst_stride, src, src_off, src_stride):
    """dst[dst_off + j * dst_stride + i] = src[src_off + i * src_stride + j] for i, j below
    the lane count (VECTOR_BYTES / itemsize) of two flat float arrays. No bounds checks."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype and dst.dtype in (types.float32, types.float64)):
        return None
    dtype = dst.dtype
    lanes = VECTOR_BYTES * 8 // dtype.bitwidth
    sig = types.void(dst, types.intp, types.intp, src, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        dst_arr, dst_off, dst_stride, src_arr, src_off, src_stride = args
        vector = ir.VectorType(context.get_value_type(dtype), lanes)
        align = dtype.bitwidth // 8
        block = _transposed(builder, [builder.load(p, align=align) for p in
                                      _rows(context, builder, vector, signature.args[3],
                                            src_arr, src_off, src_stride)])
        for row, p in zip(block, _rows(context, builder, vector, signature.args[0], dst_arr,
                                       dst_off, dst_stride)):
            builder.store(row, p, align=align)
        return context.get_dummy_value()

    return sig, codegen


@functools.cache
def store_transposed(lanes: int):
    """The intrinsic store(dst, dst_off, dst_stride, src, src_off, src_stride, rows, cols):
    dst[dst_off + j * dst_stride + i] = src[src_off + i * src_stride + j] for i < rows and
    j < cols (both at most `lanes`), flat arrays of one float dtype. The whole `lanes` x
    `lanes` block of src is read (it must exist), transposed in registers as in
    `transpose_block`, and the first `cols` of its rows are stored masked to `rows` elements:
    a tile of pixels by channels, computed pixel-major, stored into its channel planes without
    touching the pixels past it, where element-by-element stores cost the row tiles a sixth to
    a fifth of their time."""

    @intrinsic
    def store(typingctx, dst, dst_off, dst_stride, src, src_off, src_stride, rows, cols):
        if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
                and dst.dtype == src.dtype and dst.dtype in (types.float32, types.float64)):
            return None
        intp = types.intp
        sig = types.void(dst, intp, intp, src, intp, intp, intp, intp)

        def codegen(context, builder, signature, args):
            dst_arr, dst_off, dst_stride, src_arr, src_off, src_stride, rows, cols = args
            vector = ir.VectorType(context.get_value_type(dst.dtype), lanes)
            load, put = _vector_memory(builder, vector, dst.dtype.bitwidth // 8)
            block = _transposed(builder, [load(p, None) for p in _rows(
                context, builder, vector, signature.args[3], src_arr, src_off, src_stride)])
            index = ir.VectorType(rows.type, lanes)
            inside = builder.icmp_signed("<", ir.Constant(index, list(range(lanes))),
                                         _splat(builder, rows, index))
            for j, (row, p) in enumerate(zip(block, _rows(
                    context, builder, vector, signature.args[0], dst_arr, dst_off, dst_stride))):
                with builder.if_then(builder.icmp_signed("<", ir.Constant(cols.type, j), cols)):
                    put(row, p, inside)
            return context.get_dummy_value()

        return sig, codegen

    return store


def _rows(context, builder: ir.IRBuilder, vector: ir.VectorType, array_type, array: ir.Value,
          off: ir.Value, stride: ir.Value) -> list[ir.Value]:
    """Pointers to the `vector.count` rows array[off + i * stride :] of a flat array."""
    data = context.make_array(array_type)(context, builder, array).data
    return [builder.bitcast(builder.gep(data, [builder.add(off, builder.mul(
        stride, ir.Constant(off.type, i)))]), vector.as_pointer()) for i in range(vector.count)]


def _transposed(builder: ir.IRBuilder, block: list[ir.Value]) -> list[ir.Value]:
    """The rows (vectors) of a square block transposed: log2(lanes) rounds of two-input
    shuffles, each swapping one bit of the row and column index (`butterfly_masks`)."""
    block, lanes = list(block), len(block)
    lane_ids = ir.VectorType(ir.IntType(32), lanes)
    for k, lo, hi in butterfly_masks(lanes):
        lo, hi = ir.Constant(lane_ids, lo), ir.Constant(lane_ids, hi)
        for i in range(lanes):
            if not i & k:
                a, b = block[i], block[i + k]
                block[i], block[i + k] = (builder.shuffle_vector(a, b, lo),
                                          builder.shuffle_vector(a, b, hi))
    return block


@njit(cache=True)
def pack_pixels(dst, dst_off, ld, src, src_off, plane, pixels, channels):
    """dst[dst_off + p * ld + c] = src[src_off + c * plane + p] for p < pixels, c < channels
    (flat arrays): `channels` planes of an NCHW array packed pixel by pixel, rows ld apart."""
    lanes = VECTOR_BYTES // src.itemsize
    p_full, c_full = pixels - pixels % lanes, channels - channels % lanes
    for p in range(0, p_full, lanes):
        for c in range(0, c_full, lanes):
            transpose_block(dst, dst_off + p * ld + c, ld, src, src_off + c * plane + p, plane)
    for c in range(channels):  # what the blocks left: the last pixels, the last channels
        for p in range(p_full if c < c_full else 0, pixels):
            dst[u(dst_off + p * ld + c)] = src[u(src_off + c * plane + p)]


@functools.cache
def _opaque_pointers() -> bool:
    """Whether LLVM's intrinsics name a pointer argument p0 (opaque pointers, LLVM >= 15 as
    Numba builds it today) or by its pointee (p0i8, p0v16f32: typed pointers)."""
    try:
        binding.parse_assembly("declare void @llvm.prefetch.p0(ptr, i32, i32, i32)").verify()
        return True
    except RuntimeError:
        return False


def _pointer_suffix(pointee: str) -> str:
    """An intrinsic's name suffix for a pointer to `pointee` (e.g. "i8", "v16f32")."""
    return "p0" if _opaque_pointers() else f"p0{pointee}"


@intrinsic
def prefetch(typingctx, arr, index):
    """Hint that arr[index] (a flat array) will be read soon: its cache line is fetched into
    the L2 cache and up without blocking. A hint only: no fault for any index."""
    if not isinstance(arr, types.Array):
        return None
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32]),
            f"llvm.prefetch.{_pointer_suffix('i8')}")
        # read, locality 2 (keep in the outer caches), data cache
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def prefetch_range(arr, start, count):
    """Prefetch arr[start:start + count] (a flat array), one hint per cache line."""
    for i in range(start, start + count, CACHE_LINE_BYTES // arr.itemsize):
        prefetch(arr, i)


@intrinsic
def pair_phases(typingctx, buf, b0, b1, img, i, n, load):
    """buf[b0 + k], buf[b1 + k] <-> img[i + 2k], img[i + 2k + 1] for k < n (load: into buf):
    the two column phases of a stride-2 row, a vector of each per two vectors of the row.
    Rows of ResNeXt's strided convolutions hold 14 to 112 pixels, too few for the loop
    vectoriser, which only runs two vectors per step (64 pixels with AVX-512) and leaves the
    rest to scalar code; here a row shorter than a vector is one masked step, a longer one
    ends with a step that overlaps the one before. Flat float arrays, no bounds checks."""
    if not (isinstance(buf, types.Array) and isinstance(img, types.Array)
            and buf.dtype == img.dtype and buf.dtype in (types.float32, types.float64)):
        return None
    dtype = buf.dtype
    lanes = VECTOR_BYTES * 8 // dtype.bitwidth
    intp = types.intp
    sig = types.void(buf, intp, intp, img, intp, intp, types.boolean)

    def codegen(context, builder, signature, args):
        buf_, b0_, b1_, img_, i_, count_, load_ = args
        buf_data = context.make_array(signature.args[0])(context, builder, buf_).data
        img_data = context.make_array(signature.args[3])(context, builder, img_).data
        index, i32 = context.get_value_type(intp), ir.IntType(32)
        vec = ir.VectorType(context.get_value_type(dtype), lanes)
        ivec = ir.VectorType(index, lanes)
        load, store = _vector_memory(builder, vec, dtype.bitwidth // 8)
        lane_ids = ir.VectorType(i32, lanes)
        # split: (even, odd) of the row's vectors (a, b); join: (a, b) of (even, odd)
        evens = ir.Constant(lane_ids, list(range(0, 2 * lanes, 2)))
        odds = ir.Constant(lane_ids, list(range(1, 2 * lanes, 2)))
        lows = ir.Constant(lane_ids, [c // 2 + (c % 2) * lanes for c in range(lanes)])
        highs = ir.Constant(lane_ids, [(c + lanes) // 2 + (c % 2) * lanes for c in range(lanes)])

        def const(value):
            return ir.Constant(index, value)

        def vector_at(data, offset):
            return builder.bitcast(builder.gep(data, [offset]), vec.as_pointer())

        def below(count, first=0):
            """Lanes c with first + c < count (a vector of booleans)."""
            bound = _splat(builder, builder.sub(count, const(first)), ivec)
            return builder.icmp_signed("<", ir.Constant(ivec, list(range(lanes))), bound)

        def step(k, load_phases, masks=(None, None, None)):
            """Pairs k .. k + lanes; masks: (row's first vector, its second, each phase)."""
            row = [vector_at(img_data, builder.add(i_, builder.add(
                builder.mul(k, const(2)), const(r * lanes)))) for r in range(2)]
            phases = [vector_at(buf_data, builder.add(b, k)) for b in (b0_, b1_)]
            if load_phases:
                a, b = (load(p, ok) for p, ok in zip(row, masks))
                for value, p in zip((builder.shuffle_vector(a, b, evens),
                                     builder.shuffle_vector(a, b, odds)), phases):
                    store(value, p, masks[2])
            else:
                even, odd = (load(p, masks[2]) for p in phases)
                for value, p, ok in zip((builder.shuffle_vector(even, odd, lows),
                                         builder.shuffle_vector(even, odd, highs)), row, masks):
                    store(value, p, ok)

        def move(load_phases):
            full = builder.sdiv(count_, const(lanes))
            with cgutils.for_range(builder, full) as loop:
                step(builder.mul(loop.index, const(lanes)), load_phases)
            rest = builder.icmp_signed(">", builder.srem(count_, const(lanes)), const(0))
            with builder.if_then(rest):
                with builder.if_else(builder.icmp_signed(">", full, const(0))) as (longer, shorter):
                    with longer:  # the last vector of pairs again, over the one before
                        step(builder.sub(count_, const(lanes)), load_phases)
                    with shorter:
                        pixels = builder.mul(count_, const(2))
                        step(const(0), load_phases, (below(pixels), below(pixels, lanes), below(count_)))

        _both_ways(builder, load_, move)
        return context.get_dummy_value()

    return sig, codegen


@functools.cache
def plane_taps(outs: int, ins: int, vectors: int):
    """The in-place 3x3 forward at stride 1, padding = dilation, of `outs` output planes from
    `ins` input channels (`direct._forward_in_place`: 4 and 4; depthwise: 1 and 1), as the
    intrinsic taps(y, yb, plane, x, xs, offsets, t, cg, coef, c, masks, rows, accumulate,
    bias, o0, bypass): for every pixel k of a plane (in steps of `vectors` vectors, the last
    one's pixels past the plane masked off) and output p < outs,

        y[yb + p*plane + k] = (y[yb + p*plane + k] if accumulate else bias[o0 + p])
            + sum over kernel positions q = i*3 + j and channels e < ins of
              coef[c + (p*9 + q)*ins + e] * x[xs + k + offsets[t + q*cg + e]]

    where a tap counts only where it lies in the image: in masks' row j (left, inside and right
    columns of a plane: 1 where a tap of kernel column j stays on the row, 0 past the plane, at
    least one step past it; a C-contiguous 2-D array) and,
    for kernel row 0 (2), at pixels k >= rows[0] (k < rows[1]). The taps are masked loads, so
    nothing outside the image is read, and the sums stay in registers: each output vector is
    stored once, where a loop per kernel position loads and stores it nine times. The
    9 * outs * ins weights lie in a row (`direct._weight_blocks`), so that each is a broadcast
    load at a fixed offset where it is used: splats held across the loop would not fit in the
    registers and were spilled and reloaded as whole vectors, which made the loop 1.2-1.6
    times slower. Each loaded input feeds `outs` sums and each weight `vectors`; the sums of a
    step are outs * vectors independent chains, enough to hide the multiply-add's latency.

    The steps whose pixels all lie below the first dilation rows and above the last (most of
    a plane) skip the row tests. With `bypass` (an x86 target, not `accumulate`, y[yb] and
    the plane's length whole vectors of bytes: aligned stores) those steps' stores are
    non-temporal, past the caches: the output line is not read from memory first, which only
    pays where the output could not stay in the caches anyway."""

    @intrinsic
    def taps(typingctx, y, yb, plane, x, xs, offsets, t, cg, coef, c, masks, rows, accumulate,
             bias, o0, bypass):
        dtype = y.dtype
        if not (isinstance(y, types.Array) and isinstance(x, types.Array) and x.dtype == dtype
                and dtype in (types.float32, types.float64)
                and isinstance(masks, types.Array) and masks.ndim == 2 and masks.layout == "C"):
            return None
        lanes = VECTOR_BYTES * 8 // dtype.bitwidth
        step = lanes * vectors
        intp = types.intp
        sig = types.void(y, intp, intp, x, intp, offsets, intp, intp, coef, intp, masks, rows,
                         types.boolean, bias, intp, types.boolean)

        def codegen(context, builder, signature, args):
            (y_, yb_, plane_, x_, xs_, off_, t_, cg_, coef_, c_, masks_, rows_,
             accumulate_, bias_, o0_, bypass_) = args
            structs = {name: context.make_array(signature.args[i])(context, builder, args[i])
                       for i, name in ((0, "y"), (3, "x"), (5, "off"), (8, "coef"), (10, "masks"),
                                       (13, "bias"))}
            arrays = {name: struct.data for name, struct in structs.items()}
            index = context.get_value_type(intp)
            i32 = ir.IntType(32)
            vec = ir.VectorType(context.get_value_type(dtype), lanes)
            ivec = ir.VectorType(index, lanes)
            load, cached_store = _vector_memory(builder, vec, dtype.bitwidth // 8)
            fma = _declare(builder, f"llvm.fma.v{lanes}f{dtype.bitwidth}", vec, [vec, vec, vec])

            def n(value):
                return ir.Constant(index, value)

            def at(name, i):
                return builder.gep(arrays[name], [i])

            def vector_at(name, i):
                return builder.bitcast(at(name, i), vec.as_pointer())

            taps = [[builder.add(t_, builder.add(builder.mul(n(q), cg_), n(e))) for e in range(ins)]
                    for q in range(9)]
            offsets = [[builder.load(at("off", tap)) for tap in row] for row in taps]

            def weight(p, q, e):  # a broadcast from memory where it is used (docstring)
                return _splat(builder, builder.load(at("coef", builder.add(
                    c_, n((p * 9 + q) * ins + e)))), vec)

            biases = [_splat(builder, builder.load(at("bias", builder.add(o0_, n(p)))), vec)
                      for p in range(outs)]
            rows = [_splat(builder, builder.extract_value(rows_, r), ivec) for r in range(2)]
            lane = ir.Constant(ivec, list(range(lanes)))
            mask_row = builder.extract_value(structs["masks"].shape, 1)
            byte_vec = ir.VectorType(ir.IntType(8), lanes)

            def columns(j, k):
                bytes_ = builder.load(builder.bitcast(
                    at("masks", builder.add(builder.mul(n(j), mask_row), k)), byte_vec.as_pointer()),
                    align=1)
                return builder.icmp_unsigned("!=", bytes_, ir.Constant(byte_vec, None))

            streaming = builder.module.add_metadata([ir.Constant(i32, 1)])

            def store(value, pointer, ok, bypass):
                if bypass and ok is None:
                    builder.store(value, pointer, align=VECTOR_BYTES).set_metadata("nontemporal",
                                                                                  streaming)
                else:
                    cached_store(value, pointer, ok)

            def step_at(first, accumulate, last=False, interior=False, bypass=False,
                        count=vectors):
                """One step of `count` vectors from pixel `first`; the `last` one ends past the
                plane, where its loads and stores are masked off (elsewhere a masked store can
                cost a dozen cycles); an `interior` one lies between the rows that kernel rows 0
                and 2 miss."""
                oks, starts, outputs, inside = [], [], [], []
                for r in range(count):
                    k = builder.add(first, n(r * lanes))
                    pixels = builder.add(_splat(builder, k, ivec), lane)
                    row_ok = (None, None, None) if interior else (
                        builder.icmp_signed(">=", pixels, rows[0]), None,
                        builder.icmp_signed("<", pixels, rows[1]))
                    col_ok = [columns(j, k) for j in range(3)]
                    inside.append(col_ok[1] if last else None)
                    ok = []
                    for q in range(9):
                        i, j = divmod(q, 3)
                        ok.append(inside[-1] if (i, j) == (1, 1)
                                  else col_ok[j] if i == 1 or (interior and j != 1)
                                  else row_ok[i] if j == 1 and not last
                                  else builder.and_(col_ok[j], row_ok[i]))
                    oks.append(ok)
                    starts.append(builder.add(xs_, k))
                    outputs.append([vector_at("y", builder.add(yb_, builder.add(
                        builder.mul(n(p), plane_), k))) for p in range(outs)])
                sums = [[load(out, ok) if accumulate else b for out, b in zip(row, biases)]
                        for row, ok in zip(outputs, inside)]
                # tap by tap, the outputs and vectors innermost: outs * vectors independent sums,
                # each loaded input feeding `outs` of them and each weight `vectors`
                for q in range(9):
                    for e in range(ins):
                        weights = [weight(p, q, e) for p in range(outs)]
                        inputs = [load(vector_at("x", builder.add(starts[r], offsets[q][e])),
                                       oks[r][q]) for r in range(count)]
                        for p in range(outs):
                            for r in range(count):
                                sums[r][p] = builder.call(fma, [weights[p], inputs[r], sums[r][p]])
                for row, total, ok in zip(outputs, sums, inside):
                    for out, value in zip(row, total):
                        store(value, out, ok, bypass)

            def steps(count, index, **kinds):
                with cgutils.for_range(builder, count) as loop:
                    step_at(builder.mul(index(loop.index), n(step)), **kinds)

            def smaller(a, b):
                return builder.select(builder.icmp_signed("<", a, b), a, b)

            def plane_pass(accumulate):
                # the steps [top, bottom) start at or after rows[0] and end by rows[1]; the others,
                # a few at each end of the plane, run in one loop (one copy of the code)
                full = builder.sdiv(plane_, n(step))
                top = smaller(builder.sdiv(builder.add(builder.extract_value(rows_, 0), n(step - 1)),
                                           n(step)), full)
                bottom = smaller(builder.sdiv(builder.extract_value(rows_, 1), n(step)), full)
                bottom = builder.select(builder.icmp_signed("<", bottom, top), top, bottom)
                steps(builder.add(top, builder.sub(full, bottom)),
                      lambda i: builder.select(builder.icmp_signed("<", i, top), i,
                                               builder.add(i, builder.sub(bottom, top))),
                      accumulate=accumulate)

                def interior(bypass=False):
                    steps(builder.sub(bottom, top), lambda i: builder.add(top, i),
                          accumulate=accumulate, interior=True, bypass=bypass)

                if accumulate or ISA == OTHER:  # non-temporal stores and sfence are x86's
                    interior()
                else:
                    with builder.if_else(bypass_) as (streamed, cached):
                        with streamed:
                            interior(bypass=True)
                            # order the non-temporal stores before whatever reads y next
                            builder.call(_declare(builder, "llvm.x86.sse.sfence", ir.VoidType(), []),
                                         [])
                        with cached:
                            interior()
                # the last step computes only the vectors that hold pixels of the plane: on
                # small planes a whole step past the end cost more than the plane
                tail = builder.sdiv(builder.add(builder.srem(plane_, n(step)), n(lanes - 1)),
                                    n(lanes))
                done = builder.append_basic_block("tail.done")
                switch = builder.switch(tail, done)
                for count in range(1, vectors + 1):
                    block = builder.append_basic_block(f"tail.{count}")
                    switch.add_case(n(count), block)
                    builder.position_at_end(block)
                    step_at(builder.mul(full, n(step)), accumulate, last=True, count=count)
                    builder.branch(done)
                builder.position_at_end(done)

            _both_ways(builder, accumulate_, plane_pass)
            return context.get_dummy_value()

        return sig, codegen

    return taps


@functools.cache
def finish_row(lanes: int):
    """The intrinsic finish(y, q, residual, add, lo): y[q:q + lanes] plus residual[q:q +
    lanes] where `add`, then raised to at least `lo` (-inf, or 0 for a ReLU), in place; y and
    residual flat arrays of one float dtype. One vector of `lanes` elements (LLVM splits it
    into the target's registers): loads, an add, a compare and a select, stores. The compare
    is ordered, so NaN stays NaN, as in relu. Written here because the same row as a loop (or
    a slice) did not vectorise inside the parallel kernels, and as generated straight-line
    code it multiplied their compilation time."""

    @intrinsic
    def finish(typingctx, y, q, residual, add, lo):
        if not (isinstance(y, types.Array) and isinstance(residual, types.Array)
                and residual.dtype == y.dtype and y.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(y, types.intp, residual, types.boolean, y.dtype)

        def codegen(context, builder, signature, args):
            y_, q_, residual_, add_, lo_ = args
            vec = ir.VectorType(context.get_value_type(y.dtype), lanes)
            load, store = _vector_memory(builder, vec, y.dtype.bitwidth // 8)

            def at(array, value):
                data = context.make_array(signature.args[array])(context, builder, value).data
                return builder.bitcast(builder.gep(data, [q_]), vec.as_pointer())

            floor = _splat(builder, lo_, vec)

            def body(residual_too: bool) -> None:
                v = load(at(0, y_), None)
                if residual_too:
                    v = builder.fadd(v, load(at(2, residual_), None))
                store(builder.select(builder.fcmp_ordered("<", v, floor), floor, v),
                      at(0, y_), None)

            _both_ways(builder, add_, body)
            return context.get_dummy_value()

        return sig, codegen

    return finish


def _both_ways(builder: ir.IRBuilder, flag: ir.Value, body) -> None:
    """body(True) where `flag` holds and body(False) where not: code specialised for each."""
    with builder.if_else(flag) as (then, otherwise):
        with then:
            body(True)
        with otherwise:
            body(False)


def _vector_memory(builder: ir.IRBuilder, vec: ir.VectorType, align: int):
    """(load, store) of `vec` (float lanes) at `align` bytes: load(pointer, ok) and
    store(value, pointer, ok), where `ok` (a vector of booleans, or None for all lanes) masks
    the lanes through LLVM's masked load and store: a lane off is neither read (zero instead)
    nor written."""
    i32, mask = ir.IntType(32), ir.VectorType(ir.IntType(1), vec.count)
    suffix = f"v{vec.count}{vec.element.intrinsic_name}"
    memory = f"{suffix}.{_pointer_suffix(suffix)}"
    masked_load = _declare(builder, f"llvm.masked.load.{memory}", vec,
                           [vec.as_pointer(), i32, mask, vec])
    masked_store = _declare(builder, f"llvm.masked.store.{memory}", ir.VoidType(),
                            [vec, vec.as_pointer(), i32, mask])
    alignment, zero = ir.Constant(i32, align), ir.Constant(vec, None)

    def load(pointer, ok):
        if ok is None:
            return builder.load(pointer, align=align)
        return builder.call(masked_load, [pointer, alignment, ok, zero])

    def store(value, pointer, ok):
        if ok is None:
            builder.store(value, pointer, align=align)
        else:
            builder.call(masked_store, [value, pointer, alignment, ok])

    return load, store


def _splat(builder: ir.IRBuilder, value: ir.Value, vector: ir.VectorType) -> ir.Value:
    """`value` in every lane of `vector`."""
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                 ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), vector.count),
                                              [0] * vector.count))


def _declare(builder: ir.IRBuilder, name: str, result: ir.Type, arguments: list[ir.Type]):
    """The LLVM intrinsic `name` of that signature in the builder's module."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, arguments),
                                          name)
