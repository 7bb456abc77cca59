"""Training checkpoints: nested dicts of arrays and plain values in one `.npz`, no pickle.

Arrays (NumPy arrays or Tensors) are stored as `.npy` members named after their path in
the structure (`model/conv1.weight`, `optimizer/state/0/momentum_buffer`); everything else
(numbers, strings, lists, dicts, even with integer keys) goes into one JSON member, where
each array is a reference to its member. Reading uses `allow_pickle=False`, and the zip's
CRC-32 checks catch corrupted members. Writes go to a temporary file in the same folder
that replaces the target only once complete, so a crash or Ctrl-C during a save leaves the
previous checkpoint in place.
"""

from __future__ import annotations

import glob
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .tensor import Tensor

FORMAT = "minitorch-resnext.checkpoint"
VERSION = 1
_META = "__meta__.json"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or of another format."""


def save(obj: dict[str, Any], path: str | Path) -> None:
    """Write `obj` to `path` atomically."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "version": VERSION, "content": _encode(obj, arrays, "")}
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(file)` on a temporary sibling of `path`, sync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _remove_stale_temporaries(path)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary siblings of `path` left by writers that were killed mid-write
    (SIGKILL skips the cleanup above); a live process's file is left alone. POSIX only:
    there, signal 0 asks whether a process exists without touching it."""
    if os.name != "posix":
        return
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):-len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save`; arrays come back as NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _META not in z.files:
                raise CheckpointError(f"{path} is not a minitorch-resnext checkpoint (no metadata)")
            meta = json.loads(z[_META].tobytes())
            arrays = {k: z[k] for k in z.files if k != _META}
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a minitorch-resnext checkpoint")
        if meta.get("version") != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')} "
                                  f"is not supported (this version reads {VERSION})")
        return _decode(meta["content"], arrays)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated or corrupted "
            f"({type(e).__name__}: {e})"
        ) from e


def _encode(obj: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if isinstance(obj, Tensor):
        obj = obj.numpy()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"checkpoint: cannot store an object array at {path} (needs pickle)")
        key = path or "array"
        while key in arrays:
            key += "_"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        items = [(k, _encode(v, arrays, f"{path}/{k}" if path else str(k))) for k, v in obj.items()]
        if all(isinstance(k, str) for k, _ in items):
            return dict(items)
        return {"__items__": [[k, v] for k, v in items]}
    if isinstance(obj, list | tuple):
        return [_encode(v, arrays, f"{path}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"checkpoint: cannot store {type(obj).__name__} at {path or 'top level'}")


def _decode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__items__" in obj:
            return {k: _decode(v, arrays) for k, v in obj["__items__"]}
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj
