"""The LLVM-IR helpers of the CPU kernels against NumPy: the in-register block transposes and
the stride-2 column phases."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numba import njit

from minitorch_resnext.kernels.cpu.intrinsics import (
    VECTOR_BYTES,
    butterfly_masks,
    pack_pixels,
    pair_phases,
    store_transposed,
)


@st.composite
def packings(draw: st.DrawFn) -> dict:
    """A pack_pixels call: channel planes of a flat source (plane >= pixels, an offset) into
    rows of a flat destination (ld >= channels, an offset), sizes on both sides of the block."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    pixels, channels = draw(st.integers(1, 3 * lanes)), draw(st.integers(1, 2 * lanes + 3))
    return {
        "dtype": dtype, "pixels": pixels, "channels": channels,
        "plane": pixels + draw(st.integers(0, 5)), "ld": channels + draw(st.integers(0, 5)),
        "src_off": draw(st.integers(0, 7)), "dst_off": draw(st.integers(0, 7)),
    }


@given(packings())
def test_pack_pixels_transposes_channel_planes(case):
    p, c, plane, ld = case["pixels"], case["channels"], case["plane"], case["ld"]
    rng = np.random.default_rng(0)
    src = rng.standard_normal(case["src_off"] + c * plane).astype(case["dtype"])
    dst = np.full(case["dst_off"] + p * ld, np.nan, case["dtype"])
    pack_pixels(dst, case["dst_off"], ld, src, case["src_off"], plane, p, c)
    planes = src[case["src_off"]:].reshape(c, plane)[:, :p]
    rows = dst[case["dst_off"]:].reshape(p, ld)
    np.testing.assert_array_equal(rows[:, :c], planes.T)
    assert np.isnan(rows[:, c:]).all() and np.isnan(dst[:case["dst_off"]]).all()  # untouched


_STORE_LANES = 8  # the row tiles' lanes on AVX2 (16 on AVX-512 compiles the same code)
_store = store_transposed(_STORE_LANES)


@njit  # not cached: compiled from the intrinsic's current source
def _store_block(dst, dst_off, dst_stride, src, src_off, src_stride, rows, cols):
    _store(dst, dst_off, dst_stride, src, src_off, src_stride, rows, cols)


@given(st.sampled_from(["float32", "float64"]), st.integers(1, _STORE_LANES),
       st.integers(1, _STORE_LANES), st.integers(0, 5), st.integers(0, 5), st.integers(0, 3))
def test_store_transposed_writes_the_part_asked_and_nothing_else(dtype, rows, cols, gap,
                                                                 dst_off, src_off):
    """dst[j, i] = src[i, j] for i < rows, j < cols, dst's rows `_STORE_LANES + gap` apart; the
    rest of the block (and of dst) untouched, though the whole source block is read."""
    lanes = _STORE_LANES
    src = np.random.default_rng(rows * 8 + cols).standard_normal(src_off + lanes * lanes)
    src = src.astype(dtype)
    stride = lanes + gap
    dst = np.full(dst_off + lanes * stride, np.nan, dtype)
    _store_block(dst, dst_off, stride, src, src_off, lanes, rows, cols)
    block = src[src_off:].reshape(lanes, lanes)
    out = dst[dst_off:].reshape(lanes, stride)
    np.testing.assert_array_equal(out[:cols, :rows], block[:rows, :cols].T)
    written = np.zeros_like(out, dtype=bool)
    written[:cols, :rows] = True
    assert np.isnan(out[~written]).all() and np.isnan(dst[:dst_off]).all()


def test_butterfly_masks_compose_to_a_transpose():
    """Applying the shuffles to index pairs (row, column) moves every element to (column, row)."""
    lanes = 16
    block = [[(i, j) for j in range(lanes)] for i in range(lanes)]
    for k, lo, hi in butterfly_masks(lanes):
        for i in range(lanes):
            if not i & k:
                both = block[i] + block[i + k]
                block[i], block[i + k] = [both[m] for m in lo], [both[m] for m in hi]
    assert block == [[(j, i) for j in range(lanes)] for i in range(lanes)]


@njit
def _pair_phases(buf, b0, b1, img, i, n, load):
    pair_phases(buf, b0, b1, img, i, n, load)


@given(dtype=st.sampled_from(["float32", "float64"]), data=st.data())
def test_pair_phases_moves_both_phases_of_a_row_and_nothing_else(dtype, data):
    """Rows of up to three vectors of pairs (a masked step, whole steps, an overlapping last
    one), both ways, in arrays that may end where the row and the phases end (nothing read past
    them) or go on (nothing written there)."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    n = data.draw(st.integers(0, 3 * lanes + 1), label="pairs")
    i, b0 = data.draw(st.integers(0, 5), label="i"), data.draw(st.integers(0, 5), label="b0")
    b1 = b0 + n + data.draw(st.integers(0, 3), label="gap")
    load = data.draw(st.booleans(), label="load")
    tail = data.draw(st.integers(0, 3), label="tail")
    rng = np.random.default_rng(n)
    img = np.full(i + 2 * n + tail, np.nan, dtype)
    buf = np.full(b1 + n + tail, np.nan, dtype)
    if load:
        img[:] = rng.standard_normal(img.size)
    else:
        buf[:] = rng.standard_normal(buf.size)
    img_before, buf_before = img.copy(), buf.copy()
    _pair_phases(buf, b0, b1, img, i, n, load)
    expected_img, expected_buf = img_before.copy(), buf_before.copy()
    if load:
        expected_buf[b0:b0 + n], expected_buf[b1:b1 + n] = img[i:i + 2 * n:2], img[i + 1:i + 2 * n:2]
    else:
        expected_img[i:i + 2 * n:2], expected_img[i + 1:i + 2 * n:2] = buf[b0:b0 + n], buf[b1:b1 + n]
    np.testing.assert_array_equal(buf, expected_buf)  # NaN where nothing is written
    np.testing.assert_array_equal(img, expected_img)
