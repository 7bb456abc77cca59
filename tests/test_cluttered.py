"""Cluttered digits: shapes, labels that name the digit drawn, seeded streams, a fixed test set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext.data import Digits
from minitorch_resnext.data.cluttered import (
    Clutter,
    ClutteredDigits,
    cluttered_batches,
    render,
)


def first_batches(seed: int, n: int = 3, clutter: Clutter | None = None) -> list[tuple]:
    return list(itertools.islice(cluttered_batches(8, seed, clutter or Clutter()), n))


def find_digit(image: np.ndarray, sources: np.ndarray) -> list[int]:
    """Indices of the source digits that, placed at some offset on a blank canvas, give
    `image` exactly (the naive search the renderer must agree with)."""
    side, size = image.shape[-1], sources.shape[-1]
    found = []
    for top, left in itertools.product(range(side - size + 1), repeat=2):
        blank = image.copy()
        blank[top:top + size, left:left + size] = 0
        if blank.any():
            continue
        window = image[top:top + size, left:left + size]
        found += np.flatnonzero((sources == window).all(axis=(1, 2))).tolist()
    return found


@given(st.integers(4, 12), st.integers(0, 4), st.integers(0, 2**32 - 1), st.booleans())
def test_each_label_names_the_digit_drawn(digit, room, seed, train):
    """Without clutter and noise an image is one digit of the split, wholly inside the canvas
    at some offset, and the label is that digit's."""
    clutter = Clutter(canvas=digit + room, digit=digit, pieces=0, piece=1, noise=0.0)
    digits = Digits(train=train, size=digit)
    images, labels = render(digits, 6, np.random.default_rng(seed), clutter)
    assert images.shape == (6, 1, digit + room, digit + room) and images.dtype == np.float32
    assert labels.dtype == np.int64
    for image, label in zip(images[:, 0], labels):
        matches = find_digit(image, digits.data[:, 0])
        assert matches and {int(digits.targets[i]) for i in matches} == {int(label)}


def test_clutter_and_noise_stay_in_the_pixel_range():
    images, labels = next(cluttered_batches(64, 0, Clutter(pieces=8, noise=0.4)))
    assert images.shape == (64, 1, 16, 16) and images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) <= set(range(10))
    clean, _ = next(cluttered_batches(64, 0, Clutter(pieces=0, noise=0.0)))
    assert images.sum() > 1.5 * clean.sum()  # fragments and noise add ink to the digit


def test_a_seed_fixes_the_stream():
    a, b, other = first_batches(1), first_batches(1), first_batches(2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], other[0][0])
    # a fresh image at every step: no batch repeats an earlier one
    assert not np.array_equal(a[0][0], a[1][0]) and not np.array_equal(a[1][0], a[2][0])


def test_the_test_set_is_fixed():
    clutter = Clutter(pieces=3, noise=0.15)
    first = ClutteredDigits(300, clutter)
    first_batches(5, clutter=clutter)  # drawing a training stream changes nothing
    again = ClutteredDigits(300, clutter)
    np.testing.assert_array_equal(first.data, again.data)
    np.testing.assert_array_equal(first.targets, again.targets)
    assert len(first) == 300 and first.image_shape == (1, 16, 16) and first.num_classes == 10
    assert not np.array_equal(first.data, ClutteredDigits(300, clutter, seed=1).data)
    # ten classes, each near a tenth of the images
    assert np.bincount(first.targets, minlength=10).min() > 10


def test_the_test_set_draws_the_test_split():
    clutter = Clutter(canvas=12, digit=8, pieces=0, piece=1, noise=0.0)
    test_digits = Digits(train=False, size=8).data[:, 0]
    for image in ClutteredDigits(40, clutter).data[:, 0]:
        assert find_digit(image, test_digits)


@pytest.mark.parametrize("kwargs, rule", [
    ({"digit": 20}, "digit <= canvas"), ({"pieces": -1}, "pieces >= 0"),
    ({"piece": 11}, "piece <= digit"), ({"noise": -0.1}, "noise must be >= 0"),
])
def test_bad_clutter_is_refused(kwargs, rule):
    with pytest.raises(ValueError, match=rule):
        Clutter(**kwargs)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        next(cluttered_batches(0, 0))
    with pytest.raises(ValueError, match="size must be positive"):
        ClutteredDigits(0)
