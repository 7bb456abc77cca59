"""The `minitorch-resnext` command line.

Each subcommand is a module in `minitorch_resnext/commands/` that defines `NAME`, `HELP`,
`configure(parser)` and `run(args) -> int`; modules import their heavy dependencies inside
`run`, so `--help` stays fast.

Errors are handled here, once: a bad input or environment (a `CommandError`, or the engine's
ValueError, TypeError, OSError, MemoryError, CheckpointError, TrainingDiverged) is printed as
one line, `minitorch-resnext COMMAND: error: MESSAGE`, and the exit status is 1; `--debug`
shows the traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__, commands
from .commands import CommandError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `minitorch-resnext`, with one subparser per module of `commands`."""
    parser = argparse.ArgumentParser(
        prog="minitorch-resnext",
        description="Learn and measure ResNeXt and grouped convolution with a from-scratch engine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    found = [importlib.import_module(f"{commands.__name__}.{m.name}")
             for m in pkgutil.iter_modules(commands.__path__)]
    for module in sorted(found, key=lambda m: m.NAME):
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           parents=[common])
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
    except Exception as e:
        if args.debug or not _is_user_error(e):
            raise
        print(f"{parser.prog} {args.command}: error: {_one_line(e)}", file=sys.stderr)
        _end_other_ranks()
        return 1


def _is_user_error(e: Exception) -> bool:
    """A bad input or environment, as opposed to a bug."""
    from .checkpoint import CheckpointError
    from .train import TrainingDiverged

    return isinstance(e, CommandError | ValueError | TypeError | OSError | MemoryError
                      | CheckpointError | TrainingDiverged)


def _one_line(e: Exception) -> str:
    """The error's message on one line (an OSError as 'FILE: reason')."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, MemoryError):
        return f"out of memory{': ' + str(e) if str(e) else ''}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return "".join(f"{line} " if line.endswith(":") else f"{line}; " for line in lines).rstrip("; ")


def _end_other_ranks() -> None:
    """In a job of several MPI ranks, end them all: the others would wait for this one in
    their next collective forever."""
    comm_module = sys.modules.get("minitorch_resnext.distributed.comm")
    if comm_module is None:
        return
    comm = comm_module.get_communicator()
    mpi = getattr(comm, "mpi", comm)  # NCCL runs over an MPI communicator
    if comm.world_size > 1 and hasattr(mpi, "abort"):
        print(f"rank {comm.rank} of {comm.world_size} failed: ending every rank", file=sys.stderr)
        mpi.abort(1)


if __name__ == "__main__":
    sys.exit(main())
