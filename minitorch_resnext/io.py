"""State dicts on disk: `.npz` (NumPy, read without pickle) or `.safetensors`.

Keys and shapes are PyTorch's, so a torchvision ResNet/ResNeXt state dict exported to
either format (e.g. with `safetensors.torch.save_file(model.state_dict(), path)`) loads into
the matching model here: `model.load_state_dict(io.load_state_dict(path))`. Writes are atomic
(a temporary file in the same folder replaces the target only once complete).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as _safetensors_load
from safetensors.numpy import save as _safetensors_save

from .checkpoint import atomic_write
from .nn import Module
from .tensor import Tensor

FORMATS = (".npz", ".safetensors")


def _format(path: Path) -> str:
    if path.suffix not in FORMATS:
        raise ValueError(f"{path}: unknown state-dict format {path.suffix!r}; use one of "
                         f"{', '.join(FORMATS)}")
    return path.suffix


def save_state_dict(state: Module | Mapping[str, Any], path: str | Path) -> None:
    """Write a model's (or a mapping's) arrays to `path`, format by suffix."""
    path = Path(path)
    fmt = _format(path)
    if isinstance(state, Module):
        state = state.state_dict()
    arrays = {k: np.asarray(v.numpy() if isinstance(v, Tensor) else v, order="C")
              for k, v in state.items()}
    if fmt == ".npz":
        atomic_write(path, lambda f: np.savez(f, **arrays))
    else:
        blob = _safetensors_save(arrays, metadata={"format": "np"})
        atomic_write(path, lambda f: f.write(blob))


def load_state_dict(path: str | Path) -> OrderedDict[str, np.ndarray]:
    """Read a state dict written by `save_state_dict` (or any npz/safetensors of arrays)."""
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no state dict at {path}")
    if fmt == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return OrderedDict((k, z[k]) for k in z.files)
    return OrderedDict(_safetensors_load(path.read_bytes()))
