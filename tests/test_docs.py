"""The documentation site builds without a warning, and its code examples run as written.

The build here renders the tutorials without running them (`MINITORCH_DOCS_EXECUTE=false`):
`tests/test_tutorials.py` runs each of them in a Jupyter kernel the way a full build does, and
running them twice would double the suite's longest tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# pages whose ```python blocks form one runnable program each (the API pages are generated)
EXAMPLE_PAGES = sorted(
    [*(DOCS / "concepts").glob("*.md"), DOCS / "architecture.md", DOCS / "installation.md"]
)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once with --strict (the tutorials rendered, not run)."""
    if not all(importlib.util.find_spec(m) for m in ("mkdocs", "mkdocs_jupyter")):
        pytest.skip("mkdocs and mkdocs-jupyter are not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env={**_env(), "MINITORCH_DOCS_EXECUTE": "false"}, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return out


def test_site_builds_strict(site):
    for page in ("index.html", "architecture/index.html", "benchmarks/index.html", "cli/index.html",
                 "tutorials/01_grouped_convolution/index.html", "api/functional/index.html"):
        assert (site / page).is_file(), f"{page} was not built"


@pytest.mark.parametrize("number", range(1, 7))
def test_tutorial_pages_link_to_pages(site, number):
    (page,) = (site / "tutorials").glob(f"0{number}_*/index.html")
    text = page.read_text(encoding="utf-8")
    assert "Run it" in text and f'href="../{page.parent.name}.py"' in text  # the script itself
    assert 'src=""' not in text  # no empty MathJax script
    for target in re.findall(r'(?:href|src)="(?![a-z]+:)([^"#?]+)', text):  # every relative link
        resolved = (page.parent / target).resolve()
        assert resolved.is_file() or (resolved / "index.html").is_file(), f"{page.parent.name}: {target}"


def test_cli_page_lists_every_command(site):
    from minitorch_resnext.cli import build_parser

    text = (site / "cli" / "index.html").read_text(encoding="utf-8")
    commands = [a for a in build_parser()._actions if a.dest == "command"][0].choices
    for name, parser in commands.items():
        assert f'id="{name}"' in text, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, f"{name} {flag}"


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page, tmp_path):
    blocks = PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))
    assert blocks, f"{page.name} is listed as having examples but has none"
    script = tmp_path / "examples.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"examples of {page.name} failed:\n{result.stderr}"
