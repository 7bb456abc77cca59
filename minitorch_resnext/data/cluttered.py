"""Cluttered digits: the embedded digits at random places on a larger canvas, among fragments
of other digits and noise.

The 1,797 digits alone are too easy (a small ResNeXt reaches 99 %) and too few (a model can
memorise them). Drawn on a canvas with clutter, every image is new: `cluttered_batches`
renders a fresh batch at every step from a seeded generator, so no rendering is seen twice,
the training loss measures what the model can represent rather than what it remembers, and
the seed alone fixes the stream. `ClutteredDigits` is one fixed rendering, e.g. the test set:
the test split's digits (never drawn for training) with clutter from the test split too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .dataset import ImageDataset
from .digits import Digits

TEST_SEED = 2017  # the test rendering's seed: one fixed test set for every run


@dataclass(frozen=True)
class Clutter:
    """How a cluttered digit is drawn.

    Args:
        canvas: side of the square image.
        digit: side of the digit, resampled from the 8x8 original.
        pieces: number of clutter fragments (square crops of other digits).
        piece: side of a fragment.
        noise: standard deviation of the Gaussian noise added last (pixels are then clipped
            to [0, 1]).
    """

    canvas: int = 16
    digit: int = 10
    pieces: int = 4
    piece: int = 5
    noise: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.digit <= self.canvas:
            raise ValueError(f"Clutter: need 1 <= digit <= canvas, got digit={self.digit}, "
                             f"canvas={self.canvas}")
        if self.pieces < 0 or not 1 <= self.piece <= self.digit:
            raise ValueError(f"Clutter: need pieces >= 0 and 1 <= piece <= digit, got "
                             f"pieces={self.pieces}, piece={self.piece}, digit={self.digit}")
        if self.noise < 0:
            raise ValueError(f"Clutter: noise must be >= 0, got {self.noise}")


def _windows(top: np.ndarray, left: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Fancy indices of one k x k window per image, at (top[i], left[i]) in image i."""
    span = np.arange(k)
    return (np.arange(len(top))[:, None, None], (top[:, None] + span)[:, :, None],
            (left[:, None] + span)[:, None, :])


def render(digits: Digits, n: int, rng: np.random.Generator,
           clutter: Clutter) -> tuple[np.ndarray, np.ndarray]:
    """`n` cluttered images (n, 1, canvas, canvas) float32 and their labels, drawn from `rng`.

    Each image: `pieces` fragments cropped from random digits of the same split at random
    places (partly over the edge too), the labelled digit wholly inside at a uniformly random
    place, all overlaid by the pixel-wise maximum (ink on paper), then noise.
    """
    sources, size, side, k = digits.data[:, 0], clutter.digit, clutter.canvas, clutter.piece
    canvas = np.zeros((n, side + 2 * k, side + 2 * k), dtype=np.float32)  # k-wide margins

    def paste(images: np.ndarray, top: np.ndarray, left: np.ndarray) -> None:
        where = _windows(top, left, images.shape[-1])
        canvas[where] = np.maximum(canvas[where], images)

    def places(low: int, high: int) -> list[np.ndarray]:
        return [rng.integers(low, high, size=n) for _ in range(2)]

    for _ in range(clutter.pieces):
        other = sources[rng.integers(len(sources), size=n)]
        paste(other[_windows(*places(0, size - k + 1), k)], *places(1, side + k))
    pick = rng.integers(len(sources), size=n)
    paste(sources[pick], *places(k, k + side - size + 1))
    images = canvas[:, k:k + side, k:k + side]
    images += clutter.noise * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images, 0.0, 1.0)[:, None], digits.targets[pick]


def cluttered_batches(batch_size: int, seed: int, clutter: Clutter = Clutter(),
                      train: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fresh batches (images, labels) forever, from the train split's digits (or the test
    split's); the same seed gives the same stream."""
    if batch_size < 1:
        raise ValueError(f"batch_size should be a positive integer, got {batch_size}")
    digits, rng = Digits(train=train, size=clutter.digit), np.random.default_rng(seed)
    while True:
        yield render(digits, batch_size, rng, clutter)


class ClutteredDigits(ImageDataset):
    """One fixed rendering of `size` cluttered digits: by default the test set, drawn from
    the test split with `TEST_SEED`, the same on every call and machine (NumPy's PCG64 stream
    is stable across versions). `mean` and `std` are this rendering's."""

    num_classes = 10

    def __init__(self, size: int = 4000, clutter: Clutter = Clutter(), train: bool = False,
                 seed: int = TEST_SEED) -> None:
        if size < 1:
            raise ValueError(f"ClutteredDigits: size must be positive, got {size}")
        self.clutter = clutter
        images, labels = render(Digits(train=train, size=clutter.digit), size,
                                np.random.default_rng(seed), clutter)
        super().__init__(images, labels)
        self.mean, self.std = (float(images.mean()),), (float(images.std()),)

    @property
    def crop_padding(self) -> int:
        """No crops: the digits are already at random places."""
        return 0
