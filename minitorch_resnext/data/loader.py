"""`DataLoader`: shuffled, seeded, vectorised mini-batches of Tensors."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from ..tensor import Tensor
from .dataset import Dataset

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class DataLoader:
    """Iterate over `dataset` in batches of `batch_size`, yielding tuples of Tensors.

    The order and the random augmentation of an epoch depend only on `(seed, epoch)`, so a
    run can be reproduced, or resumed mid-way, by setting the epoch with `set_epoch`. Each
    `iter()` uses the current epoch and then advances it by one.
    `transform(inputs, rng)` is applied to the first array of every batch (the inputs), as a
    whole batch; the other arrays (labels) pass through unchanged.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size should be a positive integer, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch `epoch`'s order and augmentation."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        order_rng, transform_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence([self.seed, self.epoch]).spawn(2)
        )
        self.epoch += 1
        n = len(self.dataset)
        order = order_rng.permutation(n) if self.shuffle else np.arange(n)
        return self._batches(order, transform_rng)

    def _batches(
        self, order: np.ndarray, transform_rng: np.random.Generator
    ) -> Iterator[tuple[Tensor, ...]]:
        for b in range(len(self)):
            batch = self._fetch(order[b * self.batch_size : (b + 1) * self.batch_size])
            if self.transform is not None:
                batch = (self.transform(batch[0], transform_rng), *batch[1:])
            yield tuple(Tensor._wrap(np.ascontiguousarray(a)) for a in batch)

    def _fetch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            return tuple(getitems(indices))
        samples = [self.dataset[int(i)] for i in indices]
        return tuple(np.stack([np.asarray(s[k]) for s in samples]) for k in range(len(samples[0])))
