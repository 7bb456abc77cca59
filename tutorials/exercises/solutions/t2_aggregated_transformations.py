"""Reference solutions of the exercises of tutorial 2 (checked by tests/exercises)."""

from __future__ import annotations

import numpy as np

PATH_LAYERS = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4"}  # grouped name -> path index


def concat_state(grouped: dict[str, np.ndarray], groups: int) -> dict[str, np.ndarray]:
    """Exercise 2.1."""
    state = {}
    for key, value in grouped.items():
        layer, _, suffix = key.partition(".")
        if layer not in PATH_LAYERS:
            state[key] = value
            continue
        parts = [value] * groups if np.ndim(value) == 0 else np.split(value, groups, axis=0)
        for i, part in enumerate(parts):
            state[f"paths.{i}.{PATH_LAYERS[layer]}.{suffix}"] = part
    return state


def split_last_conv(w3: np.ndarray, groups: int) -> list[np.ndarray]:
    """Exercise 2.2."""
    return np.split(w3, groups, axis=1)


def bn_affine(weight: np.ndarray, bias: np.ndarray, running_mean: np.ndarray,
              running_var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 2.3."""
    scale = weight / np.sqrt(running_var + eps)
    return scale, bias - scale * running_mean


def wide_weights(w1s: list[np.ndarray], w2s: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 2.4."""
    return np.concatenate(w1s, axis=0), np.concatenate(w2s, axis=1)
