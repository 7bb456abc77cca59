"""MkDocs hook: render the percent-format tutorials (`tutorials/*.py`) as documentation pages.

At build time each tutorial becomes `tutorials/<name>.md`: its markdown cells as prose, its
code cells as Python blocks, and a link to the script itself. Figures the tutorial saved
to `tutorials/figures/` are published beside the page; a figure that has not been produced
yet (the tutorial was never run on this checkout) is replaced by a note saying how to
produce it, so the build never depends on having run the tutorials. Nothing is executed:
no Jupyter kernel, no network.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
FIGURES = TUTORIALS / "figures"
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\(figures/(?P<name>[^)\s]+)\)")


def tutorial_to_markdown(source: str, script_name: str) -> str:
    """One tutorial's Markdown page: prose cells as they are, code cells fenced."""
    notebook = jupytext.reads(source, fmt="py:percent")
    parts = []
    for cell in notebook.cells:
        text = cell.source.strip("\n")
        if not text:
            continue
        if cell.cell_type == "markdown":
            parts.append(IMAGE.sub(_figure_or_note, text))
        else:
            parts.append(f"```python\n{text}\n```")
    body = "\n\n".join(parts)
    run = (
        f'!!! tip "Run it"\n'
        f"    This page is [`tutorials/{script_name}`]({script_name}), rendered. Run it with\n"
        f"    `python tutorials/{script_name}` from the repository root (figures go to\n"
        f"    `tutorials/figures/`, or to `$MINITORCH_FIGURES`), or open it as a notebook:\n"
        f"    `jupytext --to notebook tutorials/{script_name}`."
    )
    title, _, rest = body.partition("\n")
    return f"{title}\n\n{run}\n{rest}\n"


def _figure_or_note(match: re.Match[str]) -> str:
    if (FIGURES / match["name"]).is_file():
        return match[0]
    return (
        f'!!! note "Figure not rendered on this build"\n'
        f"    `{match['name']}` ({match['alt']}) is written by running this tutorial."
    )


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for script in sorted(TUTORIALS.glob("[0-9][0-9]_*.py")):
        page = tutorial_to_markdown(script.read_text(encoding="utf-8"), script.name)
        files.append(File.generated(config, f"tutorials/{script.stem}.md", content=page))
        files.append(File.generated(config, f"tutorials/{script.name}", abs_src_path=str(script)))
    for figure in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"tutorials/figures/{figure.name}",
                                    abs_src_path=str(figure)))
    return files
