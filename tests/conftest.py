"""Shared fixtures: every test that takes `device` runs on each backend this machine has.

The suite runs the rule tables' choices of CPU convolution algorithms unless MINITORCH_TUNE=1
(then every convolution large enough is tuned, with the choices kept in a temporary folder,
never the user's cache): every algorithm is exact, so the suite passes either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ.setdefault("MINITORCH_TUNE", "0")  # before the kernels are imported

import elsewhere  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

import minitorch_resnext as mr  # noqa: E402
from minitorch_resnext.kernels.cpu import (  # noqa: E402
    activation,
    blas_threads,
    depthwise,
    pointwise,
)

# The GEMM kernels hand images to other threads only for MIN_SPLIT_MACS multiply-adds or more,
# the depthwise and pointwise kernels and the ReLU only from PARALLEL_MIN_*; the tests' arrays
# are small, so the suite takes those paths on every shape.
blas_threads.MIN_SPLIT_MACS = 0
depthwise.PARALLEL_MIN_MACS = pointwise.PARALLEL_MIN_MACS = 0
activation.PARALLEL_MIN_ELEMENTS = 0

settings.register_profile(
    "default",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300)
# scripts/mutation_check.py: the same examples on every run, and a failure reported as found
# (shrinking a failing kernel case can take longer than finding it)
settings.register_profile("mutation", parent=settings.get_profile("default"), derandomize=True,
                          database=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# MINITORCH_REQUIRE_GPU=1 (set by scripts/gpu_check.py on a GPU machine) turns the skips of
# tests that need a GPU into failures, so that a broken CuPy install cannot pass as "skipped".
REQUIRE_GPU = os.environ.get("MINITORCH_REQUIRE_GPU") == "1"
NO_GPU = "cuda: no usable GPU here (needs CuPy and an NVIDIA GPU)"


def _skip_without_gpu() -> None:
    if not mr.cuda_is_available():
        (pytest.fail if REQUIRE_GPU else pytest.skip)(NO_GPU)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the runs in other processes of the tests collected (`elsewhere`)."""
    if not session.config.option.collectonly:
        elsewhere.start(session.config, session.items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    elsewhere.stop()


@pytest.fixture(scope="session", params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    """A device name; the cuda run is skipped with a reason where no GPU is usable."""
    if request.param == "cuda":
        _skip_without_gpu()
    return request.param


@pytest.fixture(scope="session", params=[pytest.param("cuda", marks=pytest.mark.gpu)])
def gpu(request: pytest.FixtureRequest) -> str:
    """A device other than the CPU, for tests that compare it with the CPU; skipped with a
    reason where none is usable."""
    _skip_without_gpu()
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _tuning_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tuned choices (and those of the commands the tests run) go to a temporary folder."""
    saved = os.environ.get("MINITORCH_CACHE_DIR")
    os.environ["MINITORCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("minitorch-cache"))
    yield
    if saved is None:
        del os.environ["MINITORCH_CACHE_DIR"]
    else:
        os.environ["MINITORCH_CACHE_DIR"] = saved


@pytest.fixture(autouse=True)
def _numba_threads() -> Iterator[None]:
    """Commands run in-process (`bench train --threads 1`) set Numba's thread count for the
    whole process: each test starts with the count the suite started with."""
    import numba

    threads = numba.get_num_threads()
    yield
    numba.set_num_threads(threads)


@pytest.fixture
def rules_only() -> Iterator[None]:
    """The CPU convolution rules alone, for tests of the rule tables."""
    from minitorch_resnext.kernels.cpu import tune

    with tune.enabled(False):
        yield
