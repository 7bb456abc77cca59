"""What the first run compiles, shown while it happens and kept for reports; and where the
compiled kernels are cached, so that later runs (and later versions) load them.

Progress: each kernel of this package that Numba compiles (not loads from its cache) prints
one line on stderr when it starts and its seconds when it ends, after `notice`'s headline,
and is appended to `COMPILED` (`bench compile` reports them). Only the outermost compilation
is shown: the helpers a kernel inlines are part of its time.

Cache: Numba keys a cached kernel on the hash of its own source file. The kernels here inline
helpers from their neighbours (`gemm.py` and `intrinsics.py` use `direct.py`'s), so a change
to one file could leave another's cached code stale. `PackageStamp` keys a kernel on the
hash of its file and of every file of this package that it imports from, directly or not:
a change recompiles exactly the kernels that may have used it, and an unchanged source (a
reinstall, another checkout of the same version) loads from the cache. The cache stays where
Numba puts it (NUMBA_CACHE_DIR, else `__pycache__` beside the sources, else the user's cache
folder).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numba.core import caching, event

from . import notice  # noqa: F401  (registered first: its headline precedes the progress)

_PACKAGE = "minitorch_resnext.kernels"
_SOURCES = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Compilation:
    """One kernel compiled for one signature, and how long it took."""

    kernel: str  # module.function, e.g. "batchnorm._forward"
    signature: str  # the argument types
    seconds: float


COMPILED: list[Compilation] = []


class _Progress(event.Listener):
    def __init__(self) -> None:
        self.depth = 0
        self.started = 0.0

    def on_start(self, ev: event.Event) -> None:
        self.depth += 1
        if self.depth == 1 and _kernel_name(ev) is not None:
            self.started = time.perf_counter()
            print(f"  compiling {_kernel_name(ev)} for {_dtypes(ev)}...", end="",
                  file=sys.stderr, flush=True)

    def on_end(self, ev: event.Event) -> None:
        self.depth -= 1
        name = _kernel_name(ev)
        if self.depth == 0 and name is not None:
            seconds = time.perf_counter() - self.started
            COMPILED.append(Compilation(name, str(ev.data.get("args")), seconds))
            print(f" {seconds:.1f} s", file=sys.stderr, flush=True)


def _kernel_name(ev: event.Event) -> str | None:
    """'module.function' for a kernel of this package, else None."""
    func = getattr(ev.data.get("dispatcher"), "py_func", None)
    module = getattr(func, "__module__", None) or ""  # None for exec-generated functions
    if not module.startswith(_PACKAGE):
        return None
    return f"{module.rsplit('.', 1)[-1]}.{func.__name__}"


def _dtypes(ev: event.Event) -> str:
    """The dtype of the first array argument (the data, e.g. 'float32'), else 'scalars'."""
    args = ev.data.get("args") or ()
    return next((str(a.dtype) for a in args if hasattr(a, "ndim")), "scalars")


@functools.cache
def _imports(path: Path) -> tuple[Path, ...]:
    """The files of this package that `path` imports from directly."""
    found: list[Path] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            found += [_SOURCES / f"{name}.py" for name in names]
    return tuple(p for p in found if p.exists())


def imported_files(path: Path) -> set[Path]:
    """`path` and the files of this package it imports from (`from .x import`, `from . import
    x`), directly or through them."""
    found: set[Path] = set()
    todo = [path.resolve()]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo += _imports(current)
    return found


@functools.cache
def source_stamp(path: Path) -> str:
    """sha256 of `imported_files(path)`, in name order: the cache key of its kernels."""
    digest = hashlib.sha256()
    for source in sorted(imported_files(path)):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


class PackageStamp(caching._CacheLocator):
    """Numba's own locator for a kernel of this package, stamped with `source_stamp` of its
    file."""

    def __init__(self, inner: caching._CacheLocator, path: Path) -> None:
        self._inner = inner
        self._path = path

    def ensure_cache_path(self) -> None:
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        return self._inner.get_cache_path()

    def get_disambiguator(self) -> str:
        return self._inner.get_disambiguator()

    def get_source_stamp(self) -> Any:
        return source_stamp(self._path)

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> PackageStamp | None:
        path = Path(py_file).resolve()
        if path.parent != _SOURCES:
            return None
        for locator in caching.CacheImpl._locator_classes:
            inner = None if locator is cls else locator.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner, path)
        return None


event.register("numba:compile", _Progress())
if PackageStamp not in getattr(caching.CacheImpl, "_locator_classes", [PackageStamp]):
    caching.CacheImpl._locator_classes.insert(0, PackageStamp)
