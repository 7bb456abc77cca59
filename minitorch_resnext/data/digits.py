"""The embedded handwritten-digits set (scikit-learn's copy of the UCI optdigits test set).

1,797 grey 8x8 images of 10 digits, upsampled bilinearly (like `F.interpolate(...,
mode="bilinear", align_corners=False)`) to `size` x `size` and scaled to [0, 1]. The
train/test split is fixed and stratified: 20% of each class is test.
"""

from __future__ import annotations

import functools

import numpy as np

from .dataset import ImageDataset

TEST_FRACTION = 0.2
_SPLIT_SEED = 0


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D bilinear resampling with half-pixel centres."""
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


@functools.lru_cache(maxsize=4)
def _load(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, 1, size, size) float32, labels, and a boolean mask of the test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images / 16.0
    a = _bilinear_matrix(images.shape[-1], size)
    images = np.einsum("ij,njk,lk->nil", a, images, a)[:, None].astype(np.float32)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(_SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: round(len(members) * TEST_FRACTION)]] = True
    images.setflags(write=False)
    return images, labels, test


class Digits(ImageDataset):
    """The train (1,438 images) or test (359 images) split of the digits, (1, size, size)."""

    num_classes = 10
    crop_padding = 1  # shifts of one pixel at 16x16 are already half a pixel of the original

    def __init__(self, train: bool = True, size: int = 16) -> None:
        images, labels, test = _load(size)
        keep = ~test if train else test
        super().__init__(images[keep], labels[keep])
        train_images = images[~test]
        self.mean = (float(train_images.mean()),)
        self.std = (float(train_images.std()),)
