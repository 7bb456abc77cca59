"""Worker of tutorial 6: one epoch of SGD on 48 digits, in one process or data-parallel.

    python tutorials/ddp_steps.py OUT.npz                                   # one process
    mpiexec -n 2 python -m mpi4py tutorials/ddp_steps.py OUT.npz            # two ranks
    mpiexec -n 2 python -m mpi4py tutorials/ddp_steps.py OUT.npz --no-sync-bn

The global batch is always 16 images: one process takes all 16, each of two ranks 8 of them.
The model is a small ResNeXt in float64, so that the runs can be compared to ~1e-12. Rank 0
saves the trained weights and batch-norm statistics to OUT.npz.
"""

from __future__ import annotations

import sys

import numpy as np

import minitorch_resnext as mr
from minitorch_resnext import data, distributed, models, optim
from minitorch_resnext import functional as F

GLOBAL_BATCH, IMAGES = 16, 48


def main(out: str, sync_bn: bool) -> None:
    comm = distributed.init("mpi")  # started without mpiexec: a world of one process
    mr.manual_seed(0)
    model = models.resnext_small(cardinality=4, base_width=2).double()
    if sync_bn:  # SyncBatchNorm + gradient averaging (with one process: the model itself)
        forward = distributed.DataParallelRun(comm).wrap(model)
    else:  # gradient averaging only: each rank normalises with its own half-batch statistics
        forward = distributed.DistributedDataParallel(model, comm)
    digits = data.Digits(train=True)
    train_set = data.TensorDataset(digits.data[:IMAGES].astype(np.float64), digits.targets[:IMAGES])
    loader = distributed.DistributedDataLoader(train_set, GLOBAL_BATCH // comm.world_size,
                                               shuffle=True, seed=0, comm=comm)
    sgd = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for x, y in loader:
        sgd.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        if isinstance(forward, distributed.DistributedDataParallel):
            forward.finish_gradient_sync()  # wait for the last averaged gradients
        sgd.step()
    if comm.is_main:
        np.savez(out, **model.state_dict())
        print(f"{comm.describe()}: {len(loader)} steps of {GLOBAL_BATCH // comm.world_size} "
              f"images per rank, saved {out}")


if __name__ == "__main__":
    main(sys.argv[1], sync_bn="--no-sync-bn" not in sys.argv[2:])
