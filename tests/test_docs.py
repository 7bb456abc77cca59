"""The documentation site builds without a warning, and its code examples run as written."""

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


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_site_builds_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    for page in ("index.html", "architecture/index.html", "benchmarks/index.html",
                 "tutorials/01_grouped_convolution/index.html", "api/functional/index.html"):
        assert (tmp_path / "site" / page).is_file(), f"{page} was not built"


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page, tmp_path):
    blocks = PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))
    assert blocks, f"{page.name} is listed as having examples but has none"
    script = tmp_path / "examples.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"examples of {page.name} failed:\n{result.stderr}"
