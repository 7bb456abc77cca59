"""`minitorch-resnext summary`: per-stage output shapes, parameters and multiply-adds."""

from __future__ import annotations

import argparse

from . import CommandError, positive_int

NAME = "summary"
HELP = "per-stage output shape, parameters and multiply-adds of a model (--compare: side by side)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `summary` to its parser."""
    parser.add_argument("model", metavar="MODEL", help="model name, e.g. resnext50_32x4d")
    parser.add_argument("--compare", metavar="OTHER",
                        help="a second model shown side by side (resnet50 --compare "
                             "resnext50_32x4d is the paper's Table 1)")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="input height and width (default: the model's own, 224 for "
                             "ImageNet models)")
    parser.add_argument("--num-classes", type=positive_int, default=None,
                        help="classes of the final layer (default: the model's own)")


def run(args: argparse.Namespace) -> int:
    """Print the per-stage summary of one model, or two side by side; returns the exit status."""
    from ..models import MODELS, get_model
    from ..models.summary import format_table, summarize

    names = [args.model] + ([args.compare] if args.compare else [])
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise CommandError(f"unknown model {unknown[0]!r}; known models: "
                           f"{', '.join(sorted(MODELS))}")
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    built = [get_model(n, **kwargs) for n in names]
    size = args.input_size if args.input_size is not None else built[0].input_size
    print(format_table(*(summarize(m, size, name=n) for m, n in zip(built, names))))
    return 0
