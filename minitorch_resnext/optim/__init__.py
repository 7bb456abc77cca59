"""Optimizers and learning-rate schedules (`mr.optim`), with PyTorch's names and semantics."""

from . import lr_scheduler
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Optimizer", "lr_scheduler"]
