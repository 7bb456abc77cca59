# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Training and scaling out
#
# The project's trainer (`minitorch_resnext.train`) runs a whole recipe — SGD with momentum
# and weight decay, a learning-rate schedule, augmentation, an evaluation after every epoch —
# and leaves behind metrics, training curves and checkpoints that a run can be resumed from,
# bit for bit. The same trainer runs data-parallel over MPI. This tutorial trains a small
# ResNeXt on the embedded digits, interrupts and resumes it, and then checks on two MPI ranks
# what data parallelism with synchronized batch normalization promises: the same steps as one
# process with the whole batch.
#
# * **You will learn:** what a training recipe holds and how the paper's differs from this
#   project's defaults, what the training and test losses measure, how checkpoints make a run
#   resumable bit for bit, and what data parallelism with SyncBatchNorm guarantees.
# * **Prerequisites:** [tutorial 3](03_cardinality_vs_width.md); SGD with momentum. The MPI
#   cells need the `mpi` extra (`pip install -e '.[mpi]'`) and are skipped without it.
# * **Runtime:** a few minutes on 2 CPU cores (about 1 with `MINITORCH_FAST=1`).

# %%
import dataclasses
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from minitorch_resnext import checkpoint, cli, data, optim
from minitorch_resnext.data import transforms as T
from minitorch_resnext.figures import FigureWriter
from minitorch_resnext.nn import Parameter
from minitorch_resnext.train import (
    TrainConfig,
    build_model,
    evaluate,
    evaluate_checkpoint,
    load_datasets,
    make_scheduler,
    train,
)

FAST = os.environ.get("MINITORCH_FAST") == "1"
figures = FigureWriter("06_training_and_scaling.py")
WORK = Path(tempfile.mkdtemp(prefix="minitorch-tutorial-6-"))


# %% [markdown]
# ## The trainer
#
# A `TrainConfig` is the recipe; its defaults train `resnext_small` (8x4d, 137k parameters) on
# the digits for 15 epochs with a cosine schedule and random crops. Here it trains for four
# epochs (with `MINITORCH_FAST=1`, two epochs of a narrower 2x1d model without augmentation).
# The command line does the same: `minitorch-resnext train --epochs 4 --out-dir runs/digits`.

# %%
EPOCHS = 2 if FAST else 4
recipe = dict(epochs=EPOCHS, lr=0.1, seed=0)
if FAST:  # a 2x1d model, no augmentation, smaller batches: learns in two epochs
    recipe.update(cardinality=2, base_width=1, augment=False, batch_size=32)
straight = train(TrainConfig(**recipe, out_dir=str(WORK / "straight")), progress=False)
print(sorted(p.name for p in straight.out_dir.iterdir()))
assert straight.epochs_done == EPOCHS and not straight.interrupted
assert {"metrics.jsonl", "last.npz", "best.npz", "curves.png", "config.json"} <= {
    p.name for p in straight.out_dir.iterdir()}
final = straight.history[-1]
assert final["test_acc"] > (0.7 if FAST else 0.85), final

# %% [markdown]
# ## What the two losses measure
#
# `metrics.jsonl` has one line per epoch, with a training and a test loss. They are not the
# same quantity. The training loss is the objective the optimizer minimised, averaged over the
# epoch: cross-entropy **with label smoothing 0.1** (the target puts 0.91 on the true class and
# 0.01 on each other one) on **augmented** images (random crops), with the weights still
# changing. The test loss is plain cross-entropy on clean images, after the epoch. A smoothed
# loss cannot reach zero: its lowest value, reached when the model predicts exactly the smoothed
# target, is that target's entropy, about 0.50 for 10 classes. So "test loss below training
# loss" in these curves says nothing about overfitting. The comparable number is the plain
# cross-entropy of the trained model on the clean training images, computed here from the
# checkpoint with the trainer's own `evaluate`:

# %%
history = [json.loads(line) for line in (straight.out_dir / "metrics.jsonl").read_text().splitlines()]
assert history == straight.history
saved = checkpoint.load(straight.out_dir / "last.npz")
config = TrainConfig(**saved["config"])
train_set, _ = load_datasets(config)
model = build_model(config, train_set)
model.load_state_dict(saved["model"])
clean = data.DataLoader(train_set, config.eval_batch_size,
                        transform=T.Normalize(saved["normalization"]["mean"],
                                              saved["normalization"]["std"]))
