"""MkDocs hook: the command-line reference page, generated from the argument parsers.

`cli.md` is written at build time from `minitorch_resnext.cli.build_parser()`, so it lists
exactly the commands and options that `minitorch-resnext` accepts, with their help texts and
defaults; nothing is pasted.
"""

from __future__ import annotations

import argparse
import os

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "cli.md"
WIDTH = "80"  # columns argparse wraps the help to: what the page shows without scrolling


def _subcommands(parser: argparse.ArgumentParser, prefix: str = ""
                 ) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(full name, one-line help, parser) of every subcommand and theirs ("bench conv"), in the
    order `--help` lists them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{prefix}{name}", helps.get(name, ""), sub))
                found += _subcommands(sub, f"{prefix}{name} ")
    return found


def cli_reference() -> str:
    """The Markdown of the reference page."""
    from minitorch_resnext.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        commands = _subcommands(parser)
        lines = [
            "# Command line",
            "",
            "`minitorch-resnext COMMAND [options]` (also `python -m minitorch_resnext`). This page is "
            "generated from the command's argument parsers when the site is built; "
            "`minitorch-resnext COMMAND --help` prints the same.",
            "",
            "| command | what it does |",
            "|---|---|",
            *(f"| [`{name}`](#{_anchor(name)}) | {help_.replace('|', '&#124;')} |"
              for name, help_, _ in commands),
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
        ]
        for name, _, sub in commands:
            lines += ["", f"{'#' * (name.count(' ') + 2)} {name}", "", sub.description or "", "",
                      "```text",
                      sub.format_help().rstrip(), "```"]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines) + "\n"


def _anchor(name: str) -> str:
    """The id Python-Markdown's toc gives the heading `name`."""
    return name.replace(" ", "-")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files
