"""Reference solutions of the exercises of tutorial 5 (checked by tests/exercises)."""

from __future__ import annotations

import numpy as np


def lines_touched(byte_addresses: np.ndarray, line_bytes: int = 128) -> int:
    """Exercise 5.1."""
    starts = np.asarray(byte_addresses) // line_bytes
    ends = (np.asarray(byte_addresses) + 3) // line_bytes
    return len(np.union1d(starts, ends))


def bank_conflict_ways(word_addresses: np.ndarray, banks: int = 32) -> int:
    """Exercise 5.2."""
    words = np.unique(word_addresses)
    return int(np.bincount(words % banks).max())


def input_window(tile_hw: tuple[int, int], kernel_hw: tuple[int, int],
                 dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Exercise 5.3."""
    return tuple(t + d * (k - 1) for t, k, d in zip(tile_hw, kernel_hw, dilation))


def grid_blocks(out_hw: tuple[int, int], tile_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Exercise 5.4."""
    (oh, ow), (th, tw) = out_hw, tile_hw
    return [(r, c) for r in range(0, oh, th) for c in range(0, ow, tw)]
