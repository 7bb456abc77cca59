"""The trainer: SGD on a dataset, evaluation each epoch, metrics, curves and checkpoints.

`train(TrainConfig(...))` runs a whole recipe. Each epoch ends with an evaluation on the
test split, one line added to `metrics.jsonl`, and `last.npz` written atomically (and
copied to `best.npz` when the test accuracy improves). A new run never touches an earlier
run's files: one found in the output folder is moved aside to `<folder>.1` (`.2`, ...), unless
`overwrite` is asked for. A checkpoint holds the model, the optimizer, the scheduler, the
engine's RNG state and the position in the epoch; the data order and augmentation are a
function of (seed, epoch), so `train(config, resume=True)` continues to the same weights, bit
for bit on the CPU, as a run that was never stopped. Ctrl-C stops after the current step and
saves a checkpoint first; a NaN or infinite loss stops with `TrainingDiverged`, leaving the
last good checkpoint in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import checkpoint, data, models, optim
from . import functional as F
from .autograd import no_grad
from .data import transforms as T
from .distributed import Communicator, DataParallelRun
from .nn import Module
from .tensor import get_rng_state, manual_seed, set_rng_state

SCHEDULES = ("cosine", "multistep", "step", "constant")
LAST, BEST, METRICS, CURVES, CONFIG = "last.npz", "best.npz", "metrics.jsonl", "curves.png", "config.json"
RUN_FILES = (LAST, BEST, METRICS, CURVES, CONFIG)


@dataclass
class TrainConfig:
    """A training recipe. The defaults train the small ResNeXt on the embedded digits."""

    model: str = models.DEFAULT_MODEL
    dataset: str = "digits"
    data_dir: str | None = None
    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    milestones: list[float] = field(default_factory=list)  # epochs, for "multistep"
    step_size: float = 0.0  # epochs, for "step"
    gamma: float = 0.1
    cardinality: int | None = None
    base_width: int | None = None
    augment: bool = True
    label_smoothing: float = 0.1
    eval_batch_size: int = 500
    device: str = "cpu"
    seed: int = 0
    out_dir: str = "runs/train"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "cardinality", "base_width"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "step_size", "gamma",
                     "label_smoothing"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not all(_is_number(m) and math.isfinite(m) for m in self.milestones):
            raise ValueError(f"milestones must be finite numbers of epochs, got {self.milestones}")
        if self.label_smoothing > 1:
            raise ValueError(f"label_smoothing must be in [0, 1], got {self.label_smoothing}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "step" and self.step_size <= 0:
            raise ValueError("schedule 'step' needs a positive step_size (epochs)")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs} for "
                             f"{self.epochs} epoch(s); lower --warmup-epochs")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_CHECKPOINT_KEYS = ("config", "normalization", "model", "optimizer", "scheduler", "rng",
                    "position")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    """How a `train` call ended."""

    epochs_done: int
    history: list[dict[str, Any]]
    best_acc: float
    interrupted: bool
    out_dir: Path


def build_model(config: TrainConfig, dataset: data.ImageDataset) -> Module:
    """The model of `config`, sized for the dataset's channels and classes."""
    kwargs: dict[str, Any] = {"num_classes": dataset.num_classes,
                              "in_channels": dataset.image_shape[0]}
    if config.cardinality is not None:
        kwargs["cardinality"] = config.cardinality
    if config.base_width is not None:
        kwargs["base_width"] = config.base_width
    return models.get_model(config.model, **kwargs)


def load_datasets(config: TrainConfig) -> tuple[data.ImageDataset, data.ImageDataset]:
    """The train and test splits of the recipe's dataset."""
    return (data.get_dataset(config.dataset, train=True, root=config.data_dir),
            data.get_dataset(config.dataset, train=False, root=config.data_dir))


