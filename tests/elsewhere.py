"""Tests that run in another Python process: another CPU build, or Numba's bounds checks on.

Each such process compiles every kernel again (minutes on one core), while the rest of the
suite keeps about one core busy. So the runs start as soon as the tests are collected (the
`elsewhere` marker names how to build a test's run), one after another on a thread of their
own, and the test that owns one waits for its result. A run that no selected test owns is not
started; a session that ends early stops the one in progress.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    """`python argv...` in the repository root with `env` over this process's environment (a
    variable set to None is removed), given `timeout` seconds."""

    argv: tuple[str, ...]
    env: Mapping[str, str | None]
    timeout: float


# how a test's run is built from the session's config; None where the test skips here
RunFor = Callable[[pytest.Config], "Run | None"]

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elsewhere")
_started: dict[RunFor, Future[subprocess.CompletedProcess]] = {}
_live: set[subprocess.Popen] = set()
_temporary: list[str] = []


def early(run_for: RunFor) -> pytest.MarkDecorator:
    """Mark a test whose run (`run_for(config)`) starts when the tests are collected."""
    return pytest.mark.elsewhere.with_args(run_for)


def cache_dir(config: pytest.Config, name: str) -> Path:
    """A folder for such a run's Numba cache: in pytest's cache, kept between sessions so that
    only the first compiles, or a temporary one without it."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return cache.mkdir(name)
    _temporary.append(tempfile.mkdtemp(prefix=f"{name}-"))
    return Path(_temporary[-1])


def _execute(run: Run) -> subprocess.CompletedProcess:
    env = {k: v for k, v in {**os.environ, **run.env}.items() if v is not None}
    proc = subprocess.Popen([sys.executable, *run.argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _live.add(proc)
    try:
        out, err = proc.communicate(timeout=run.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n(stopped after {run.timeout:g} s)"
    finally:
        _live.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Queue the runs of the collected tests marked `elsewhere` (each run once)."""
    for item in items:
        marker = item.get_closest_marker("elsewhere")
        if marker is None or marker.args[0] in _started:
            continue
        run = marker.args[0](config)
        if run is not None:
            _started[marker.args[0]] = _pool.submit(_execute, run)


def result(run_for: RunFor, config: pytest.Config) -> subprocess.CompletedProcess:
    """The finished run of `run_for`: waited for if it was started early, else run now."""
    if run_for in _started:
        return _started[run_for].result()
    run = run_for(config)
    assert run is not None, "the test should have skipped"
    return _execute(run)


def stop() -> None:
    """End the session's runs: those queued are dropped, the one in progress is killed."""
    _pool.shutdown(wait=False, cancel_futures=True)
    for proc in list(_live):
        proc.kill()
    for folder in _temporary:
        shutil.rmtree(folder, ignore_errors=True)
