"""Exercises of tutorial 5, the GPU kernel: no GPU needed. Replace each `raise
NotImplementedError` with your code, then check it: `pytest tests/exercises -k "t5 and yours"`.

A warp is 32 threads; device memory is read in 128-byte lines; shared memory has 32 banks of
4-byte words (word w lives in bank w % 32).
Reference solutions: `tutorials/exercises/solutions/t5_gpu_kernel.py`.
"""

from __future__ import annotations

import numpy as np


def lines_touched(byte_addresses: np.ndarray, line_bytes: int = 128) -> int:
    """Exercise 5.1: how many `line_bytes` lines of device memory one warp's access touches
    (each thread reads the 4-byte float at its address). One line: coalesced; 32: scattered."""
    raise NotImplementedError("exercise 5.1: lines_touched")


def bank_conflict_ways(word_addresses: np.ndarray, banks: int = 32) -> int:
    """Exercise 5.2: the ways of the worst bank conflict of one warp's shared-memory read: the
    largest number of *distinct* words that fall in one bank (threads reading the same word
    share one broadcast). 1 means conflict-free."""
    raise NotImplementedError("exercise 5.2: bank_conflict_ways")


def input_window(tile_hw: tuple[int, int], kernel_hw: tuple[int, int],
                 dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Exercise 5.3: the (rows, columns) of the input window a thread block stages in shared
    memory so that a tile of `tile_hw` outputs of a stride-1 convolution reads only from it:
    the tile plus its halo."""
    raise NotImplementedError("exercise 5.3: input_window")


def grid_blocks(out_hw: tuple[int, int], tile_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Exercise 5.4: the (row, column) of the first output of every tile needed to cover an
    `out_hw` map with tiles of `tile_hw`, row by row, as `blockIdx.x` numbers them (tiles at
    the right and bottom edges may stick out; their threads outside the map do nothing)."""
    raise NotImplementedError("exercise 5.4: grid_blocks")
