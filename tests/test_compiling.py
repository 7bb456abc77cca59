"""The compile progress and the package-wide cache stamp: a kernel compiles once, loads from
the cache while the package's sources are unchanged, and compiles again when they change."""

from __future__ import annotations

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

    monkeypatch.setattr(compiling, "_STAMP", "another version of the package")
    call(fresh_kernel())  # any source of the package changed: compiled again
    assert len(compiling.COMPILED) == before + 2


def test_only_the_packages_files_get_the_package_stamp(cache_dir):
    locator = compiling.PackageStamp.from_function(loss._backward.py_func, loss.__file__)
    assert locator is not None and locator.get_source_stamp() == compiling.package_hash()
    assert compiling.PackageStamp.from_function(test_only_the_packages_files_get_the_package_stamp,
                                                __file__) is None


def test_bench_compile_table_sums_by_kernel():
    from minitorch_resnext.bench.compile import _table

    compiled = [{"kernel": "direct.forward", "signature": "f32", "seconds": 2.0},
                {"kernel": "sgd._update", "signature": "f32", "seconds": 0.5},
                {"kernel": "direct.forward", "signature": "f64", "seconds": 1.5}]
    lines = _table(compiled).splitlines()
    assert lines[2].split() == ["direct.forward", "2", "3.5"]  # the slowest first
    assert lines[3].split() == ["sgd._update", "1", "0.5"]
    assert lines[4].split() == ["total", "3", "4.0"]