clean_loss, clean_acc = evaluate(model, clean)
target = np.full(10, config.label_smoothing / 10)
target[0] += 1 - config.label_smoothing
floor = float(-(target * np.log(target)).sum())  # entropy of the smoothed target
print(f"last epoch: training objective {final['train_loss']:.3f} (label smoothing "
      f"{config.label_smoothing}, augmented; it cannot go below {floor:.3f}), test cross-entropy "
      f"{final['test_loss']:.3f}; plain cross-entropy on the clean training images "
      f"{clean_loss:.3f} (accuracy {clean_acc:.1%})")
assert final["train_loss"] > floor

# %%
fig = Figure(figsize=(11, 4), layout="constrained")
ax_loss, ax_acc = fig.subplots(1, 2)
epochs = [r["epoch"] for r in history]
ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-",
             label="training objective (smoothed, augmented)")
ax_loss.plot(epochs, [r["test_loss"] for r in history], "o-", label="test cross-entropy")
ax_loss.plot(epochs[-1], clean_loss, "D", color="tab:green", markersize=8,
             label="cross-entropy on clean training images")
ax_loss.axhline(floor, color="gray", linestyle=":", label=f"lowest possible objective ({floor:.2f})")
ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="training (augmented)")
ax_acc.plot(epochs, [100 * r["test_acc"] for r in history], "o-", label="test")
ax_acc.plot(epochs[-1], 100 * clean_acc, "D", color="tab:green", markersize=8,
            label="clean training images")
ax_loss.set_ylabel("loss")
ax_acc.set_ylabel("accuracy (%)")
for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.set_xticks(epochs)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(f"resnext_small {'2x1d' if FAST else '8x4d'} on the digits "
             f"({len(train_set):,} training / 359 test images)")
figures.save(fig, "06_training_curves.png")

# %% [markdown]
# ## The paper's recipe beside the defaults
#
# The defaults are tuned to train a small model on the digits in seconds: a cosine schedule
# with a one-epoch warm-up, label smoothing, weight decay 5e-4. The paper trains ResNeXt-50 on
# ImageNet with SGD (momentum 0.9, weight decay 1e-4, batch 256) and a **step** schedule:
# learning rate 0.1, divided by 10 three times; and ResNeXt-29 on CIFAR with weight decay
# 5e-4, batch 128, learning rate 0.1 divided by 10 at epochs 150 and 225 of 300. Neither uses
# label smoothing or a warm-up. The CIFAR recipe runs as it is with the trainer, given the
# CIFAR-10 files (the ImageNet one needs an ImageNet loader, which this project does not have):

# %%
DEFAULTS = TrainConfig()
PAPER_CIFAR = TrainConfig(model="resnext29_8x64d", dataset="cifar10", data_dir="data/cifar10",
                          epochs=300, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
                          schedule="multistep", milestones=[150, 225], gamma=0.1,
                          warmup_epochs=0.0, label_smoothing=0.0)
PAPER_IMAGENET = {"model": "resnext50_32x4d", "dataset": "ImageNet", "batch_size": 256,
                  "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step, /10 x 3",
                  "warmup_epochs": 0, "label_smoothing": 0, "augment": "scale + aspect ratio"}
rows = ["model", "dataset", "epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule",
        "milestones", "warmup_epochs", "label_smoothing", "augment"]
print(f"{'':16s} {'defaults':>16s} {'paper, CIFAR':>16s} {'paper, ImageNet':>22s}")
for row in rows:
    print(f"{row:16s} {str(getattr(DEFAULTS, row)):>16s} {str(getattr(PAPER_CIFAR, row)):>16s} "
          f"{str(PAPER_IMAGENET.get(row, '-')):>22s}")


