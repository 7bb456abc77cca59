"""`minitorch-resnext bench SUBJECT`: benchmarks that print a table and write JSON.

Each subject is a module in `minitorch_resnext/bench/` with `HELP`, `configure(parser)` and
`run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from .. import bench

NAME = "bench"
HELP = "benchmark kernels or training steps side by side with PyTorch (when installed)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add one subcommand per benchmark module (`bench conv`, `bench train`, ...)."""
    sub = parser.add_subparsers(dest="subject", metavar="SUBJECT", required=True)
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{bench.__name__}.{info.name}")
        p = sub.add_parser(info.name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(run=module.run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark; returns its exit status."""
    return args.run(args)
