"""Small Numba helpers the CPU kernels share: unsigned indexing and row moves, and how finely a
parallel kernel splits a small batch.

They work on flat 1-D arrays with explicit offsets and index them with unsigned integers
(`u`): Numba then emits no negative-index wraparound, so the loops vectorise, and no array
views (whose reference counting costs more than copying a short row) are created per row.
Every offset is in range by construction. They are inlined (`inline="always"`): a call between
Numba functions costs about as much as moving a 56-pixel row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np
from numba import njit

# tasks per thread that a parallel kernel makes at least, where the work can be split: with one
# each, a thread that finishes early waits for the others
TASKS_PER_THREAD = 2


@contextlib.contextmanager
def one_thread_below(work: int, threshold: int) -> Iterator[None]:
    """Run the parallel kernels called inside on the calling thread alone when `work` is below
    `threshold`: waking the pool's sleeping threads (they wait passively) costs more than they
    would take off a small call (the calling thread's count only; restored after)."""
    if work >= threshold or numba.get_num_threads() == 1:
        yield
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def min_tasks_per_group(groups: int) -> int:
    """How many tasks each group's work should be split into, at least, so that the groups give
    every thread TASKS_PER_THREAD tasks (small batches, few groups)."""
    return -(-TASKS_PER_THREAD * numba.get_num_threads() // groups)


@njit(cache=True, inline="always")
def u(i: int) -> int:
    """i as an unsigned array index (no wraparound check; i >= 0 is guaranteed)."""
    return np.uint64(i)


@njit(cache=True)
def ints(a: int, b: int) -> tuple[int, int]:
    """(a, b) typed as plain int64: literal arguments to inlined helpers would make Numba
    compile one specialisation of the helper per literal value."""
    return np.int64(a), np.int64(b)


@njit(cache=True, inline="always")
def valid_cols(offset: int, stride: int, width: int, count: int) -> tuple[int, int]:
    """Indices q in [lo, hi) within [0, count) whose column q*stride + offset lies in [0, width)."""
    lo = max(0, (stride - 1 - offset) // stride)
    hi = min(count, (width - offset + stride - 1) // stride)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def fill(dst: np.ndarray, d: int, n: int, value: float) -> None:
    """dst[d : d + n] = value."""
    for k in range(n):
        dst[u(d + k)] = value


@njit(cache=True, inline="always")
def transfer(
    buf: np.ndarray, b: int, img: np.ndarray, i: int, step: int, n: int, load: bool
) -> None:
    """buf[b + k] <-> img[i + k*step] for k < n (load: into buf). Called with a literal step
    of 1 for the contiguous case, so that after inlining that loop vectorises."""
    if load:
        for k in range(n):
            buf[u(b + k)] = img[u(i + k * step)]
    else:
        for k in range(n):
            img[u(i + k * step)] = buf[u(b + k)]
