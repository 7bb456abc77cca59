"""`minitorch-resnext bench allreduce`: allreduce between ranks, and its share of a training step.

Run under MPI: `mpiexec -n 2 python -m mpi4py -m minitorch_resnext bench allreduce`.

1. Allreduce (sum, in place) of float32 buffers of several sizes through the project's
   communicator (MPI on cpu, NCCL on cuda): median over repeats, each started together after a
   barrier and timed on rank 0; algorithm bandwidth = bytes / time, bus bandwidth = algorithm
   bandwidth * 2 (W - 1) / W (the bytes each rank's link carries in a ring allreduce).
2. One SGD step of a small ResNeXt with per-rank batch `--batch / W`, timed (median) as
   `local` (every rank trains alone at the same time: no communication), `ddp` (gradients
   averaged in buckets, plain batch norm with buffers broadcast) and `ddp+syncbn` (as
   `train --distributed` runs: SyncBatchNorm, no buffer broadcasts). For each
   data-parallel variant: the time blocked inside communicator calls (meaningful on cpu, where
   the calls are synchronous), that time's fraction of the step, and the slowdown against
   `local`, which also counts copies into the buckets and lost overlap.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..distributed.comm import Communicator, ReduceOp, Work
from . import _common as common

HELP = "time allreduce between MPI ranks and its share of a data-parallel step (under mpiexec)"
SIZES = (2**10, 2**16, 2**20, 25_000_000)
LAUNCH = "mpiexec -n 2 python -m mpi4py -m minitorch_resnext bench allreduce"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench allreduce` to its parser."""
    from ..models import DEFAULT_MODEL

    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cpu: MPI on NumPy arrays; cuda: NCCL, one GPU per rank")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), metavar="FLOATS",
                        help="buffer sizes in float32 elements (default: 1 Ki, 64 Ki, 1 Mi, 25 M)")
    parser.add_argument("--repeats", type=int, default=10, help="timed allreduces per size")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model for the step timing")
    parser.add_argument("--image", type=int, nargs=3, default=[1, 16, 16], metavar=("C", "H", "W"),
                        help="input image shape (default: 1 16 16, the digits)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (split over ranks)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--bucket-mb", type=float, default=25.0, help="gradient bucket cap (MB)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: sizes 1 Ki and 1 Mi, 3 repeats, 3 steps")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="directory for the JSON result (default: bench-results)")


