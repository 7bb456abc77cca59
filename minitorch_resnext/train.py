"""The trainer: SGD on a dataset, evaluation each epoch, metrics, curves and checkpoints.

`train(TrainConfig(...))` runs a whole recipe. Each epoch ends with an evaluation on the
test split, one line appended to `metrics.jsonl`, and `last.npz` written atomically (and
copied to `best.npz` when the test accuracy improves). A checkpoint holds the model, the
optimizer, the scheduler, the engine's RNG state and the position in the epoch; the data
order and augmentation are a function of (seed, epoch), so `train(config, resume=True)`
continues to the same weights, bit for bit on the CPU, as a run that was never stopped.
Ctrl-C stops after the current step and saves a checkpoint first; a NaN or infinite loss
stops with `TrainingDiverged`, leaving the last good checkpoint in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
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

from . import checkpoint, data, models, optim
from . import functional as F
from .autograd import no_grad
from .data import transforms as T
from .distributed import Communicator, DataParallelRun
from .nn import Module
from .tensor import get_rng_state, manual_seed, set_rng_state

SCHEDULES = ("cosine", "multistep", "step", "constant")
LAST, BEST, METRICS, CURVES = "last.npz", "best.npz", "metrics.jsonl", "curves.png"


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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "step" and self.step_size <= 0:
            raise ValueError("schedule 'step' needs a positive step_size (epochs)")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs} for "
                             f"{self.epochs} epoch(s); lower --warmup-epochs")


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


def evaluate_checkpoint(path: str | Path, device: str = "cpu", data_dir: str | None = None,
                        batch_size: int | None = None) -> dict[str, Any]:
    """Test loss and accuracy of the model saved in a checkpoint, on its dataset's test split
    (`data_dir` overrides the folder recorded for CIFAR)."""
    saved = checkpoint.load(path)
    config = TrainConfig(**saved["config"])
    if data_dir is not None:
        config.data_dir = data_dir
    test_set = data.get_dataset(config.dataset, train=False, root=config.data_dir)
    model = build_model(config, test_set)
    model.load_state_dict(saved["model"])
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
          log: Callable[[str], None] = print, comm: Communicator | None = None) -> TrainResult:
    """Run `config` (or, with `resume`, continue the run saved in `config.out_dir`).

    With `comm` (`mr.distributed.init()`), train data-parallel on every rank: the batch size
    is the global one, and rank 0 alone logs and writes the outputs."""
    run = DataParallelRun(comm)
    if not run.is_main:
        log, progress = (lambda _: None), False
    out = Path(config.out_dir)
    saved = None
    if resume:
        saved = checkpoint.load(out / LAST)
        config = dataclasses.replace(TrainConfig(**saved["config"]), out_dir=str(out),
                                     device=config.device)
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
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        pos = _Position(**saved["position"])
        history = [r for r in _read_metrics(out / METRICS) if r["epoch"] <= pos.epoch]
        log(f"resuming {out / LAST}: epoch {pos.epoch + 1}, batch {pos.batch}")
    elif (out / LAST).exists():
        log(f"note: starting a fresh run in {out}; its checkpoint is replaced after the first "
            "epoch (use --resume to continue it instead)")
    out.mkdir(parents=True, exist_ok=True)
    if run.is_main:
        _write_metrics(out / METRICS, history)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{config.model} ({n_params:,} parameters) on {config.dataset}: {len(train_set)} train / "
        f"{len(test_set)} test images, {config.epochs} epochs, batch {config.batch_size}, "
        f"device {config.device}, output {out}")

    def save(path: Path) -> None:
        if not run.is_main:
            return
        checkpoint.save({"config": dataclasses.asdict(config),
                         "normalization": {"mean": train_set.mean, "std": train_set.std},
                         "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "rng": get_rng_state(), "position": dataclasses.asdict(pos)}, path)

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
                _append_metric(out / METRICS, record)
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


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    checkpoint.atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n"
                                                           for r in records).encode()))


def _append_metric(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "build_model", "evaluate",
           "make_scheduler", "plot_curves", "train"]
