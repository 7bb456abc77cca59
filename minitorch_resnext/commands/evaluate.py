"""`minitorch-resnext evaluate CHECKPOINT`: test loss and accuracy of a saved model."""

from __future__ import annotations

import argparse
import json

from . import positive_int, require_device

NAME = "evaluate"
HELP = "evaluate a training checkpoint on its dataset's test split"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `evaluate` to its parser."""
    parser.add_argument("checkpoint", help="a checkpoint written by train (last.npz or best.npz)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-dir", help="folder of the CIFAR files, if it moved")
    parser.add_argument("--batch-size", type=positive_int,
                        help="(default: the training recipe's)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on its test split and print the result; returns the exit status."""
    from ..train import evaluate_checkpoint

    require_device(args.device)
    r = evaluate_checkpoint(args.checkpoint, args.device, args.data_dir, args.batch_size)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        correct = round(r["test_acc"] * r["test_images"])
        print(f"{r['checkpoint']}: {r['model']} on {r['dataset']} after {r['epochs_done']} "
              f"epoch(s): test loss {r['test_loss']:.4f}, accuracy {100 * r['test_acc']:.2f}% "
              f"({correct}/{r['test_images']})")
    return 0
