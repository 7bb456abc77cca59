"""`minitorch-resnext bench compile`: what a first run compiles, kernel by kernel, and the
cost of a fresh clone's first `minitorch-resnext train`.

A child process with an empty Numba cache (a new NUMBA_CACHE_DIR) builds a model and takes
what `train` takes on it: one training step (forward, cross-entropy with label smoothing,
backward, SGD with momentum and weight decay) and one evaluation forward. Every kernel Numba
compiles is recorded with its argument types and seconds (`kernels.cpu.compiling`). A second
child does the same with the cache the first one filled: what every later run pays to load
the kernels. `--train` also times the whole default `minitorch-resnext train` (imports and
data included, progress bars off) with empty Numba and tuning caches, as a fresh clone's first
run does.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from . import _common as common

HELP = "measure the first run's kernel compilation (empty Numba cache), kernel by kernel"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench compile` to its parser."""
    from ..models import DEFAULT_MODEL, MODELS

    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS),
                        help=f"model whose first step is compiled (default: {DEFAULT_MODEL})")
    parser.add_argument("--threads", type=int,
                        help="CPU threads (default: numba.get_num_threads())")
    parser.add_argument("--train", action="store_true",
                        help="also time a whole default `minitorch-resnext train` with an empty "
                             "cache")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="directory for the JSON result (default: bench-results)")


def run(args: argparse.Namespace) -> int:
    """Run `bench compile`: compile with an empty and a filled cache, print the table, write JSON."""
    threads = common.set_threads(args.threads, "bench compile")
    machine = common.machine_info()
    print(f"bench compile: {args.model}, {machine['cpu']} ({machine['isa']}), {threads} "
          f"thread(s), load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as cache:
        cold = _in_child(args.model, cache, threads)
        warm = _in_child(args.model, cache, threads)
    print()
    print(_table(cold["compiled"]))
    print()
    print(f"first step and evaluation: {cold['seconds']:.1f} s with an empty cache "
          f"({sum(c['seconds'] for c in cold['compiled']):.1f} s compiling "
          f"{len(cold['compiled'])} kernel signatures), {warm['seconds']:.1f} s with the cache "
          f"({len(warm['compiled'])} compiled); imports {cold['import_seconds']:.1f} s")
    train = _time_train(threads) if args.train else None
    if train is not None:
        print(f"minitorch-resnext train with empty caches: {train['wall_s']:.1f} s wall, "
              f"exit status {train['returncode']}; {train['last_line']}")
    path = args.out / "compile-cpu.json"
    common.write_json(path, {
        "benchmark": "compile",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "threads": threads,
        "versions": common.package_versions(["minitorch-resnext", "numpy", "numba"]),
        "model": args.model,
        "empty_cache": cold,
        "filled_cache": warm,
        "train": train,
    })
    print(f"wrote {path}")
    return 0 if train is None or train["returncode"] == 0 else 1


def _in_child(model: str, cache: str, threads: int) -> dict[str, Any]:
    """`_first_step` in a fresh process whose Numba cache is `cache`."""
    os.environ["NUMBA_CACHE_DIR"] = cache  # inherited by the child, read when Numba loads
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_first_step, model, threads).result()
    finally:
        del os.environ["NUMBA_CACHE_DIR"]


def _first_step(model_name: str, threads: int) -> dict[str, Any]:
    """Import, build `model_name` and take one training step and one evaluation forward;
    seconds of each part and the kernels compiled."""
    start = time.perf_counter()
    import numpy as np

    import minitorch_resnext as mr
    from minitorch_resnext import functional as F
    from minitorch_resnext import models, optim
    from minitorch_resnext.kernels.cpu import compiling

    common.set_threads(threads, "bench compile")
    imported = time.perf_counter()
    model = models.get_model(model_name)
    shape = (64, model.in_channels, model.input_size, model.input_size)
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal(shape, dtype=np.float32))
    y = mr.tensor(rng.integers(0, model.num_classes, shape[0]))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    with common.blas_threads(threads):
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
        with mr.no_grad():
            model(x).numpy()
    return {"import_seconds": imported - start, "seconds": time.perf_counter() - imported,
            "compiled": [{"kernel": c.kernel, "signature": c.signature, "seconds": c.seconds}
                         for c in compiling.COMPILED]}


def _time_train(threads: int) -> dict[str, Any]:
    """Wall time of `python -m minitorch_resnext train --no-progress` as on a fresh clone (empty
    Numba and tuning caches), on `threads` threads (Numba's, OpenMP's and BLAS's)."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, MINITORCH_CACHE_DIR=cache, **{
            f"{pool}_NUM_THREADS": str(threads) for pool in ("NUMBA", "OMP", "OPENBLAS", "MKL")})
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "minitorch_resnext", "train",
                               "--no-progress", "--out-dir", out], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
    out = done.stdout.strip().splitlines()
    return {"wall_s": wall, "returncode": done.returncode, "last_line": out[-1] if out else "",
            "output": out + done.stderr.strip().splitlines()}


def _table(compiled: list[dict[str, Any]]) -> str:
    by_kernel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in compiled:
        by_kernel[c["kernel"]].append(c)
    rows = [[kernel, str(len(cs)), f"{sum(c['seconds'] for c in cs):.1f}"]
            for kernel, cs in sorted(by_kernel.items(), key=lambda kv: -sum(
                c["seconds"] for c in kv[1]))]
    rows.append(["total", str(len(compiled)), f"{sum(c['seconds'] for c in compiled):.1f}"])
    return common.format_table(["kernel", "signatures", "seconds"], rows, [False, True, True])
