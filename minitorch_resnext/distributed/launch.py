"""`DataParallelRun`: what a training loop needs to run on every rank of a communicator.

With world size 1 everything is the plain single-process path, so a trainer can use it
unconditionally:

    run = DataParallelRun(comm)                       # comm=None: the default communicator
    forward = run.wrap(model)                         # SyncBatchNorm + DistributedDataParallel
    loader = run.train_loader(train_set, batch_size, shuffle=True, seed=seed)  # global batch
    ...  loss.backward(); run.finish_gradient_sync(); optimizer.step()
    loss_sum, seen, stop = run.sum(loss_sum, seen, stop)   # one allreduce of a few numbers
    if run.is_main: save checkpoints, write logs
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import Dataset
from ..nn import Module
from .comm import Communicator, get_communicator
from .data_parallel import DistributedDataParallel
from .loader import DistributedDataLoader
from .sync_batchnorm import convert_sync_batchnorm


class DataParallelRun:
    """Data-parallel training over `comm`: global batch statistics (SyncBatchNorm), averaged
    gradients, sharded data, and rank 0 as the one that logs and saves."""

    def __init__(self, comm: Communicator | None = None, bucket_cap_mb: float = 25.0) -> None:
        self.comm = comm if comm is not None else get_communicator()
        self.bucket_cap_mb = bucket_cap_mb
        self.ddp: DistributedDataParallel | None = None

    @property
    def is_main(self) -> bool:
        return self.comm.is_main

    @property
    def world_size(self) -> int:
        return self.comm.world_size

    def wrap(self, model: Module) -> Module:
        """The module to call in training: `model` itself alone, else its batch norms made
        `SyncBatchNorm` (in place, same tensors) and the whole wrapped for gradient averaging.
        Save, load and evaluate `model`."""
        if self.world_size == 1:
            return model
        # SyncBatchNorm keeps the running statistics equal on all ranks: no buffer broadcasts
        self.ddp = DistributedDataParallel(convert_sync_batchnorm(model, self.comm), self.comm,
                                           self.bucket_cap_mb, broadcast_buffers=False)
        return self.ddp

    def train_loader(self, dataset: Dataset, batch_size: int, **kwargs: Any
                     ) -> DistributedDataLoader:
        """This rank's share of `dataset` in batches of `batch_size / world_size`, so that the
        global batch is `batch_size`; every rank gets the same number of batches."""
        per_rank, rest = divmod(batch_size, self.world_size)
        if rest or not per_rank:
            raise ValueError(f"batch size {batch_size} does not split evenly over "
                             f"{self.world_size} ranks")
        return DistributedDataLoader(dataset, per_rank, comm=self.comm, **kwargs)

    def eval_loader(self, dataset: Dataset, batch_size: int, **kwargs: Any
                    ) -> DistributedDataLoader:
        """This rank's part of an exact partition of `dataset`, in batches of `batch_size`
        (sum the per-rank results with `sum`)."""
        return DistributedDataLoader(dataset, batch_size, comm=self.comm, even=False, **kwargs)

    def finish_gradient_sync(self) -> None:
        """Complete the gradient averaging (after backward, before the optimizer step)."""
        if self.ddp is not None:
            self.ddp.finish_gradient_sync()

    def sum(self, *values: float) -> tuple[float, ...]:
        """The sums over the ranks of a few numbers, in one allreduce (float64)."""
        if self.world_size == 1:
            return tuple(float(v) for v in values)
        buffer = np.array(values, dtype=np.float64)
        self.comm.host.allreduce(buffer)
        return tuple(buffer.tolist())
