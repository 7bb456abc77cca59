"""The `minitorch-resnext` command line.

Each subcommand is a module in `minitorch_resnext/commands/` that defines `NAME`, `HELP`,
`configure(parser)` and `run(args) -> int`; modules import their heavy dependencies inside
`run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `minitorch-resnext`, with one subparser per module of `commands`."""
    parser = argparse.ArgumentParser(
        prog="minitorch-resnext",
        description="Learn and measure ResNeXt and grouped convolution with a from-scratch engine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    found = [importlib.import_module(f"{commands.__name__}.{m.name}")
             for m in pkgutil.iter_modules(commands.__path__)]
    for module in sorted(found, key=lambda m: m.NAME):
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: sys.argv); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
