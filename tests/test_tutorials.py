"""Every tutorial runs as a plain script in fast mode, and every assertion in it holds.

Each tutorial checks its own claims with `assert`; a failed assertion (or any exception)
makes the script exit non-zero, which fails its test here. Figures go to a temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
FIGURE = re.compile(r"\]\(figures/([^)\s]+)\)")  # ![...](figures/name.png) in the prose


def test_there_are_six_tutorials():
    assert [t.name[:2] for t in TUTORIALS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(tutorial, tmp_path):
    env = {
        **os.environ,
        "MINITORCH_FAST": "1",
        "MINITORCH_FIGURES": str(tmp_path / "figures"),
        "MPLBACKEND": "Agg",
        # idle OpenMP threads sleep instead of spinning: on a machine shared with other work,
        # spinning workers of Numba's parallel kernels otherwise slow every step many times over
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }
    result = subprocess.run([sys.executable, str(tutorial)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{tutorial.name} failed:\n--- stdout (tail) ---\n{result.stdout[-3000:]}\n"
        f"--- stderr ---\n{result.stderr[-5000:]}"
    )
    referenced = FIGURE.findall(tutorial.read_text(encoding="utf-8"))
    missing = [name for name in referenced if not (tmp_path / "figures" / name).is_file()]
    assert not missing, f"{tutorial.name} shows figures it did not write: {missing}"
