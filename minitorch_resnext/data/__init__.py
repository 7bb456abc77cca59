"""Datasets, the batch loader and batch-wise transforms (`mr.data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import transforms
from .cifar import CIFAR10, CIFAR100
from .dataset import Dataset, ImageDataset, TensorDataset
from .digits import Digits
from .loader import DataLoader
from .synthetic import FakeData

DATASETS = ("digits", "cifar10", "cifar100", "synthetic")


def get_dataset(name: str, train: bool = True, root: str | Path | None = None,
                **kwargs: Any) -> ImageDataset:
    """The train or test split of a dataset by name (`DATASETS`).

    `root` is the folder of the CIFAR files; `kwargs` go to the dataset class (e.g.
    `size=` for digits, `size=`/`image_size=`/`num_classes=` for synthetic).
    """
    if name == "digits":
        return Digits(train=train, **kwargs)
    if name in ("cifar10", "cifar100"):
        if root is None:
            raise ValueError(f"dataset {name!r} needs a data folder (root=... / --data-dir)")
        return (CIFAR10 if name == "cifar10" else CIFAR100)(root, train=train)
    if name == "synthetic":
        kwargs.setdefault("size", 1024 if train else 256)
        return FakeData(seed=0 if train else 1, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


__all__ = [
    "CIFAR10", "CIFAR100", "DATASETS", "DataLoader", "Dataset", "Digits", "FakeData",
    "ImageDataset", "TensorDataset", "get_dataset", "transforms",
]
