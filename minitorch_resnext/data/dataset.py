"""`Dataset` and `TensorDataset`; batches are fetched in one go through `__getitems__`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tensor import Tensor


class Dataset:
    """A map-style dataset: `dataset[i]` is one sample (a tuple of arrays), `len(dataset)`.

    Subclasses holding arrays should also define `__getitems__(indices)` returning the whole
    batch as a tuple of stacked arrays; `DataLoader` then gathers a batch with one fancy-index
    per array instead of one Python call per sample.
    """

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are rows of the given arrays (or Tensors), which share their first dimension."""

    def __init__(self, *tensors: Tensor | np.ndarray) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(t.numpy() if isinstance(t, Tensor) else np.asarray(t) for t in tensors)
        sizes = {len(t) for t in self.tensors}
        if len(sizes) != 1:
            raise ValueError(f"Size mismatch between tensors: first dimensions {sorted(sizes)}")

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(t[indices] for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])


class ImageDataset(TensorDataset):
    """Images (N, C, H, W) and integer labels, with what a training recipe needs to know:
    `num_classes`, the per-channel `mean`/`std` of the training images, `crop_padding`."""

    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(self, data: np.ndarray, targets: np.ndarray) -> None:
        super().__init__(data, np.asarray(targets, dtype=np.int64))

    @property
    def data(self) -> np.ndarray:
        return self.tensors[0]

    @property
    def targets(self) -> np.ndarray:
        return self.tensors[1]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def crop_padding(self) -> int:
        """Zero padding for random-crop augmentation: 1/8 of the side (4 for 32x32 images)."""
        return max(1, self.image_shape[1] // 8)