def train_transform(dataset: data.ImageDataset, augment: bool) -> T.Compose:
    """Random crops (with the dataset's `crop_padding`) and, for colour images, flips; then
    normalise."""
    c, h, w = dataset.image_shape
    steps: list[Any] = []
    if augment:
        steps.append(T.RandomCrop((h, w), padding=dataset.crop_padding))
        if c == 3:  # digits are not mirror-symmetric; natural images are
            steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.Normalize(dataset.mean, dataset.std)])


def evaluate(model: Module, loader: data.DataLoader, device: str = "cpu",
             run: DataParallelRun | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` (in eval mode) over `loader` (with `run`:
    over every rank's loader)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0.0, 0
    with no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += F.accuracy(logits, y) * len(y)
            seen += len(y)
    if run is not None:
        loss_sum, correct, seen = run.sum(loss_sum, correct, seen)
    model.train(was_training)
    return loss_sum / seen, correct / seen


def load_run_checkpoint(path: str | Path, keys: tuple[str, ...] = _CHECKPOINT_KEYS
                        ) -> tuple[dict[str, Any], TrainConfig]:
    """A checkpoint written by `train`, and its recipe; a `CheckpointError` naming the file
    when it lacks one of `keys`, its recipe is not valid, or its weights are not finite."""
    saved = checkpoint.load(path)
    missing = [k for k in keys if k not in saved]
    if missing:
        raise checkpoint.CheckpointError(
            f"{path} is not a checkpoint written by train: it has no {', '.join(missing)} "
            "(a bare state dict loads with io.load_state_dict and model.load_state_dict)")
    try:
        config = TrainConfig(**saved["config"])
    except (TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: its training recipe ('config') is not "
                                         f"valid: {e}") from None
    weights = saved["model"] if isinstance(saved["model"], dict) else {}
    broken = [k for k, v in weights.items()
              if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.isfinite(v).all()]
    if broken:
        raise checkpoint.CheckpointError(
            f"{path}: the weights are not finite (NaN or Inf in {', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}); the run that wrote it had diverged or the "
            "file was altered")
    return saved, config


def _restore(path: str | Path, what: str, load: Callable[[], Any]) -> Any:
    """Run `load` (restoring `what` from a checkpoint), naming the file if it does not fit."""
    try:
        return load()
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise checkpoint.CheckpointError(f"{path}: its {what} does not fit: {e}") from None


def evaluate_checkpoint(path: str | Path, device: str = "cpu", data_dir: str | None = None,
                        batch_size: int | None = None) -> dict[str, Any]:
    """Test loss and accuracy of the model saved in a checkpoint, on its dataset's test split
    (`data_dir` overrides the folder recorded for CIFAR; `batch_size` the recipe's)."""
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    saved, config = load_run_checkpoint(path, ("config", "normalization", "model", "position"))
    if data_dir is not None:
        config.data_dir = data_dir
    test_set = data.get_dataset(config.dataset, train=False, root=config.data_dir)
    model = build_model(config, test_set)
    _restore(path, f"model ({config.model})", lambda: model.load_state_dict(saved["model"]))
    model.to(device)
    norm = saved["normalization"]
    loader = data.DataLoader(test_set, batch_size or config.eval_batch_size,
                             transform=T.Normalize(norm["mean"], norm["std"]))
    loss, acc = evaluate(model, loader, device)
    pos = saved["position"]
    return {"checkpoint": str(path), "model": config.model, "dataset": config.dataset,
            "epochs_done": pos["epoch"], "mid_epoch_batches": pos["batch"],
            "test_loss": loss, "test_acc": acc, "test_images": len(test_set)}


def make_scheduler(config: TrainConfig, optimizer: Any, steps_per_epoch: int,
                   lr_scheduler: ModuleType = optim.lr_scheduler) -> Any:
    """The schedule of `config`, stepped once per iteration (epochs are converted).

    `lr_scheduler` is the module providing the classes: this package's, or PyTorch's
    `torch.optim.lr_scheduler` (same names and semantics) for a reference run.
    """
    S = lr_scheduler
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "cosine":
        main = S.CosineAnnealingLR(optimizer, T_max=total - warmup)
    elif config.schedule == "step":
        main = S.StepLR(optimizer, max(1, round(config.step_size * steps_per_epoch)), config.gamma)
    else:  # multistep; constant is multistep without milestones
        milestones = config.milestones if config.schedule == "multistep" else []
        main = S.MultiStepLR(optimizer, [round(m * steps_per_epoch) - warmup for m in milestones],
                             config.gamma)
    if not warmup:
        return main
    ramp = S.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
    return S.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train and test, as a PNG (matplotlib Agg)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], marker="o", label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in history], marker="o", label=split)
    for ax, what in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_yscale("log")
    fig.suptitle(f"training curves ({path.parent})")
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


class _StopFlag:
    """Turns the first SIGINT into a request to stop after the current step; a second one
    interrupts at once (the atomic checkpoint writes stay safe either way)."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def catching_sigint(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.requested = True
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass
class _Position:
    """Where training stands: epoch in progress, batches done in it, and its running sums."""

    epoch: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0
    train_time: float = 0.0
    elapsed: float = 0.0
    best_acc: float = -1.0


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, comm: Communicator | None = None,
          overwrite: bool = False) -> TrainResult:
    """Run `config` (or, with `resume`, continue the run saved in `config.out_dir`).

    An earlier run in `config.out_dir` is moved aside (`prepare_out_dir`), or, with
    `overwrite`, its files are removed. With `comm` (`mr.distributed.init()`), train
    data-parallel on every rank: the batch size is the global one, and rank 0 alone logs and
    writes the outputs."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run "
                         "in the output folder, overwrite replaces it")
    run = DataParallelRun(comm)
    if not run.is_main:
        log, progress = (lambda _: None), False
    out = Path(config.out_dir)
    saved = None
    if resume:
        saved, recipe = load_run_checkpoint(out / LAST)
        config = dataclasses.replace(recipe, out_dir=str(out), device=config.device)
    manual_seed(config.seed)
    train_set, test_set = load_datasets(config)
    model = build_model(config, train_set).to(config.device)
    forward = run.wrap(model)
    train_loader = run.train_loader(train_set, config.batch_size, shuffle=True,
                                    transform=train_transform(train_set, config.augment),
                                    seed=config.seed)
    test_loader = run.eval_loader(test_set, config.eval_batch_size,
                                  transform=T.Normalize(train_set.mean, train_set.std))
    optimizer = optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=config.nesterov)
    scheduler = make_scheduler(config, optimizer, len(train_loader))
    pos = _Position()
    history: list[dict[str, Any]] = []
    if saved is not None:
        path = out / LAST
        _restore(path, f"model ({config.model})", lambda: model.load_state_dict(saved["model"]))
        _restore(path, "optimizer state", lambda: optimizer.load_state_dict(saved["optimizer"]))
        _restore(path, "scheduler state", lambda: scheduler.load_state_dict(saved["scheduler"]))
        _restore(path, "random-number generator state", lambda: set_rng_state(saved["rng"]))
        pos = _restore(path, "position", lambda: _Position(**saved["position"]))
        history = [r for r in _read_metrics(out / METRICS, log) if r["epoch"] <= pos.epoch]
        log(f"resuming {path}: epoch {pos.epoch + 1}, batch {pos.batch}")
    if run.is_main:
        prepare_out_dir(out, resume, overwrite, log)
        _write_metrics(out / METRICS, history)
        checkpoint.atomic_write(out / CONFIG, lambda f: f.write(
            (json.dumps(dataclasses.asdict(config), indent=2) + "\n").encode()))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{config.model} ({n_params:,} parameters) on {config.dataset}: {len(train_set)} train / "
        f"{len(test_set)} test images, {config.epochs} epochs, batch {config.batch_size}, "
        f"device {config.device}, output {out}")

    def save(path: Path) -> None:
        if not run.is_main:
            return
        state = {"config": dataclasses.asdict(config),
                 "normalization": {"mean": train_set.mean, "std": train_set.std},
                 "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": get_rng_state(), "position": dataclasses.asdict(pos)}
        try:
            checkpoint.save(state, path)
        except OSError as e:
            kept = f"the previous {path.name} is left as it was" if path.exists() else \
                "nothing was written"
            raise checkpoint.CheckpointError(
                f"cannot write the checkpoint {path} ({e.strerror or e}); {kept}") from e

    stop = _StopFlag()
    interrupted = False
    model.train()
    with stop.catching_sigint():
        while pos.epoch < config.epochs:
            started = time.perf_counter()
            train_loader.set_epoch(pos.epoch)
            batches = islice(iter(train_loader), pos.batch, None)
            bar = _progress_bar(len(train_loader), pos, config.epochs, progress)
            for x, y in batches:
                step_start = time.perf_counter()
                x, y = x.to(config.device), y.to(config.device)
                logits = forward(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                value = loss.item()
                if not math.isfinite(value):
                    bar.close()
                    raise TrainingDiverged(_diverged_message(value, pos, out))
                optimizer.zero_grad()
                loss.backward()
                run.finish_gradient_sync()
                optimizer.step()
                scheduler.step()
                loss_sum, correct, seen, stop_now = run.sum(  # over the global batch
                    value * len(y), F.accuracy(logits, y) * len(y), len(y), stop.requested)
                pos.batch += 1
                pos.loss_sum += loss_sum
                pos.correct += correct
                pos.seen += int(seen)
                pos.train_time += time.perf_counter() - step_start
                bar.update()
                bar.set_postfix_str(f"loss {pos.loss_sum / pos.seen:.4f}, "
                                    f"acc {100 * pos.correct / pos.seen:.2f}%, "
                                    f"{pos.seen / pos.train_time:.0f} img/s", refresh=False)
                if stop_now:  # agreed by all ranks: they stop at the same step
                    break
            bar.close()
            pos.elapsed += time.perf_counter() - started
            if pos.batch < len(train_loader):  # stopped mid-epoch
                save(out / LAST)
                interrupted = True
                break
            record = _end_epoch(model, test_loader, config, optimizer, pos, run)
            if not math.isfinite(record["test_loss"]):
                raise TrainingDiverged(_diverged_message(record["test_loss"], pos, out))
            history.append(record)
            if run.is_main:
                _write_metrics(out / METRICS, history)
            log(_summary(record, config.epochs))
            improved = record["test_acc"] > pos.best_acc
            pos.best_acc = max(pos.best_acc, record["test_acc"])
            pos.epoch, pos.batch = pos.epoch + 1, 0
            pos.loss_sum = pos.correct = pos.train_time = 0.0
            pos.seen = 0
            save(out / LAST)
            if improved:
                save(out / BEST)
            if run.sum(stop.requested)[0]:
                interrupted = pos.epoch < config.epochs
                break
        if interrupted:
            log(f"interrupted: saved {out / LAST} at epoch {pos.epoch + 1}, batch {pos.batch}; "
                "continue with --resume")
    if history and run.is_main:
        plot_curves(history, out / CURVES)
    return TrainResult(pos.epoch, history, max(pos.best_acc, 0.0), interrupted, out)


def _end_epoch(model: Module, test_loader: data.DataLoader, config: TrainConfig,
               optimizer: optim.SGD, pos: _Position, run: DataParallelRun) -> dict[str, Any]:
    eval_start = time.perf_counter()
    test_loss, test_acc = evaluate(model, test_loader, config.device, run)
    pos.elapsed += time.perf_counter() - eval_start
    return {
        "epoch": pos.epoch + 1,
        "lr": optimizer.param_groups[0]["lr"],
        "train_loss": pos.loss_sum / pos.seen,
        "train_acc": pos.correct / pos.seen,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "images_per_s": pos.seen / pos.train_time,
        "elapsed_s": pos.elapsed,
    }


def _progress_bar(total: int, pos: _Position, epochs: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=pos.batch, desc=f"epoch {pos.epoch + 1}/{epochs}",
                unit="batch", leave=False, disable=None if enabled else True, file=sys.stderr,
                dynamic_ncols=True)


def _summary(r: dict[str, Any], epochs: int) -> str:
    return (f"epoch {r['epoch']:>3}/{epochs}  train loss {r['train_loss']:.4f} "
            f"acc {100 * r['train_acc']:6.2f}%  test loss {r['test_loss']:.4f} "
            f"acc {100 * r['test_acc']:6.2f}%  {r['images_per_s']:7.0f} img/s  "
            f"lr {r['lr']:.4g}  {r['elapsed_s']:.1f} s")


def _diverged_message(value: float, pos: _Position, out: Path) -> str:
    where = f"epoch {pos.epoch + 1}, batch {pos.batch + 1}"
    kept = (f"the last good checkpoint, {out / LAST}, is left as it was"
            if (out / LAST).exists() else "no checkpoint was written")
    return (f"loss is {value} at {where}: training diverged and stops here; {kept}. "
            "Try a lower --lr or a --warmup-epochs")


def prepare_out_dir(out: Path, resume: bool, overwrite: bool,
                    log: Callable[[str], None] = print) -> None:
    """Make `out` ready for a run's files without losing an earlier run's (unless asked to).

    With `resume` the run there continues. Otherwise an earlier run found there (a checkpoint
    or a metric) is moved aside whole, `runs/train` to `runs/train.1` (then `.2`, ...), in one
    rename, so that an interrupt at any moment leaves it complete; with `overwrite` its files
    are removed instead. A folder that also holds other files is not moved: that is an error.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output folder {out} is a file; choose another --out-dir")
    earlier = [name for name in RUN_FILES if (out / name).exists()]
    if resume or not _holds_results(out):
        out.mkdir(parents=True, exist_ok=True)
        return
    if overwrite:
        for name in earlier:
            (out / name).unlink()
        log(f"--overwrite: removed the earlier run's {', '.join(earlier)} from {out}")
        return
    others = sorted(p.name for p in out.iterdir()
                    if p.name not in RUN_FILES and not p.name.startswith("."))
    if others or Path.cwd().resolve().is_relative_to(out.resolve()):
        held = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "") if others \
            else "the current folder"
        raise ValueError(f"{out} holds an earlier run and also {held}, so it is not moved "
                         "aside: continue the run with --resume, replace its files with "
                         "--overwrite, or choose another --out-dir")
    aside = next(p for p in (out.with_name(f"{out.name}.{i}") for i in range(1, 10**6))
                 if not os.path.lexists(p))
    out.rename(aside)
    out.mkdir()
    log(f"moved the earlier run in {out} to {aside} (--resume continues a run instead; "
        "--overwrite replaces it)")


def _holds_results(out: Path) -> bool:
    """Whether `out` holds something of a run: a checkpoint or at least one epoch's metrics."""
    metrics = out / METRICS
    return (out / LAST).exists() or (out / BEST).exists() or \
        (metrics.exists() and metrics.stat().st_size > 0)


def _read_metrics(path: Path, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """The records of `metrics.jsonl`; a half-written last line (a write that was cut short)
    is dropped with a note, any other unreadable line is an error naming the file and line."""
    if not path.exists():
        return []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file of JSON records") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            valid = isinstance(record, dict) and _is_int(record.get("epoch"))
        except json.JSONDecodeError:
            valid = False
        if valid:
            records.append(record)
        elif number == len(lines):
            log(f"note: dropped the half-written last line of {path} (line {number}); the "
                "checkpoint is intact")
        else:
            raise ValueError(f"{path}, line {number}: not a JSON record with an epoch; fix or "
                             "delete that line to resume (the checkpoint is intact)")
    return records


def _write_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite the whole file atomically: an interrupt never leaves half a line."""
    checkpoint.atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n"
                                                           for r in records).encode()))


__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "build_model", "evaluate",
           "load_run_checkpoint", "make_scheduler", "plot_curves", "prepare_out_dir", "train"]
