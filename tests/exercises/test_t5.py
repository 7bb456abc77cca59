"""Tutorial 5's exercises, checked by enumerating what the threads of a warp or a block touch."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

WARP = np.arange(32)


def bytes_per_line(addresses: np.ndarray, line: int = 128) -> int:
    """Lines touched, by marking every byte each thread reads."""
    touched = {byte // line for a in addresses for byte in range(a, a + 4)}
    return len(touched)


@given(st.integers(0, 31).map(lambda k: 4 * k), st.sampled_from([1, 2, 4, 8, 32, 1000]))
def test_lines_touched_by_a_warp(t5, offset, stride_floats):
    addresses = offset + 4 * stride_floats * WARP
    assert t5.lines_touched(addresses) == bytes_per_line(addresses)


def test_coalesced_and_scattered_warps(t5):
    assert t5.lines_touched(4 * WARP) == 1             # 32 consecutive floats, aligned
    assert t5.lines_touched(4 + 4 * WARP) == 2         # the same, one float off
    assert t5.lines_touched(4 * 56 * 56 * WARP) == 32  # one pixel of 32 NCHW channels


@given(st.integers(1, 64), st.integers(0, 100))
def test_bank_conflicts_of_a_strided_read(t5, stride, start):
    words = start + stride * WARP
    banks = [{w for w in words if w % 32 == b} for b in range(32)]
    assert t5.bank_conflict_ways(words) == max(len(b) for b in banks)


def test_bank_conflicts_named_cases(t5):
    assert t5.bank_conflict_ways(WARP) == 1                  # consecutive words
    assert t5.bank_conflict_ways(np.full(32, 7)) == 1        # one word: a broadcast
    assert t5.bank_conflict_ways(32 * WARP) == 32            # a column of a 32-wide array
    assert t5.bank_conflict_ways(33 * WARP) == 1             # ... padded to a pitch of 33


@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 5), st.integers(1, 5),
       st.integers(1, 3), st.integers(1, 3))
def test_input_window_holds_every_input_the_tile_reads(t5, th, tw, kh, kw, dh, dw):
    read = {(i + a * dh, j + b * dw) for i in range(th) for j in range(tw)
            for a in range(kh) for b in range(kw)}
    rows, cols = t5.input_window((th, tw), (kh, kw), (dh, dw))
    assert (rows, cols) == (max(r for r, _ in read) + 1, max(c for _, c in read) + 1)


@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 8), st.integers(1, 16))
def test_grid_blocks_cover_the_map_once(t5, oh, ow, th, tw):
    origins = t5.grid_blocks((oh, ow), (th, tw))
    writes = np.zeros((oh + th, ow + tw), dtype=int)
    for r, c in origins:
        writes[r:r + th, c:c + tw] += 1
    assert (writes[:oh, :ow] == 1).all()           # every output exactly once
    assert all(r < oh and c < ow for r, c in origins)  # no tile wholly outside the map
    assert origins == sorted(origins)               # numbered row by row
