"""`minitorch-resnext` with a model and data small enough to start in a second; run by
test_bad_inputs.

`python [-m mpi4py] tiny_train.py [--full-disk] ARGS...` runs the command line with ARGS, the
model "tiny" (batch norm and one linear layer: no convolution kernel to compile) registered,
and the datasets replaced by small `FakeData` sets. `--full-disk` makes rank 0's checkpoint
writes fail as on a full disk.
"""

from __future__ import annotations

import errno
import sys

from minitorch_resnext import checkpoint, models, nn, train
from minitorch_resnext.cli import main
from minitorch_resnext.data import FakeData

IMAGE = (1, 8, 8)


def tiny(num_classes: int = 4, in_channels: int = 1) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.Flatten(),
                         nn.Linear(in_channels * 8 * 8, num_classes))


def tiny_datasets(config: train.TrainConfig) -> tuple[FakeData, FakeData]:
    return (FakeData(32, IMAGE, num_classes=4, seed=0), FakeData(10, IMAGE, num_classes=4, seed=1))


def full_disk(obj: object, path: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--full-disk"]:
        args = args[1:]
        checkpoint.save = full_disk
    models.MODELS["tiny"] = tiny
    train.load_datasets = tiny_datasets
    sys.exit(main(["train", "--model", "tiny", "--no-progress", "--epochs", "2",
                   "--batch-size", "8", "--eval-batch-size", "4", "--warmup-epochs", "0", *args]))
