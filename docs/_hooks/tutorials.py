"""MkDocs hook: the tutorials as executed notebook pages.

The mkdocs-jupyter plugin renders each percent-format tutorial `tutorials/NN_*.py` as a page
and runs it in a Jupyter kernel, so every cell's printed output and every figure on the page
come from that run (set `MINITORCH_DOCS_EXECUTE=false` to render the code without running it).
This hook hands the plugin the scripts as pages `tutorials/NN_*.md`, so that other pages link to
them like any page; sends the runs' figures to a temporary folder (each figure is shown inline,
and the committed ones in `tutorials/figures/` are never overwritten by a build); keeps the
plugin's cache of fast (`MINITORCH_FAST=1`) and full runs apart; points the links between
tutorials at their pages; heads each page with how it was run; and publishes the scripts and the
committed figures.
"""

from __future__ import annotations

import datetime
import html
import os
import platform
import posixpath
import re
import shutil
import tempfile
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.nav import Navigation
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
FIGURES = TUTORIALS / "figures"
PLUGIN = "mkdocs-jupyter"
RUN_FIGURES: list[str] = []  # the temporary folder this build made for the runs' figures
NO_MATHJAX = '<script src=""> </script>'  # what `custom_mathjax_url: ""` leaves in a page
IMAGE = re.compile(r'src="figures/([^"]+)"')
LINK = re.compile(r'href="(?P<target>[^":#]+\.md)(?P<anchor>#[^"]*)?"')


def _scripts() -> list[Path]:
    return sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if "MINITORCH_FIGURES" not in os.environ:  # the runs' figures: shown inline, then deleted
        RUN_FIGURES.append(tempfile.mkdtemp(prefix="minitorch-docs-figures-"))
        os.environ["MINITORCH_FIGURES"] = RUN_FIGURES[-1]
    plugin = config.plugins[PLUGIN]
    if "cache_dir" in plugin.config:  # a cached page is keyed by its source alone, not the mode
        mode = "fast" if os.environ.get("MINITORCH_FAST") == "1" else "full"
        plugin.config["cache_dir"] = str(ROOT / plugin.config["cache_dir"] / mode)
    return config


@event_priority(50)  # before mkdocs-jupyter's on_files, which claims the tutorial pages
def on_files(files: Files, config: MkDocsConfig) -> Files:
    for script in _scripts():
        files.append(File.generated(config, f"tutorials/{script.stem}.md", abs_src_path=str(script)))
        files.append(File.generated(config, f"tutorials/{script.name}", content=script.read_bytes()))
    for figure in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"tutorials/figures/{figure.name}",
                                    abs_src_path=str(figure)))
    return files


def on_nav(nav: Navigation, config: MkDocsConfig, files: Files) -> Navigation:
    # mkdocs-jupyter wraps each page in a NotebookFile that computes its source path from the
    # docs folder, which a page generated from outside it has not: give it the real one
    for file in files:
        wrapped = getattr(file, "file", None)
        if isinstance(wrapped, File) and wrapped.generated_by is not None:
            file.abs_src_path = wrapped.abs_src_path
    return nav


def on_page_content(content: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if not _is_tutorial(page):
        return content
    content = LINK.sub(lambda m: _page_link(m, page, files), content)
    content = IMAGE.sub(lambda m: f'src="{get_relative_url(f"tutorials/figures/{m[1]}", page.url)}"',
                        content)  # a figure the prose shows: the committed one
    content = content.replace(NO_MATHJAX, "")  # the tutorials have no formulas to typeset
    return _insert_after_title(content, _run_note(page, config))


def on_post_build(config: MkDocsConfig) -> None:
    while RUN_FIGURES:  # the pages hold the figures now
        shutil.rmtree(RUN_FIGURES.pop(), ignore_errors=True)
        os.environ.pop("MINITORCH_FIGURES", None)


def _is_tutorial(page: Page) -> bool:
    source = page.file.abs_src_path
    return source is not None and Path(source).parent == TUTORIALS and source.endswith(".py")


def _page_link(match: re.Match[str], page: Page, files: Files) -> str:
    """A link written for the repository (`02_aggregated_transformations.md` beside the script,
    `../docs/benchmarks.md`), made to point at the built page; links the build does not know
    are left as they are."""
    in_repository = posixpath.normpath(posixpath.join("tutorials", match["target"]))
    docs, _, in_docs = in_repository.partition("docs/")
    uri = in_docs if not docs and in_docs else in_repository
    target = files.get_file_from_path(uri)
    if target is None:
        return match[0]
    return f'href="{get_relative_url(target.url, page.url)}{match["anchor"] or ""}"'


def _run_note(page: Page, config: MkDocsConfig) -> str:
    script = Path(page.file.abs_src_path).name
    executed = config.plugins[PLUGIN].config["execute"]
    if not executed:
        how = "Its code is shown without outputs: this build did not run it."
    else:
        mode = "with MINITORCH_FAST=1 (smaller and quicker)" if os.environ.get(
            "MINITORCH_FAST") == "1" else "in full"
        when = datetime.date.today().isoformat()
        how = (f"The outputs and figures below come from running it {mode} when this site was "
               f"built ({when}, {html.escape(platform.machine())}, "
               f"{os.cpu_count()} CPU core(s)).")
    link = get_relative_url(f"tutorials/{script}", page.url)
    return (f'<div class="admonition tip"><p class="admonition-title">Run it</p>'
            f'<p>This page is <a href="{link}"><code>tutorials/{script}</code></a>. {how} Run it '
            f'with <code>python tutorials/{script}</code> from the repository root, or open it '
            f'as a notebook: <code>jupytext --to notebook tutorials/{script}</code>.</p></div>')


def _insert_after_title(content: str, note: str) -> str:
    end = content.find("</h1>")
    if end < 0:
        return note + content
    # the title's cell closes a few tags after </h1>; put the note right after the heading
    end += len("</h1>")
    return content[:end] + note + content[end:]
