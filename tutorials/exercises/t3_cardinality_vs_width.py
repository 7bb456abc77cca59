"""Exercises of tutorial 3, cardinality vs width. Replace each `raise NotImplementedError` with
your code, then check it: `pytest tests/exercises -k "t3 and yours"`.

A block is the paper's conv2 block: 1x1 `channels -> C*d`, 3x3 with C groups of d channels,
1x1 `C*d -> channels`, no bias (batch normalization not counted).
Reference solutions: `tutorials/exercises/solutions/t3_cardinality_vs_width.py`.
"""

from __future__ import annotations

TABLE_2_BUDGET = 69_632  # the 1x64d block: the complexity every row of Table 2 keeps


def block_params(c: int, d: int, channels: int = 256) -> int:
    """Exercise 3.1: convolution parameters of the block with cardinality `c` and path width
    `d` (the paper's equation 4 for channels = 256)."""
    raise NotImplementedError("exercise 3.1: block_params")


def nearest_width(c: int, budget: int = TABLE_2_BUDGET) -> int:
    """Exercise 3.2: the path width d >= 1 whose block (cardinality `c`) has the parameter
    count nearest to `budget`. For Table 2's C = 1, 2, 4, 8, 32 it gives d = 64, 40, 24, 14, 4."""
    raise NotImplementedError("exercise 3.2: nearest_width")


def matched_width(c: int, budget: int = TABLE_2_BUDGET, tolerance: float = 0.03) -> int | None:
    """Exercise 3.3: the nearest width if its block is within `tolerance` (relative) of
    `budget`, else None. Try C = 16: why does Table 2 have no row for it?"""
    raise NotImplementedError("exercise 3.3: matched_width")


def block_macs(c: int, d: int, hw: int, channels: int = 256) -> int:
    """Exercise 3.4: multiply-adds of the block on one `hw` x `hw` feature map (stride 1)."""
    raise NotImplementedError("exercise 3.4: block_macs")
