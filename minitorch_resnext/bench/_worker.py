"""One engine per process, for the benchmarks that compare whole models.

Two OpenMP runtimes in one process (Numba's and PyTorch's) slow each other down, up to
twofold, and a library's spinning threads steal cores from the next one; so each engine
(this project, PyTorch, ONNX Runtime) runs in a process of its own, built by a `setup`
function, and the parent interleaves them by asking each in turn to run its workload n times.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import _common as common

# setup(*args) -> (run the timed workload once, the output to check, facts for the record)
Setup = Callable[..., tuple[Callable[[], Any], Callable[[], np.ndarray], Any]]


class Worker:
    """An engine in a process of its own: `info` is what its setup reported; `ask("output")`
    returns its output, `ask(n)` runs the workload n times and returns the seconds of each,
    `ask("memory")` its process's peak resident set and the one before the first run (MB),
    `ask(("profile", n))` this package's profile of n runs, as text."""

    def __init__(self, name: str, setup: Setup, args: tuple[Any, ...], threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, name, setup, args, threads), daemon=True)
        self.process.start()
        self.info = self.ask(None)

    def ask(self, command: str | int | tuple[str, int] | None) -> Any:
        if command is not None:
            self.conn.send(command)
        status, value = self.conn.recv()
        if status == "error":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        if self.process.is_alive():
            self.conn.send("stop")
        self.process.join()


def _serve(conn: Any, name: str, setup: Setup, args: tuple[Any, ...], threads: int) -> None:
    try:
        with common.blas_threads(threads):
            run, output, info = setup(*args)
            before = _resident_mb()
            conn.send(("ok", info))
            for command in iter(conn.recv, "stop"):
                if command == "output":
                    conn.send(("ok", output()))
                elif command == "memory":
                    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
                    conn.send(("ok", {"peak_rss_mb": peak, "rss_before_steps_mb": before}))
                elif isinstance(command, tuple):
                    conn.send(("ok", _profile(run, command[1])))
                else:
                    conn.send(("ok", _times(run, command)))
    except Exception as e:  # reported to the parent, which raises it
        conn.send(("error", f"{name} worker: {type(e).__name__}: {e}"))


def _times(run: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run()  # ends with something that waits for the device (a value read back)
        times.append(time.perf_counter() - start)
    return times


def _profile(run: Callable[[], Any], n: int) -> str:
    from ..profile import Profiler

    with Profiler(warmup=0) as profiler:
        for _ in range(n):
            run()
    return profiler.report("profile of the step")


def _resident_mb() -> float:
    """The process's resident set now, in MB (from /proc; 0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def set_worker_threads(project: bool, threads: int, command: str) -> None:
    """Set the threads in a worker process. This package's CPU kernels are imported first in the
    project's worker: they make OpenMP threads wait passively, which only works before Numba
    starts them."""
    if project:
        importlib.import_module("minitorch_resnext.kernels.cpu")
    common.set_threads(threads, command)


def interleave(workers: list[Worker], repeats: int, turn: int) -> dict[str, list[float]]:
    """`repeats` timings of each worker, taken in alternating turns of `turn` runs whose first
    run is not timed: after another engine's turn caches are cold and threads asleep."""
    samples: dict[str, list[float]] = {w.name: [] for w in workers}
    while min(map(len, samples.values())) < repeats:
        for w in workers:
            samples[w.name] += w.ask(turn)[1:repeats - len(samples[w.name]) + 1]
    return samples
