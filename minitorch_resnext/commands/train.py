"""`minitorch-resnext train`: train a model (by default the small ResNeXt on the digits)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

from . import CommandError, finite_float, positive_int, require_device

NAME = "train"
HELP = "train a ResNeXt (default: the small one on the embedded digits) with checkpoints"
LAUNCH = "mpiexec -n N python -m mpi4py -m minitorch_resnext train --distributed ..."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `train` to its parser, one per field of `TrainConfig`."""
    from ..data import DATASETS
    from ..models import MODELS
    from ..train import SCHEDULES, TrainConfig

    d = TrainConfig()
    add = parser.add_argument
    add("--model", default=d.model, choices=sorted(MODELS), help=f"(default: {d.model})")
    add("--dataset", default=d.dataset, choices=DATASETS, help=f"(default: {d.dataset})")
    add("--data-dir", default=d.data_dir,
        help="folder holding the CIFAR files (python version layout)")
    add("--epochs", type=positive_int, default=d.epochs, help=f"(default: {d.epochs})")
    add("--batch-size", type=positive_int, default=d.batch_size, help=f"(default: {d.batch_size})")
    add("--lr", type=finite_float, default=d.lr, help=f"peak learning rate (default: {d.lr})")
    add("--momentum", type=finite_float, default=d.momentum, help=f"(default: {d.momentum})")
    add("--weight-decay", type=finite_float, default=d.weight_decay,
        help=f"(default: {d.weight_decay})")
    add("--nesterov", action="store_true", help="Nesterov momentum")
    add("--schedule", default=d.schedule, choices=SCHEDULES,
        help=f"learning-rate schedule, stepped every iteration (default: {d.schedule})")
    add("--warmup-epochs", type=finite_float, default=d.warmup_epochs,
        help=f"linear warm-up from lr/10, in epochs (default: {d.warmup_epochs:g})")
    add("--milestones", type=finite_float, nargs="+", default=d.milestones, metavar="EPOCH",
        help="epochs at which 'multistep' multiplies the rate by --gamma")
    add("--step-size", type=finite_float, default=d.step_size,
        help="period in epochs at which 'step' multiplies the rate by --gamma")
    add("--gamma", type=finite_float, default=d.gamma, help=f"decay factor (default: {d.gamma})")
    add("--cardinality", type=positive_int, help="cardinality C of a small model (resnext_small)")
    add("--base-width", type=positive_int,
        help="bottleneck width d of a small model (resnext_small)")
    add("--no-augment", dest="augment", action="store_false",
        help="no random crops or flips")
    add("--label-smoothing", type=finite_float, default=d.label_smoothing,
        help=f"cross-entropy label smoothing (default: {d.label_smoothing})")
    add("--eval-batch-size", type=positive_int, default=d.eval_batch_size,
        help=f"(default: {d.eval_batch_size})")
    add("--device", default=d.device, choices=["cpu", "cuda"], help=f"(default: {d.device})")
    add("--seed", type=int, default=d.seed, help=f"initialisation and data order (default: {d.seed})")
    add("--out-dir", default=d.out_dir,
        help=f"metrics.jsonl, curves.png, last.npz, best.npz go here (default: {d.out_dir}); "
             "an earlier run found there is moved aside to OUT_DIR.1 (then .2, ...), nothing "
             "is deleted")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run saved in --out-dir (its recipe is used; --device "
                            "may change)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the earlier run in --out-dir: its checkpoints and metrics "
                            "are deleted instead of moved aside")
    add("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add("--profile", action="store_true",
        help="time every op of the training steps and print where a step's time goes")
    add("--distributed", action="store_true",
        help="data-parallel over the ranks of mpiexec (MPI on cpu, NCCL on cuda; --batch-size "
             f"is the global batch): {LAUNCH}")


def run(args: argparse.Namespace) -> int:
    """Train with the recipe given on the command line; returns the exit status (130 if interrupted)."""
    from ..profile import Profiler
    from ..train import TrainConfig, train

    require_device(args.device)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    comm = None
    if args.distributed:
        from ..distributed import init

        try:
            comm = init(device=args.device)
        except RuntimeError as e:
            raise CommandError(f"--distributed: {e}") from None
        if comm.world_size == 1:
            print("train: note: --distributed, but MPI connects this process alone (it was "
                  "not started by mpiexec -n 2 or more): it trains as a world of one rank. To "
                  f"train on N ranks: {LAUNCH}", file=sys.stderr)
    profiler = Profiler(args.device) if args.profile else None
    with profiler or contextlib.nullcontext():
        result = train(config, resume=args.resume, overwrite=args.overwrite,
                       progress=args.progress, comm=comm)
    if profiler is not None and (comm is None or comm.is_main):
        print(profiler.report(f"{config.model} on {config.dataset}, batch {config.batch_size}"))
    if result.interrupted:
        return 130
    best = max(result.history, key=lambda r: r["test_acc"]) if result.history else None
    if best is not None and (comm is None or comm.is_main):
        print(f"done: final test accuracy {100 * result.history[-1]['test_acc']:.2f}%, best "
              f"{100 * best['test_acc']:.2f}% (epoch {best['epoch']}), "
              f"{result.history[-1]['elapsed_s']:.1f} s; results in {result.out_dir}")
    return 0
