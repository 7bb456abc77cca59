"""Figures of the tutorials, stamped with the code that drew them.

A committed figure is only as true as the code that drew it. `FigureWriter.save` writes each
PNG with text chunks that name its tutorial and hold a SHA-256 digest of the tutorial's code
cells (prose edits do not count) and of the project modules that did the drawing; the test
suite recomputes the digest and fails when a figure is older than its code. Inside a Jupyter
kernel (a notebook, or the documentation build) the saved figure is also shown inline, so the
page shows the figure of the very run whose printed output it shows.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

# PNG text chunks written by `FigureWriter.save`
SOURCE, DIGEST, DRAWN_WITH, MODE = "Source", "Source-SHA256", "Drawn-With", "Mode"


def code_cells(text: str) -> str:
    """The code cells of a percent-format script, without its prose: the jupytext header and
    `# %% [markdown]` cells are dropped, trailing spaces and blank lines stripped."""
    lines, in_code = [], False
    for line in text.splitlines():
        if line.startswith("# %%"):
            in_code = "[markdown]" not in line
            continue
        if in_code and line.strip():
            lines.append(line.rstrip())
    return "\n".join(lines)


def code_digest(source: str | Path, drawn_with: Sequence[str] = ()) -> str:
    """SHA-256 of the code cells of `source` and of the source files of the modules named in
    `drawn_with` (e.g. "minitorch_resnext.diagrams")."""
    digest = hashlib.sha256(code_cells(Path(source).read_text(encoding="utf-8")).encode())
    for name in drawn_with:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"drawn_with: no source file for module {name!r}")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


def read_stamp(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG (empty for a figure saved without a stamp)."""
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as image:
        return dict(getattr(image, "text", {}))


def find_tutorial(name: str) -> Path:
    """The tutorial file `name`: under `tutorials/` when run from the repository root, in the
    working folder when run as a notebook from `tutorials/`, else beside the running script."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    candidates = [Path("tutorials") / name, Path(name)]
    if main is not None:
        candidates.append(Path(main).resolve().with_name(name))
    for path in candidates:
        if path.is_file():
            return path
    raise ValueError(f"no tutorial {name!r} under tutorials/, here or beside {main}")


class FigureWriter:
    """Saves one tutorial's figures to `$MINITORCH_FIGURES` (default: `figures/` beside it).

    Args:
        tutorial: the tutorial's file name, e.g. "01_grouped_convolution.py".
        drawn_with: modules whose code draws figures for it, stamped into the digest too.
    """

    def __init__(self, tutorial: str, drawn_with: Sequence[str] = ()) -> None:
        self.source = find_tutorial(tutorial)
        self.drawn_with = tuple(drawn_with)
        self.folder = Path(os.environ.get("MINITORCH_FIGURES", self.source.parent / "figures"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fast = os.environ.get("MINITORCH_FAST") == "1"

    def save(self, fig: Figure, name: str) -> Path:
        """Write `fig` as PNG `name` atomically (a failed run leaves the old figure), stamped."""
        path = self.folder / name
        stamp = {SOURCE: self.source.name, DIGEST: code_digest(self.source, self.drawn_with),
                 DRAWN_WITH: " ".join(self.drawn_with), MODE: "fast" if self.fast else "full"}
        partial = path.with_name(f".{name}.partial")
        fig.savefig(partial, format="png", dpi=110, bbox_inches="tight", metadata=stamp)
        os.replace(partial, path)
        print(f"figure written: {path}")
        _show_inline(path)
        return path


def _show_inline(path: Path) -> None:
    """Display the PNG when running in a Jupyter kernel; do nothing in a plain script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    from IPython.display import Image, display

    display(Image(filename=str(path)))
