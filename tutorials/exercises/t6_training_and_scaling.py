"""Exercises of tutorial 6, training and scaling out. Replace each `raise NotImplementedError`
with your code, then check it: `pytest tests/exercises -k "t6 and yours"`.

Reference solutions: `tutorials/exercises/solutions/t6_training_and_scaling.py`.
"""

from __future__ import annotations

import numpy as np

from minitorch_resnext.train import TrainConfig


def step_lr(epoch: int, base_lr: float, milestones: list[int], gamma: float = 0.1) -> float:
    """Exercise 6.1: the learning rate during `epoch` (counted from 0) of the paper's step
    schedule: `base_lr`, multiplied by `gamma` at each milestone epoch passed."""
    raise NotImplementedError("exercise 6.1: step_lr")


def paper_cifar_recipe(epochs: int = 300) -> TrainConfig:
    """Exercise 6.2: the paper's CIFAR recipe as a `TrainConfig` for `resnext29_8x64d` on
    "cifar10": SGD with momentum 0.9, weight decay 5e-4, batch 128, learning rate 0.1 divided
    by 10 at 50 % and 75 % of the epochs (150 and 225 of 300), no warm-up, no label smoothing,
    random crops and flips."""
    raise NotImplementedError("exercise 6.2: paper_cifar_recipe")


def sgd_step(param: np.ndarray, grad: np.ndarray, buffer: np.ndarray | None, lr: float,
             momentum: float, weight_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Exercise 6.3: one SGD step with momentum and weight decay, as `optim.SGD` takes it.
    `buffer` is the momentum buffer (None on the first step). Return (new param, new buffer)."""
    raise NotImplementedError("exercise 6.3: sgd_step")


def smoothed_cross_entropy(logits: np.ndarray, targets: np.ndarray, smoothing: float) -> float:
    """Exercise 6.4a: the mean cross-entropy with label smoothing that the trainer minimises:
    the target distribution puts 1 - smoothing + smoothing / K on the true class and
    smoothing / K on each of the K - 1 others."""
    raise NotImplementedError("exercise 6.4a: smoothed_cross_entropy")


def smoothing_floor(smoothing: float, classes: int) -> float:
    """Exercise 6.4b: the lowest value the smoothed loss can take (reached when the predicted
    distribution equals the smoothed target): why the training loss of tutorial 6 cannot fall
    below about 0.5 with smoothing 0.1 and 10 classes, while the test loss can."""
    raise NotImplementedError("exercise 6.4b: smoothing_floor")
