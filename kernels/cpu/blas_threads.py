"""BLAS calls split over images on Python threads, each call on one BLAS thread; and the vector
width NumPy's BLAS computes with.

BLAS splits one GEMM over its own threads, which pays only for large products: waking and
joining the threads costs about as much as the 64 x 256 x 64 multiply-adds of a 1x1
convolution of one 16x16 image, so on small images a batched GEMM ran at a third of what the
cores can do. The images of a batch are independent, so here each of `numba.get_num_threads()`
Python threads takes a range of whole images and calls BLAS single-threaded on them; NumPy
releases the GIL inside `matmul`, so the threads run at once. The calling thread takes the
first range itself. Handing a range to a thread and waiting for it costs 50-120 us, so work of
fewer than MIN_SPLIT_MACS multiply-adds runs whole.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import numba
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

# Below this many multiply-adds (about 0.2 ms on one core) a split costs more than the second
# thread saves: a 1x1 convolution of 4.2M ran in 88 us whole and 136 us split on two threads,
# one of 16.8M in 395 and 348 (AMD EPYC, 2 vCPUs).
MIN_SPLIT_MACS = 1 << 23

_LOCK = threading.Lock()  # one split at a time sets BLAS's thread count
_pool: ThreadPoolExecutor | None = None
_workers = 0
# NumPy's BLAS: the libraries loaded now, NumPy's among them (Numba imports it). One loaded
# later is not what `matmul` calls: SciPy's wheels bring an OpenBLAS of their own, which a
# `threadpool_limits` entered before SciPy is imported leaves at its default.
_NUMPY_BLAS = ThreadpoolController().select(user_api="blas")

# OpenBLAS picks its kernels by CPU family when it loads (or takes the family OPENBLAS_CORETYPE
# names) and reports the family's name; the x86 families by the width of the vectors their
# kernels use. A CPU newer than the OpenBLAS build gets an older family's kernels, and
# OPENBLAS_CORETYPE=Haswell holds an AVX-512 CPU to AVX2 ones: half the width its units take.
_OPENBLAS_VECTOR_BYTES = {
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), 64),
    **dict.fromkeys(("haswell", "zen", "sandybridge", "bulldozer", "piledriver",
                     "steamroller", "excavator"), 32),
    **dict.fromkeys(("prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "nano",
                     "opteron", "barcelona"), 16),
}


def _vector_bytes() -> int | None:
    """The vector width of NumPy's BLAS kernels where the library says it (OpenBLAS's family
    name), else None: MKL, BLIS and others dispatch on the CPU's widest vectors themselves."""
    for lib in _NUMPY_BLAS.lib_controllers:
        if lib.internal_api == "openblas":
            return _OPENBLAS_VECTOR_BYTES.get(str(lib.architecture).lower())
    return None


VECTOR_BYTES = _vector_bytes()


def narrower_than(vector_bytes: int) -> bool:
    """Whether NumPy's BLAS is known to compute with narrower vectors than `vector_bytes`."""
    return VECTOR_BYTES is not None and VECTOR_BYTES < vector_bytes


def describe() -> str:
    """NumPy's BLAS as the rules see it, e.g. 'openblas 0.3.31, Haswell kernels (256-bit)'."""
    for lib in _NUMPY_BLAS.lib_controllers:
        family = f", {lib.architecture} kernels" if getattr(lib, "architecture", None) else ""
        width = f" ({VECTOR_BYTES * 8}-bit)" if VECTOR_BYTES else ""
        return f"{lib.internal_api} {lib.version}{family}{width}"
    return "none found"


def ranges(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """`range(n)` cut into up to `parts` consecutive (start, stop) ranges of nearly equal size,
    each starting at a multiple of `align`."""
    blocks = -(-n // align)
    parts = max(1, min(parts, blocks))
    cuts = [i * blocks // parts * align for i in range(parts)] + [n]
    return list(zip(cuts[:-1], cuts[1:]))


def split_images(work: Callable[[int, int], T], n: int, *, macs: int, align: int = 1
                 ) -> list[T]:
    """`work(start, stop)` over `ranges(n, threads, align)`, one range per thread with BLAS
    single-threaded; the results in order. With one thread, a single range, fewer than
    MIN_SPLIT_MACS multiply-adds in all (`macs`) or another split in progress (a call from
    another Python thread), `work(0, n)` runs as it is, BLAS threads and all."""
    parts = ranges(n, numba.get_num_threads(), align)
    if len(parts) == 1 or macs < MIN_SPLIT_MACS or not _LOCK.acquire(blocking=False):
        return [work(0, n)]
    try:
        pool, blas = _resources(len(parts) - 1)
        saved = [lib.num_threads for lib in blas.lib_controllers]
        for lib in blas.lib_controllers:
            lib.set_num_threads(1)
        try:
            futures = [pool.submit(work, *r) for r in parts[1:]]
            try:
                first = work(*parts[0])
            finally:  # no range outlives the call, even when one fails
                wait(futures)
            return [first, *(f.result() for f in futures)]
        finally:
            for lib, count in zip(blas.lib_controllers, saved):
                lib.set_num_threads(count)
    finally:
        _LOCK.release()


def _forget_threads() -> None:
    """In a forked child: the parent's worker threads do not exist there (and its lock may have
    been held by one of them), so start afresh."""
    global _LOCK, _pool, _workers
    _LOCK, _pool, _workers = threading.Lock(), None, 0


os.register_at_fork(after_in_child=_forget_threads)


def blas_thread_count() -> int:
    """How many threads NumPy's BLAS would run one call on now (1 without one): what a GEMM
    that is not split over images runs on."""
    return max((lib.num_threads for lib in _NUMPY_BLAS.lib_controllers), default=1)


def _resources(workers: int) -> tuple[ThreadPoolExecutor, ThreadpoolController]:
    """The worker threads (grown on demand) and NumPy's BLAS."""
    global _pool, _workers
    if _pool is None or _workers < workers:
        if _pool is not None:
            _pool.shutdown()
        _pool, _workers = ThreadPoolExecutor(workers, "minitorch-resnext-blas"), workers
    return _pool, _NUMPY_BLAS
