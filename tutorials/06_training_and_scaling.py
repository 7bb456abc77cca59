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

# %%
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from minitorch_resnext import checkpoint
from minitorch_resnext.train import TrainConfig, evaluate_checkpoint, train

FAST = os.environ.get("MINITORCH_FAST") == "1"
# this folder, whether run from the repository root or, as a notebook, from tutorials/
TUTORIALS = Path("tutorials") if Path("tutorials").is_dir() else Path()
FIGURES = Path(os.environ.get("MINITORCH_FIGURES", TUTORIALS / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="minitorch-tutorial-6-"))


def save(fig: Figure, name: str) -> None:
    fig.savefig(FIGURES / name, dpi=110, bbox_inches="tight")
    print(f"figure written: {FIGURES / name}")


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
# `metrics.jsonl` has one line per epoch; these are the curves the trainer also drew in
# `curves.png`:
#
# ![training curves](figures/06_training_curves.png)

# %%
history = [json.loads(line) for line in (straight.out_dir / "metrics.jsonl").read_text().splitlines()]
assert history == straight.history
fig = Figure(figsize=(11, 4), layout="constrained")
ax_loss, ax_acc = fig.subplots(1, 2)
epochs = [r["epoch"] for r in history]
for split in ("train", "test"):
    ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], "o-", label=split)
    ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in history], "o-", label=split)
ax_loss.set_ylabel("cross-entropy loss")
ax_acc.set_ylabel("accuracy (%)")
for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.set_xticks(epochs)
    ax.grid(True, alpha=0.3)
    ax.legend()
fig.suptitle(f"resnext_small {'2x1d' if FAST else '8x4d'} on the digits "
             "(1,438 training / 359 test images)")
save(fig, "06_training_curves.png")

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
WORKER = TUTORIALS / "ddp_steps.py"


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
# * Data parallelism averages gradients over ranks; with SyncBatchNorm, `N` ranks with `B/N`
#   images each take the same steps as one process with `B`.

# %%
shutil.rmtree(WORK)  # the runs of this tutorial were written to a temporary folder
