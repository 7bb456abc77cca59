"""The LLVM-IR helpers of the CPU kernels: the in-register block transpose against NumPy."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext.kernels.cpu.intrinsics import VECTOR_BYTES, butterfly_masks, pack_pixels


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
