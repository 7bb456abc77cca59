"""`minitorch-resnext gradcheck`: check every op's gradient against finite differences."""

from __future__ import annotations

import argparse

from . import CommandError, positive_int, require_device

NAME = "gradcheck"
HELP = "check each op against float64 central differences and its NumPy reference"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `gradcheck` to its parser."""
    parser.add_argument("ops", nargs="*", metavar="OP", help="ops to check (default: all)")
    parser.add_argument("--examples", type=positive_int, default=10,
                        help="configurations drawn per op (default: 10)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0, help="seed for the drawn configurations")
    parser.add_argument("--list", action="store_true", help="list the ops and exit")


def run(args: argparse.Namespace) -> int:
    """Check the chosen ops against central differences and print a table; returns the exit status."""
    from ..testing.cases import CASES
    from ..testing.report import check_ops, print_table

    names = sorted(CASES, key=lambda n: (n != "conv2d", n))
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [op for op in args.ops if op not in CASES]
    if unknown:
        raise CommandError(f"unknown op(s) {', '.join(unknown)}; known: {', '.join(names)}")
    require_device(args.device)
    rows = check_ops([n for n in names if not args.ops or n in args.ops],
                     examples=args.examples, device=args.device, seed=args.seed)
    print_table(rows)
    return 0 if all(r.ok for r in rows) else 1
