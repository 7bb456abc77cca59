"""Each rank's share of every epoch: `shard_indices` and `DistributedDataLoader`.

All ranks draw the same epoch order (from the loader's seed and the epoch) and rank r takes
every world_size-th index starting at r. So with per-rank batch B / W, the W ranks' step-k
batches together are exactly the step-k batch of one process with batch B: data-parallel
training sees the same global batches as single-process training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np

from ..data import DataLoader, Dataset
from ..data.loader import Transform
from ..tensor import Tensor
from .comm import Communicator, get_communicator

ShardMode = Literal["pad", "drop", "exact"]


def shard_indices(order: np.ndarray, rank: int, world_size: int,
                  mode: ShardMode = "pad") -> np.ndarray:
    """Rank `rank`'s strided share `order[rank::world_size]` of an epoch's order.

    When the length is not a multiple of the world size, `"pad"` first repeats the order's
    leading indices so every rank gets ceil(n / W) (as torch's DistributedSampler does),
    `"drop"` first cuts the tail so every rank gets floor(n / W), and `"exact"` leaves the
    last ranks one index short (a partition, for evaluation: no collective per batch).
    """
    n = len(order)
    if mode == "pad":
        total = math.ceil(n / world_size) * world_size
        order = np.resize(order, total) if n else order  # resize repeats from the start
    elif mode == "drop":
        order = order[:n // world_size * world_size]
    elif mode != "exact":
        raise ValueError(f"shard_indices: mode must be 'pad', 'drop' or 'exact', got {mode!r}")
    return order[rank::world_size]


class DistributedDataLoader(DataLoader):
    """A `DataLoader` that yields only this rank's share (`shard_indices`) of each epoch.

    `batch_size` is per rank. With `even=True` (training) every rank gets the same number of
    samples and batches: padded, or cut with `drop_last`, as ranks must run the same number of
    steps. `even=False` gives an exact partition (evaluation). Each rank augments with its
    own random stream derived from the epoch's.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, transform: Transform | None = None,
                 seed: int = 0, comm: Communicator | None = None, even: bool = True) -> None:
        super().__init__(dataset, batch_size, shuffle, drop_last, transform, seed)
        self.comm = comm if comm is not None else get_communicator()
        self.mode: ShardMode = ("drop" if drop_last else "pad") if even else "exact"

    def num_samples(self) -> int:
        """How many samples this rank gets per epoch."""
        n, w = len(self.dataset), self.comm.world_size
        if self.mode == "pad":
            return math.ceil(n / w)
        if self.mode == "drop":
            return n // w
        return len(range(self.comm.rank, n, w))

    def __len__(self) -> int:
        n = self.num_samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self, order: np.ndarray, transform_rng: np.random.Generator
                 ) -> Iterator[tuple[Tensor, ...]]:
        rank, world_size = self.comm.rank, self.comm.world_size
        if world_size == 1:
            return super()._batches(order, transform_rng)
        seeds = transform_rng.integers(0, 2**63, size=world_size)
        return super()._batches(shard_indices(order, rank, world_size, self.mode),
                                np.random.default_rng(seeds[rank]))
