"""The compile progress and the package-wide cache stamp: a kernel compiles once, loads from
the cache while the package's sources are unchanged, and compiles again when they change."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from minitorch_resnext.kernels.cpu import compiling, loss


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    return tmp_path


def fresh_kernel():
    """A new dispatcher of one of the package's kernels (its own cache object)."""
    return numba.njit(cache=True)(loss._backward.py_func)


def call(kernel):
    x = np.zeros((2, 3))
    kernel(x, np.zeros(2, np.int64), 0.0, np.zeros(2), np.ones(2), np.empty_like(x))


def test_kernels_are_cached_under_the_package_hash(cache_dir, monkeypatch, capfd):
    before = len(compiling.COMPILED)
    call(fresh_kernel())
    assert [c.kernel for c in compiling.COMPILED[before:]] == ["loss._backward"]
    assert "compiling loss._backward for float64..." in capfd.readouterr().err
    assert list(cache_dir.rglob("loss._backward-*.nbi"))

    call(fresh_kernel())  # same sources: loaded, not compiled
    assert len(compiling.COMPILED) == before + 1

    monkeypatch.setattr(compiling, "source_stamp", lambda path: "another version")
    call(fresh_kernel())  # its sources changed: compiled again
    assert len(compiling.COMPILED) == before + 2


def test_a_kernel_is_stamped_with_the_files_it_imports_from(cache_dir):
    sources = Path(loss.__file__).resolve().parent
    gemm = {p.name for p in compiling.imported_files(sources / "gemm.py")}
    implicit = {p.name for p in compiling.imported_files(sources / "implicit.py")}
    assert gemm == {"gemm.py", "_numba.py", "activation.py", "blas_threads.py"}  # the epilogue
    assert implicit == {"implicit.py", "_numba.py", "codegen.py", "intrinsics.py", "memory.py",
                        "target.py"}  # memory.py through intrinsics.py
    assert {p.name for p in compiling.imported_files(sources / "loss.py")} == {"loss.py"}
    locator = compiling.PackageStamp.from_function(loss._backward.py_func, loss.__file__)
    assert locator.get_source_stamp() == compiling.source_stamp(sources / "loss.py")
    assert compiling.source_stamp(sources / "gemm.py") != compiling.source_stamp(
        sources / "direct.py")
    assert compiling.PackageStamp.from_function(fresh_kernel, __file__) is None


def test_bench_compile_table_sums_by_kernel():
    from minitorch_resnext.bench.compile import _table

    compiled = [{"kernel": "direct.forward", "signature": "f32", "seconds": 2.0},
                {"kernel": "sgd._update", "signature": "f32", "seconds": 0.5},
                {"kernel": "direct.forward", "signature": "f64", "seconds": 1.5}]
    lines = _table(compiled).splitlines()
    assert lines[2].split() == ["direct.forward", "2", "3.5"]  # the slowest first
    assert lines[3].split() == ["sgd._update", "1", "0.5"]
    assert lines[4].split() == ["total", "3", "4.0"]
