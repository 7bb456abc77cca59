"""Subcommands of `minitorch-resnext`, discovered by `minitorch_resnext.cli`."""
