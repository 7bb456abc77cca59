"""Reuse freed memory across training steps instead of returning it to the OS.

A training step allocates its activations and gradients and frees them by the end, the same
sizes every step. glibc's malloc serves blocks above its mmap threshold (which it raises to
at most 32 MB) with fresh pages from the OS and returns them at free, and gives the top of
its heap back above the trim threshold, so each step pays the page faults of its large
arrays again: 400 faults for each 33.5 MB array (a 64x128x32x32 float32 activation of
ResNeXt-29's first stage at batch 64), and a batch norm writing into a fresh one took 1.5
times as long as into one already mapped. With both thresholds raised, freed blocks stay in
the process and the next step's arrays of the same sizes reuse them, already mapped (no
fault at all). The peak resident set stays that of the largest step.

Only glibc has these knobs (`mallopt`); elsewhere nothing changes.

Two facts about memory the kernels decide by: the size of the last-level cache (an output
larger than it cannot stay there for the next layer, so a kernel may write it past the
caches), and outputs that start on a cache line (`empty_aligned`), which such writes need.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from pathlib import Path

import numpy as np

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap and are kept when freed.
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1


def keep_freed_memory() -> bool:
    """Make malloc keep freed blocks of up to `MMAP_THRESHOLD` bytes for reuse; True where it
    could (glibc)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


CACHE_LINE_BYTES = 64
# where the operating system does not say (not Linux)
DEFAULT_LAST_LEVEL_CACHE_BYTES = 32 << 20
_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")


@functools.cache
def last_level_cache_bytes() -> int:
    """The size of the largest cache the first core shares (Linux: sysfs, e.g. 32 MB for a
    Zen 4 CCD's L3); `DEFAULT_LAST_LEVEL_CACHE_BYTES` where that cannot be read."""
    sizes = []
    for size in _CACHES.glob("index*/size"):
        text = size.read_text().strip().upper()
        unit = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        digits = text.rstrip("KM")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes, default=DEFAULT_LAST_LEVEL_CACHE_BYTES)


def empty_aligned(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """np.empty(shape, dtype) starting on a cache line (NumPy's own may start 16 bytes in)."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = np.empty(size + CACHE_LINE_BYTES, np.uint8)
    start = -buffer.ctypes.data % CACHE_LINE_BYTES
    return buffer[start : start + size].view(dtype).reshape(shape)