def command(config: TrainConfig) -> list[str]:
    """The `minitorch-resnext train` arguments that give `config` (those that differ from the
    defaults)."""
    args = []
    for field in dataclasses.fields(TrainConfig):
        value, default = getattr(config, field.name), getattr(DEFAULTS, field.name)
        if value == default:
            continue
        if field.name == "augment":
            args.append("--no-augment")
            continue
        values = value if isinstance(value, list) else [value]
        args += [f"--{field.name.replace('_', '-')}", *(f"{v:g}" if isinstance(v, float) else str(v)
                                                        for v in values)]
    return args


cifar_args = command(PAPER_CIFAR)
print("minitorch-resnext train " + shlex.join(cifar_args))
parsed = vars(cli.build_parser().parse_args(["train", *cifar_args]))
fields = {f.name for f in dataclasses.fields(TrainConfig)}
assert TrainConfig(**{k: v for k, v in parsed.items() if k in fields}) == PAPER_CIFAR

# %% [markdown]
# The trainer steps the schedule every iteration, converting epochs to steps. Per epoch, the
# CIFAR recipe's learning rate:

# %%
sgd = optim.SGD([Parameter(np.zeros(1))], lr=PAPER_CIFAR.lr)
schedule = make_scheduler(PAPER_CIFAR, sgd, steps_per_epoch=1)
by_epoch = []
for _ in range(PAPER_CIFAR.epochs):
    by_epoch.append(sgd.param_groups[0]["lr"])
    schedule.step()
for epoch in (0, 149, 150, 224, 225, 299):
    print(f"epoch {epoch:3d}: learning rate {by_epoch[epoch]:g}")
np.testing.assert_allclose([by_epoch[e] for e in (149, 150, 224, 225)], [0.1, 0.01, 0.01, 0.001])

# %% [markdown]
# ## Checkpoints
#
# A checkpoint is one `.npz` file holding nested dictionaries of arrays and plain values — no
# pickle, so loading one cannot run code. `last.npz` has everything needed to continue: the
# recipe, the model, the optimizer's momentum buffers, the schedule, the random generator's
# state and the position in the epoch. `best.npz` is the last one with the best test
# accuracy so far. `evaluate_checkpoint` rebuilds the model from the file alone:

# %%
saved = checkpoint.load(straight.out_dir / "last.npz")
print({key: type(value).__name__ for key, value in saved.items()})
assert {"config", "model", "optimizer", "scheduler", "rng", "position"} <= set(saved)
again = evaluate_checkpoint(straight.out_dir / "last.npz")
print(f"test accuracy from the checkpoint alone: {again['test_acc']:.2%}")
assert again["test_acc"] == final["test_acc"] and again["epochs_done"] == EPOCHS

# %% [markdown]
# ## Interrupt and resume
#
# Ctrl-C during training asks the trainer to stop after the current step and to write
# `last.npz` first (a second Ctrl-C stops at once; the checkpoint is written atomically
# either way). We press it programmatically, right after the first epoch's summary line, and
# then resume the run. The data order and augmentation of an epoch depend only on the seed
# and the epoch number, and the random state travels in the checkpoint, so the resumed run
# ends with **exactly** the weights of the run that was never stopped.


# %%
def press_ctrl_c_after_first_epoch(line: str) -> None:
    print(line)
    if line.startswith("epoch   1/"):
        signal.raise_signal(signal.SIGINT)


stopped = train(TrainConfig(**recipe, out_dir=str(WORK / "stopped")), progress=False,
                log=press_ctrl_c_after_first_epoch)
assert stopped.interrupted and stopped.epochs_done == 1
resumed = train(TrainConfig(out_dir=str(WORK / "stopped")), resume=True, progress=False)
assert resumed.epochs_done == EPOCHS and not resumed.interrupted

a = checkpoint.load(straight.out_dir / "last.npz")["model"]
b = checkpoint.load(resumed.out_dir / "last.npz")["model"]
assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
print(f"resumed run == uninterrupted run, bit for bit, in all {len(a)} tensors")

