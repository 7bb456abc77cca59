"""Exercises of tutorial 2, aggregated transformations. Replace each `raise NotImplementedError`
with your code, then check it: `pytest tests/exercises -k "t2 and yours"`.

A state dict maps names to NumPy arrays (`block.state_dict()`); the grouped block's names are
torchvision's: conv1, bn1, conv2, bn2, conv3, bn3 (and downsample.0, downsample.1).
Reference solutions: `tutorials/exercises/solutions/t2_aggregated_transformations.py`.
"""

from __future__ import annotations

import numpy as np


def concat_state(grouped: dict[str, np.ndarray], groups: int) -> dict[str, np.ndarray]:
    """Exercise 2.1: `models.convert_block(block, "concat")` by hand, on the state dict.

    The concatenation form (Figure 3(b)) has `groups` paths, path i holding a 1x1 conv
    (`paths.i.0`), a BN (`paths.i.1`), a 3x3 conv (`paths.i.3`) and a BN (`paths.i.4`), then one
    1x1 `conv3` over the concatenated paths and `bn3`. Cut conv1, bn1, conv2 and bn2 of the
    grouped form into the paths' slices (each BN array and conv weight along its first axis;
    `num_batches_tracked` is one number, the same on every path) and keep the other entries.
    """
    raise NotImplementedError("exercise 2.1: concat_state")


def split_last_conv(w3: np.ndarray, groups: int) -> list[np.ndarray]:
    """Exercise 2.2: the merge is a sum. Given the last 1x1 weight (out, C*d, 1, 1) applied to
    the concatenated paths, return the `groups` weights (out, d, 1, 1), one per path, such that
    the sum over paths of conv(path_i, w_i) equals conv(concatenation, w3)."""
    raise NotImplementedError("exercise 2.2: split_last_conv")


def bn_affine(weight: np.ndarray, bias: np.ndarray, running_mean: np.ndarray,
              running_var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 2.3: batch normalization in evaluation mode is a per-channel affine map
    y = scale * x + shift. Return (scale, shift), one value per channel."""
    raise NotImplementedError("exercise 2.3: bn_affine")


def wide_weights(w1s: list[np.ndarray], w2s: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 2.4: a block of depth 2 is one wide block (Figure 4).

    Path i is conv(w1s[i]) (in -> d), ReLU, conv(w2s[i]) (d -> out), the paths summed. Return
    the two weights (C*d, in, k, k) and (out, C*d, k, k) of the wide block conv, ReLU, conv that
    computes the same sum.
    """
    raise NotImplementedError("exercise 2.4: wide_weights")
