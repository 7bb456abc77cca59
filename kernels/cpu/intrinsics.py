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

`prefetch` asks for a cache line ahead of its use, so that a kernel can fetch the next task's
input while it computes on the current one instead of waiting for it afterwards.
"""

from __future__ import annotations

import functools

from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._numba import u
from .target import ISA

VECTOR_BYTES = ISA.vector_bytes  # one register of the target the kernels are compiled for
CACHE_LINE_BYTES = 64


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
        index = context.get_value_type(types.intp)
        lane_ids = ir.VectorType(ir.IntType(32), lanes)

        def rows(arr, arr_type, off, stride):
            data = context.make_array(arr_type)(context, builder, arr).data
            return [builder.bitcast(builder.gep(data, [builder.add(off, builder.mul(
                stride, ir.Constant(index, i)))]), vector.as_pointer()) for i in range(lanes)]

        align = dtype.bitwidth // 8
        block = [builder.load(p, align=align)
                 for p in rows(src_arr, signature.args[3], src_off, src_stride)]
        for k, lo, hi in butterfly_masks(lanes):
            lo, hi = ir.Constant(lane_ids, lo), ir.Constant(lane_ids, hi)
            for i in range(lanes):
                if not i & k:
                    a, b = block[i], block[i + k]
                    block[i], block[i + k] = (builder.shuffle_vector(a, b, lo),
                                              builder.shuffle_vector(a, b, hi))
        for row, p in zip(block, rows(dst_arr, signature.args[0], dst_off, dst_stride)):
            builder.store(row, p, align=align)
        return context.get_dummy_value()

    return sig, codegen


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
def _prefetch_name() -> str:
    """llvm.prefetch's name carries its pointer type: p0 with opaque pointers (LLVM >= 15 as
    Numba builds it today), p0i8 with typed ones."""
    try:
        binding.parse_assembly("declare void @llvm.prefetch.p0(ptr, i32, i32, i32)").verify()
        return "llvm.prefetch.p0"
    except RuntimeError:
        return "llvm.prefetch.p0i8"


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
            _prefetch_name())
        # read, locality 2 (keep in the outer caches), data cache
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def prefetch_range(arr, start, count):
    """Prefetch arr[start:start + count] (a flat array), one hint per cache line."""
    for i in range(start, start + count, CACHE_LINE_BYTES // arr.itemsize):
        prefetch(arr, i)
