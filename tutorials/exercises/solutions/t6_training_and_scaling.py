"""Reference solutions of the exercises of tutorial 6 (checked by tests/exercises)."""

from __future__ import annotations

import numpy as np

from minitorch_resnext.train import TrainConfig


def step_lr(epoch: int, base_lr: float, milestones: list[int], gamma: float = 0.1) -> float:
    """Exercise 6.1."""
    return base_lr * gamma ** sum(epoch >= m for m in milestones)


def paper_cifar_recipe(epochs: int = 300) -> TrainConfig:
    """Exercise 6.2."""
    return TrainConfig(model="resnext29_8x64d", dataset="cifar10", epochs=epochs, batch_size=128,
                       lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="multistep",
                       milestones=[epochs * 0.5, epochs * 0.75], gamma=0.1, warmup_epochs=0.0,
                       label_smoothing=0.0, augment=True)


def sgd_step(param: np.ndarray, grad: np.ndarray, buffer: np.ndarray | None, lr: float,
             momentum: float, weight_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 6.3."""
    g = grad + weight_decay * param
    buffer = g if buffer is None else momentum * buffer + g
    return param - lr * buffer, buffer


def smoothed_cross_entropy(logits: np.ndarray, targets: np.ndarray, smoothing: float) -> float:
    """Exercise 6.4a."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n, k = logits.shape
    q = np.full((n, k), smoothing / k)
    q[np.arange(n), targets] += 1 - smoothing
    return float(-(q * log_p).sum(axis=1).mean())


def smoothing_floor(smoothing: float, classes: int) -> float:
    """Exercise 6.4b."""
    q = np.full(classes, smoothing / classes)
    q[0] += 1 - smoothing
    q = q[q > 0]  # 0 * log 0 = 0
    return float(-(q * np.log(q)).sum())