def run(args: argparse.Namespace) -> int:
    """Run `bench allreduce` (under mpiexec) and write its results; returns the exit status."""
    from .. import distributed as dist

    comm = dist.init("auto", device=args.device)
    if comm.world_size < 2:
        raise SystemExit(f"bench allreduce: needs two or more ranks; run it as `{LAUNCH}`")
    if args.batch % comm.world_size:
        raise SystemExit(f"bench allreduce: --batch {args.batch} must split evenly over "
                         f"{comm.world_size} ranks")
    sizes, repeats, steps = ([2**10, 2**20], 3, 3) if args.quick else (
        args.sizes, args.repeats, args.steps)
    xp, sync = _device(args.device)
    say = print if comm.is_main else _quiet
    say(f"{comm.describe()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    rows = [_allreduce(comm, xp, sync, n, repeats) for n in sizes]
    say(common.format_table(
        ["floats", "MB", "median ms", "q1 ms", "q3 ms", "algbw GB/s", "busbw GB/s"],
        [[f"{r['floats']:,}", f"{r['bytes'] / 1e6:.3f}", f"{r['median_ms']:.3f}",
          f"{r['q1_ms']:.3f}", f"{r['q3_ms']:.3f}", f"{r['algbw_gbs']:.2f}",
          f"{r['busbw_gbs']:.2f}"] for r in rows], [True] * 7))

    step = _steps(args, comm, xp, sync, steps, dist)
    say(f"\n{args.model}, batch {args.batch} ({args.batch // comm.world_size} per rank), "
        f"{step['parameters']:,} parameters, gradient allreduce alone "
        f"{step['grad_allreduce_ms']:.2f} ms")
    say(common.format_table(
        ["variant", "step ms", "blocked in comm ms", "comm share", "slowdown vs local"],
        [[v["variant"], f"{v['step_ms']:.2f}", _opt(v.get("comm_ms"), ".2f"),
          _opt(v.get("comm_fraction"), ".1%"), _opt(v.get("slowdown"), ".1%")]
         for v in step["variants"]], [False, True, True, True, True]))
    if comm.is_main:
        path = args.out / f"allreduce-{args.device}{'-quick' if args.quick else ''}.json"
        common.write_json(path, {
            "benchmark": "allreduce",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": LAUNCH, "communicator": comm.describe(), "world_size": comm.world_size,
            "machine": common.machine_info() | {"load_average_1_5_15": os.getloadavg()},
            "versions": common.package_versions(["minitorch-resnext", "numpy", "numba",
                                                 "mpi4py", "mpich", "cupy"]),
            "settings": {"repeats": repeats, "steps": steps, "bucket_mb": args.bucket_mb,
                         "statistic": "median on rank 0, each call started after a barrier"},
            "allreduce": rows, "step": step,
        })
        print(f"wrote {path}")
    return 0


def _quiet(*_: Any) -> None:
    return None


def _opt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _device(name: str) -> tuple[Any, Callable[[], None]]:
    """The array module and a function that waits for the device's queued work."""
    from ..backend import get_backend

    xp = get_backend(name).xp
    if name == "cpu":
        return xp, _quiet
    return xp, lambda: xp.cuda.get_current_stream().synchronize()


def _timed(comm: Any, sync: Callable[[], None], fn: Callable[[], None], n: int) -> list[float]:
    """Seconds of `n` calls of `fn` (after one warm-up), each started after a barrier."""
    samples = []
    for i in range(n + 1):
        comm.barrier()
        start = time.perf_counter()
        fn()
        sync()
        if i:
            samples.append(time.perf_counter() - start)
    return samples


def _allreduce(comm: Any, xp: Any, sync: Callable[[], None], floats: int, repeats: int
               ) -> dict[str, Any]:
    buffer = xp.ones(floats, dtype=xp.float32)
    stats = common.Stats.of(_timed(comm, sync, lambda: comm.allreduce(buffer), repeats))
    nbytes = buffer.nbytes
    algbw = nbytes / stats.median / 1e9
    return {"floats": floats, "bytes": nbytes, **stats.to_json(), "algbw_gbs": algbw,
            "busbw_gbs": algbw * 2 * (comm.world_size - 1) / comm.world_size}


class _TimedComm(Communicator):
    """Forwards the collectives to `inner` and adds the seconds spent inside them."""

    def __init__(self, inner: Communicator) -> None:
        self.inner, self.name = inner, inner.name
        self.rank, self.world_size = inner.rank, inner.world_size
        self.seconds = 0.0

    def _time(self, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def broadcast(self, array: Any, root: int = 0) -> None:
        self._time(self.inner.broadcast, array, root)

    def allreduce(self, array: Any, op: ReduceOp = "sum") -> None:
        self._time(self.inner.allreduce, array, op)

    def iallreduce(self, array: Any, op: ReduceOp = "sum") -> Work:
        return _TimedWork(self._time(self.inner.iallreduce, array, op), self)

    def barrier(self) -> None:
        self._time(self.inner.barrier)


class _TimedWork(Work):
    def __init__(self, work: Work, comm: _TimedComm) -> None:
        self.work, self.comm = work, comm

    def wait(self) -> None:
        self.comm._time(self.work.wait)

    def test(self) -> bool:
        return self.comm._time(self.work.test)


def _step(forward: Callable[[Any], Any], finish: Callable[[], None], opt: Any, x: Any, y: Any
          ) -> Callable[[], None]:
    """One SGD step on (x, y); `finish` completes the gradient sync before the update."""
    from .. import functional as F

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        finish()
        opt.step()

    return step


def _steps(args: argparse.Namespace, comm: Any, xp: Any, sync: Callable[[], None], steps: int,
           dist: Any) -> dict[str, Any]:
    import numpy as np

    from .. import models, optim
    from ..tensor import Tensor, manual_seed

    per_rank = args.batch // comm.world_size
    rng = np.random.default_rng(comm.rank)
    x = Tensor(rng.standard_normal((per_rank, *args.image), dtype=np.float32), device=args.device)
    y = Tensor(rng.integers(0, 10, per_rank), device=args.device)
    variants, local_ms = [], None
    for variant in ("local", "ddp", "ddp+syncbn"):
        manual_seed(0)
        model = models.get_model(args.model, num_classes=10, in_channels=args.image[0])
        model = model.to(args.device)
        timed = _TimedComm(comm)
        forward, finish = model, _quiet
        if variant != "local":
            sync_bn = variant == "ddp+syncbn"  # as the trainer runs: no buffer broadcasts
            if sync_bn:
                model = dist.convert_sync_batchnorm(model, timed)
            forward = ddp = dist.DistributedDataParallel(model, timed, args.bucket_mb,
                                                         broadcast_buffers=not sync_bn)
            finish = ddp.finish_gradient_sync
        step = _step(forward, finish, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), x, y)
        step()  # warm-up outside the count of blocked time
        timed.seconds = 0.0
        stats = common.Stats.of(_timed(comm, sync, step, steps))
        record: dict[str, Any] = {"variant": variant, "step_ms": stats.median * 1e3,
                                  "step": stats.to_json()}
        if variant == "local":
            local_ms = record["step_ms"]
        else:
            per_step = timed.seconds / (steps + 1)  # _timed runs one more, untimed call
            record |= {"comm_ms": per_step * 1e3, "comm_fraction": per_step / stats.median,
                       "slowdown": 1 - local_ms / record["step_ms"]}  # type: ignore[operator]
        variants.append(record)
    n_params = sum(p.numel() for p in model.parameters())
    grads = xp.ones(n_params, dtype=xp.float32)
    grad_ms = common.Stats.of(_timed(comm, sync, lambda: comm.allreduce(grads), steps)).median
    return {"model": args.model, "image": args.image, "batch": args.batch,
            "per_rank_batch": per_rank, "parameters": n_params,
            "grad_allreduce_ms": grad_ms * 1e3, "variants": variants}
