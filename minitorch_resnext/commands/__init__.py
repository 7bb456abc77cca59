"""Subcommands of `minitorch-resnext`, discovered by `minitorch_resnext.cli`.

A command reports a bad input by raising `CommandError` (or the engine's own ValueError,
TypeError, OSError, CheckpointError, ...): `cli.main` prints it as one line and exits 1.
Numeric options use the argument types below, so that argparse names the flag.
"""

from __future__ import annotations

import argparse
import math


class CommandError(Exception):
    """A user error found by a command: printed as `minitorch-resnext COMMAND: error: ...`."""


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def require_device(device: str) -> None:
    """Fail now, in one line, when `device` cannot be used (e.g. cuda without CuPy)."""
    from ..backend import get_backend

    try:
        get_backend(device)
    except RuntimeError as e:
        raise CommandError(f"--device {device}: {e}") from None
