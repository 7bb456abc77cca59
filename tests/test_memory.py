"""Freed memory is kept for reuse: a step's large arrays take the last step's pages."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from minitorch_resnext.kernels.cpu import memory


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_large_arrays_reuse_freed_pages():
    if not memory.keep_freed_memory():
        pytest.skip("malloc here has no mallopt (not glibc)")
    n = 40 * 2**20 // 4  # 40 MB of float32: above glibc's own largest mmap threshold
    np.ones(n, np.float32)  # the heap grows once
    before = page_faults()
    for _ in range(5):
        a = np.ones(n, np.float32)
        del a
    # without keeping freed memory each allocation faults in its pages (hundreds of faults)
    assert page_faults() - before < 50
