"""BLAS work split over images on Python threads (`kernels.cpu.blas_threads`): the ranges cover
the batch exactly, each range runs once with BLAS single-threaded, results come back in order,
BLAS's thread count is what it was afterwards, also when a range fails, and a forked child
does not wait on its parent's threads."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import types

import numba
import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import ThreadpoolController, threadpool_limits

from minitorch_resnext.kernels.cpu import blas_threads as blas_threads_module
from minitorch_resnext.kernels.cpu.blas_threads import blas_thread_count, ranges, split_images


@given(st.integers(1, 200), st.integers(1, 9), st.integers(1, 16))
def test_ranges_cover_the_batch_in_aligned_nearly_equal_parts(n, parts, align):
    got = ranges(n, parts, align)
    assert got[0][0] == 0 and got[-1][1] == n
    assert all(a < b for a, b in got)
    assert all(b == c for (_, b), (c, _) in zip(got, got[1:]))  # consecutive, no gap
    assert all(a % align == 0 for a, _ in got)
    assert len(got) == min(parts, -(-n // align))
    blocks = [-(-(b - a) // align) for a, b in got]
    assert max(blocks) - min(blocks) <= 1


@contextlib.contextmanager
def threads(n: int):
    """Numba and BLAS at `n` threads."""
    saved = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(saved)


needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                               reason="one CPU: nothing to split over")


@pytest.mark.parametrize("n", [1, pytest.param(2, marks=needs_two)])
def test_the_blas_thread_count_is_what_blas_is_limited_to(n):
    """NumPy's BLAS, whose count the tuner keeps its choices under (`tune.machine`)."""
    with threadpool_limits(n, user_api="blas"):
        assert blas_thread_count() == n


def test_a_blas_loaded_after_numpys_does_not_count():
    """SciPy's wheels bring an OpenBLAS of their own, loaded on SciPy's import: left at
    another thread count, it is not what NumPy's matmul runs on."""
    import scipy.linalg  # noqa: F401

    numpys = {lib.filepath for lib in blas_threads_module._NUMPY_BLAS.lib_controllers}
    later = [lib for lib in ThreadpoolController().select(user_api="blas").lib_controllers
             if lib.filepath not in numpys]
    if not later:
        pytest.skip("SciPy calls NumPy's BLAS library here")
    with threadpool_limits(1, user_api="blas"):
        later[0].set_num_threads(3)
        assert blas_thread_count() == 1


@needs_two
def test_each_range_runs_once_on_its_own_thread_with_blas_single_threaded():
    seen = []

    def work(start, stop):
        seen.append((start, stop, threading.current_thread().name, blas_thread_count()))
        return list(range(start, stop))

    with threads(2):
        got = split_images(work, 9, macs=1, align=2)
        after = blas_thread_count()
    assert [i for part in got for i in part] == list(range(9))  # in order
    assert sorted((a, b) for a, b, _, _ in seen) == [(0, 4), (4, 9)]
    assert len({name for _, _, name, _ in seen}) == 2
    assert {inside for *_, inside in seen} == {1}
    assert after == 2


@needs_two
def test_a_failing_range_raises_and_leaves_blas_as_it_was():
    def work(start, stop):
        if start:
            raise ValueError("range failed")
        return start

    with threads(2):
        with pytest.raises(ValueError, match="range failed"):
            split_images(work, 4, macs=1)
        assert blas_thread_count() == 2
        assert split_images(lambda a, b: (a, b), 4, macs=1) == [(0, 2), (2, 4)]  # usable


@needs_two
def test_a_split_inside_a_split_runs_whole_on_its_thread():
    with threads(2):
        got = split_images(lambda a, b: split_images(lambda c, d: (c, d), b - a, macs=1), 4,
                           macs=1)
    assert got == [[(0, 2)], [(0, 2)]]


@needs_two
def test_small_work_runs_whole_on_the_calling_thread(monkeypatch):
    """Below MIN_SPLIT_MACS (the suite sets it to 0 elsewhere) handing work over costs more
    than a second thread saves."""
    monkeypatch.setattr(blas_threads_module, "MIN_SPLIT_MACS", 1000)
    with threads(2):
        assert split_images(lambda a, b: (a, b, blas_thread_count()), 8, macs=999) == [(0, 8, 2)]
        assert split_images(lambda a, b: (a, b), 8, macs=1000) == [(0, 4), (4, 8)]


def test_one_thread_runs_the_whole_batch_as_it_is():
    with threads(1):
        assert split_images(lambda a, b: (a, b, blas_thread_count()), 8, macs=1) == [(0, 8, 1)]


def _split_in_child(queue) -> None:
    with threads(2):
        queue.put(split_images(lambda a, b: (a, b), 4, macs=1))


@needs_two
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # forking a threaded process
def test_a_forked_child_splits_on_threads_of_its_own():
    with threads(2):
        split_images(lambda a, b: (a, b), 4, macs=1)  # the parent's worker thread exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_split_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0, "the child hung on the parent's worker threads"
    assert queue.get(timeout=5) == [(0, 2), (2, 4)]


@pytest.mark.parametrize("api, family, width", [
    ("openblas", "Haswell", 32), ("openblas", "Zen", 32), ("openblas", "SkylakeX", 64),
    ("openblas", "SapphireRapids", 64), ("openblas", "Nehalem", 16),
    ("openblas", "NeoverseN1", None),  # a family not listed: not known
    ("mkl", None, None),  # MKL dispatches on the CPU's widest vectors itself
])
def test_blas_vector_width_from_openblas_family(monkeypatch, api, family, width):
    lib = types.SimpleNamespace(internal_api=api, architecture=family)
    monkeypatch.setattr(blas_threads_module, "_NUMPY_BLAS",
                        types.SimpleNamespace(lib_controllers=[lib]))
    assert blas_threads_module._vector_bytes() == width
    lib.version = "0.3.31"
    assert blas_threads_module.describe().startswith(
        f"{api} 0.3.31" + (f", {family} kernels" if family else ""))
    monkeypatch.setattr(blas_threads_module, "VECTOR_BYTES", width)
    assert blas_threads_module.narrower_than(64) == (width is not None and width < 64)
    assert not blas_threads_module.narrower_than(16)
