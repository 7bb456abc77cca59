"""Every tutorial runs in fast mode, and every assertion in it holds.

Each tutorial checks its own claims with `assert`. Here each one runs as a notebook in a Jupyter
kernel, the way the documentation site runs it (a failed assertion, or any exception, fails the
test with the cell's traceback); where the `docs` extra that provides the kernel is missing, it
runs as a plain script instead. Its figures go to a temporary folder and must also be shown
inline, so that the site shows them. One tutorial also runs as a plain script always, the way
the README runs them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minitorch_resnext.figures import MODE, read_stamp

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
SAVED = re.compile(r"save\(fig, \"([^\"]+\.png)\"\)")  # figures.save(fig, "name.png")
KERNEL = all(importlib.util.find_spec(m) for m in ("jupytext", "nbclient", "ipykernel"))


def fast_env(figures: Path) -> dict[str, str]:
    return {
        "MINITORCH_FAST": "1",
        "MINITORCH_FIGURES": str(figures),
        "MPLBACKEND": "Agg",
        # idle OpenMP threads sleep instead of spinning: on a machine shared with other work,
        # spinning workers of Numba's parallel kernels otherwise slow every step many times over
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }


def run_as_script(tutorial: Path, env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, str(tutorial)], cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{tutorial.name} failed:\n--- stdout (tail) ---\n{result.stdout[-3000:]}\n"
        f"--- stderr ---\n{result.stderr[-5000:]}"
    )


def run_as_notebook(tutorial: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list:
    """The executed notebook's outputs, cell by cell (the kernel inherits the environment)."""
    import jupytext
    import nbclient

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    notebook = jupytext.read(tutorial)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    return [cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"]


def test_there_are_six_tutorials():
    assert [t.name[:2] for t in TUTORIALS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(tutorial, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    saved = SAVED.findall(tutorial.read_text(encoding="utf-8"))
    if KERNEL:
        outputs = [o for cell in run_as_notebook(tutorial, fast_env(figures), monkeypatch) for o in cell]
        assert any(o.get("name") == "stdout" for o in outputs), "the tutorial printed nothing"
        shown = sum("image/png" in o.get("data", {}) for o in outputs)
        assert shown == len(saved), f"{shown} figures shown inline, {len(saved)} saved"
    else:
        run_as_script(tutorial, fast_env(figures))
    missing = [name for name in saved if not (figures / name).is_file()]
    assert not missing, f"{tutorial.name} did not write the figures {missing}"
    assert all(read_stamp(figures / name)[MODE] == "fast" for name in saved)


def test_a_tutorial_runs_as_a_plain_script(tmp_path):
    run_as_script(ROOT / "tutorials" / "05_gpu_kernel.py", fast_env(tmp_path / "figures"))
