"""Data-parallel training of tiny float64 models; run as a 2-rank job by test_distributed_mpi.

`python -m mpi4py ddp_train.py OUT` trains each case of `CASES` with per-rank batch
BATCH / world_size and saves every rank's final state to OUT/<case>_rank<r>.npz (with the
number of buckets and whether backward finished the gradient sync by itself). The test
imports `run` to train the same cases in one process, without any distributed wrapper.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import minitorch_resnext as mr
from minitorch_resnext import distributed as dist
from minitorch_resnext import functional as F
from minitorch_resnext import nn, optim
from minitorch_resnext.data import DataLoader, TensorDataset

SAMPLES, BATCH, EPOCHS = 24, 8, 2  # 3 steps per epoch
# case: (model kind, bucket cap in MB; 0 puts each parameter in its own bucket)
CASES = {"syncbn": ("bn", 25.0), "syncbn_unbucketed": ("bn", 0.0), "nobn": ("plain", 25.0)}


def dataset() -> TensorDataset:
    rng = np.random.default_rng(1)
    return TensorDataset(rng.standard_normal((SAMPLES, 3, 6, 6)), rng.integers(0, 4, SAMPLES))


class Image(nn.Module):
    """(N, F) -> (N, F, 1, 1), so that batch norm sees F channels."""

    def forward(self, x: mr.Tensor) -> mr.Tensor:
        return x.reshape(x.shape[0], -1, 1, 1)


def build(kind: str) -> nn.Module:
    """A small net with batch norm ("bn") or without ("plain"), seeded, in float64."""
    mr.manual_seed(0)
    bn = kind == "bn"

    def norm(c: int) -> list[nn.Module]:
        return [Image(), nn.BatchNorm2d(c), nn.Flatten()] if bn else []

    return nn.Sequential(
        nn.Flatten(), nn.Linear(108, 16), *norm(16), nn.ReLU(),
        nn.Linear(16, 8), *norm(8), nn.ReLU(), nn.Linear(8, 4),
    ).double()


def run(case: str, comm: dist.Communicator | None) -> tuple[dict[str, np.ndarray], int, bool]:
    """Train `case`: data-parallel over `comm`, or (None) as one plain process with BATCH.

    Returns the final state, the number of buckets, and whether every backward completed
    the gradient sync by itself (buckets started from the hooks)."""
    kind, cap = CASES[case]
    model = build(kind)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    if comm is None:
        loader: DataLoader = DataLoader(dataset(), BATCH, shuffle=True, seed=3)
        forward, buckets = model, 0
    else:
        model = dist.convert_sync_batchnorm(model, comm)
        forward = ddp = dist.DistributedDataParallel(model, comm, bucket_cap_mb=cap)
        loader = dist.DistributedDataLoader(dataset(), BATCH // comm.world_size, shuffle=True,
                                            seed=3, comm=comm)
        buckets = len(ddp.buckets)
    self_finished = True
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(forward(x), y).backward()
            if comm is not None:
                self_finished &= not ddp._in_progress()
                ddp.finish_gradient_sync()
            opt.step()
    return model.state_dict(), buckets, self_finished


def main(out: Path) -> None:
    comm = dist.init("mpi")
    for case in CASES:
        state, buckets, self_finished = run(case, comm)
        np.savez(out / f"{case}_rank{comm.rank}.npz", __buckets__=buckets,
                 __self_finished__=self_finished, **state)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