# %% [markdown]
# ## Data parallelism with MPI
#
# With `N` processes (*ranks*), each takes `1/N` of every global batch, computes the forward
# and backward passes on its share, and the ranks **average their gradients** (an allreduce)
# before every one of them takes the same optimizer step. `DistributedDataParallel` starts
# the allreduce of a bucket of gradients as soon as backward has produced them, overlapping
# communication with the rest of the backward pass.
#
# Averaging gradients is exact only if each rank's gradient is the gradient of its share of
# the *same* loss. Batch normalization breaks that: it normalises with the statistics of the
# batch it sees, and half a batch has other statistics than the whole. **SyncBatchNorm**
# computes the mean and variance over the global batch (one allreduce of per-channel sums in
# the forward pass, one in the backward), which restores the equivalence.
#
# `tutorials/ddp_steps.py` trains a small float64 ResNeXt for one epoch on 48 digits with a
# global batch of 16, once in one process and twice on two ranks (with and without
# SyncBatchNorm). The trainer does the same for a real run:
# `mpiexec -n 2 python -m mpi4py -m minitorch_resnext train --distributed`.

# %%
# the mpiexec beside this Python (the mpich wheel's, matching mpi4py), else one on PATH
MPIEXEC = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
WORKER = figures.source.parent / "ddp_steps.py"


def mpi_missing() -> str | None:
    """Why the MPI cells cannot run here, or None when they can."""
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if MPIEXEC is None:
        return "no mpiexec found (the mpich wheel of the 'mpi' extra brings one)"
    return None


reason = mpi_missing()
if reason:
    print(f"skipping the MPI cells: {reason}")


def run_worker(out: Path, ranks: int, *flags: str) -> dict[str, np.ndarray]:
    launch = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi4py"] if ranks > 1 else [sys.executable]
    done = subprocess.run([*launch, str(WORKER), str(out), *flags], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout.strip())
    with np.load(out) as saved:
        return dict(saved)


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a if a[k].dtype.kind == "f")


# %%
if not reason:
    one = run_worker(WORK / "one.npz", 1)
    two_sync = run_worker(WORK / "two_sync.npz", 2)
    two_plain = run_worker(WORK / "two_plain.npz", 2, "--no-sync-bn")
    with_sync, without_sync = max_difference(two_sync, one), max_difference(two_plain, one)
    print(f"largest difference from one process: SyncBatchNorm {with_sync:.1e}, "
          f"per-rank BatchNorm {without_sync:.1e}")
    assert with_sync < 1e-10     # the same steps, up to the order of floating-point sums
    assert without_sync > 1e-4   # half-batch statistics: a different training run

# %% [markdown]
# Two ranks with SyncBatchNorm reproduce the single process to rounding error; without it the
# runs differ after a single epoch. On a GPU the same code runs with NCCL instead of MPI
# (`mr.distributed.init(device="cuda")`), one rank per GPU.
#
# ## Summary
#
# * `train(TrainConfig(...))` (or `minitorch-resnext train`) writes metrics, curves and
#   atomic, pickle-free checkpoints; `evaluate_checkpoint` needs nothing but the file.
# * Ctrl-C stops after the current step with a checkpoint, and `resume=True`
#   (`--resume`) continues to exactly the weights of an uninterrupted run.
# * The training loss of the curves is the smoothed objective on augmented images; compare
#   plain cross-entropy on clean images instead. The paper's recipes use a step schedule and no
#   label smoothing; `minitorch-resnext train` runs the CIFAR one as printed above.
# * Data parallelism averages gradients over ranks; with SyncBatchNorm, `N` ranks with `B/N`
#   images each take the same steps as one process with `B`.
#
# ## Exercises
#
# Fill in the stubs in `tutorials/exercises/t6_training_and_scaling.py` and check them with
# `pytest tests/exercises -k "t6 and yours"` (solutions in `tutorials/exercises/solutions/`).
#
# 1. `step_lr`: the paper's step schedule, epoch by epoch.
# 2. `paper_cifar_recipe`: the paper's CIFAR recipe as a `TrainConfig`, checked in the trainer.
# 3. `sgd_step`: one step of SGD with momentum and weight decay, as `optim.SGD` takes it.
# 4. `smoothed_cross_entropy`, `smoothing_floor`: the trainer's loss and its lowest value.

# %%
shutil.rmtree(WORK)  # the runs of this tutorial were written to a temporary folder
