"""`FakeData`: random images and labels of any shape, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .dataset import ImageDataset


class FakeData(ImageDataset):
    """`size` standard-normal float32 samples of shape `image_size` with uniform random
    labels in [0, num_classes), reproducible from `seed` (like torchvision's FakeData)."""

    def __init__(
        self, size: int = 1000, image_size: Sequence[int] = (3, 32, 32), num_classes: int = 10,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        data = rng.standard_normal((size, *image_size), dtype=np.float32)
        super().__init__(data, rng.integers(0, num_classes, size=size))
        self.num_classes = num_classes
        self.mean = (0.0,) * image_size[0]
        self.std = (1.0,) * image_size[0]
