"""The committed figures are as new as the code that draws them, and the stamp that says so works.

Every PNG in `tutorials/figures/` carries the digest of its tutorial's code cells (and of the
modules that drew it) from the run that wrote it; a figure whose digest differs from today's
code is stale: rerun its tutorial in full (`python tutorials/NN_name.py`) and commit the figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from minitorch_resnext.figures import (
    DIGEST,
    DRAWN_WITH,
    MODE,
    SOURCE,
    FigureWriter,
    code_cells,
    code_digest,
    read_stamp,
)

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "tutorials" / "figures"
COMMITTED = sorted(FIGURES.glob("*.png"))
SAVED = re.compile(r"save\(fig, \"([^\"]+\.png)\"\)")


def test_every_figure_a_tutorial_saves_is_committed_and_nothing_else():
    saved = {name for tutorial in (ROOT / "tutorials").glob("[0-9][0-9]_*.py")
             for name in SAVED.findall(tutorial.read_text(encoding="utf-8"))}
    assert saved == {p.name for p in COMMITTED}


@pytest.mark.parametrize("figure", COMMITTED, ids=lambda p: p.name)
def test_committed_figure_is_fresh(figure):
    stamp = read_stamp(figure)
    assert stamp.get(SOURCE), f"{figure.name} has no stamp: rerun the tutorial that draws it"
    source = ROOT / "tutorials" / stamp[SOURCE]
    assert stamp[MODE] == "full", f"{figure.name} was drawn with MINITORCH_FAST=1"
    drawn_with = stamp[DRAWN_WITH].split()
    assert stamp[DIGEST] == code_digest(source, drawn_with), (
        f"{figure.name} is older than the code of {source.name} (or of {drawn_with}): "
        f"run `python tutorials/{source.name}` and commit tutorials/figures/")


def test_readme_tour_figure_is_the_iso_complexity_view():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = re.search(r"## Tour\n\n!\[[^\]]*\]\((tutorials/figures/[^)]+)\)", readme)
    assert tour and tour[1] == "tutorials/figures/01_iso_complexity.png"
    assert (ROOT / tour[1]).is_file()


SCRIPT = """# ---
# jupyter: {{}}
# ---

# %% [markdown]
# # A tutorial
# {prose}

# %%
import numpy as np
x = {value}
"""


def write_tutorial(folder: Path, prose: str = "Prose.", value: int = 1) -> Path:
    (folder / "tutorials").mkdir(exist_ok=True)
    path = folder / "tutorials" / "99_stamp.py"
    path.write_text(SCRIPT.format(prose=prose, value=value), encoding="utf-8")
    return path


def test_code_cells_leave_out_the_header_and_the_prose(tmp_path):
    text = write_tutorial(tmp_path, prose="Some prose.").read_text(encoding="utf-8")
    assert code_cells(text) == "import numpy as np\nx = 1"


def test_digest_follows_the_code_not_the_prose(tmp_path):
    path = write_tutorial(tmp_path)
    first = code_digest(path)
    write_tutorial(tmp_path, prose="Other prose, same code.")
    assert code_digest(path) == first
    write_tutorial(tmp_path, value=2)
    assert code_digest(path) != first
    assert code_digest(path, ["minitorch_resnext.diagrams"]) != code_digest(path)


def test_saved_figure_is_stamped(tmp_path, monkeypatch):
    path = write_tutorial(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINITORCH_FIGURES", raising=False)
    monkeypatch.setenv("MINITORCH_FAST", "1")
    writer = FigureWriter("99_stamp.py", drawn_with=["minitorch_resnext.diagrams"])
    fig = Figure()
    fig.subplots().plot(np.arange(3))
    saved = writer.save(fig, "99_plot.png")
    assert saved == Path("tutorials/figures/99_plot.png") and saved.is_file()
    assert [p.name for p in saved.parent.iterdir()] == ["99_plot.png"]  # no partial file left
    assert read_stamp(saved) | {"Software": ""} == {
        SOURCE: "99_stamp.py", DIGEST: code_digest(path, ["minitorch_resnext.diagrams"]),
        DRAWN_WITH: "minitorch_resnext.diagrams", MODE: "fast", "Software": ""}


def test_writer_needs_its_tutorial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no tutorial '99_missing.py'"):
        FigureWriter("99_missing.py")
