"""State dicts on disk: `.npz` (NumPy, read without pickle) or `.safetensors`.

Keys and shapes are PyTorch's, so a torchvision ResNet/ResNeXt state dict exported to
either format (e.g. with `safetensors.torch.save_file(model.state_dict(), path)`) loads into
the matching model here: `model.load_state_dict(io.load_state_dict(path))`. bfloat16 tensors
(which NumPy has no type for) are read as float32, exactly: a bfloat16 is the upper half of a
float32. Writes are atomic (a temporary file in the same folder replaces the target only once
complete). A file that cannot be read gives a ValueError naming it (and the key at fault).
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
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
    return _read_npz(path) if fmt == ".npz" else _read_safetensors(path)


def _read_npz(path: Path) -> OrderedDict[str, np.ndarray]:
    with open(path, "rb") as f:
        if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip archive (or an empty one)
            raise ValueError(f"{path}: not an .npz file (a zip archive of .npy arrays)")
    state, key = OrderedDict(), None
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                state[key] = z[key]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise ValueError(f"{path}: {key!r} holds Python objects, which are never loaded "
                             "(that would need pickle); save plain arrays") from None
        where = "the archive" if key is None else repr(key)
        raise ValueError(f"{path}: {where} is truncated or corrupted "
                         f"({type(e).__name__}: {e})") from None
    return state


# safetensors dtype names -> NumPy (little-endian); BF16 is widened to float32 on reading
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                       "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2",
                       "U8": "u1", "BOOL": "?", "BF16": "<u2"}


def _read_safetensors(path: Path) -> OrderedDict[str, np.ndarray]:
    """The safetensors layout: an 8-byte little-endian header length, a JSON header of
    {key: {dtype, shape, data_offsets}}, then the tensors' bytes."""
    blob = path.read_bytes()
    size = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else -1
    if not 2 <= size <= len(blob) - 8:
        raise ValueError(f"{path}: not a safetensors file (its header length is missing or "
                         "larger than the file)")
    try:
        header = json.loads(blob[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (its header is not a JSON object)")
    body = memoryview(blob)[8 + size:]
    state = OrderedDict()
    for key, info in header.items():
        if key != "__metadata__":
            state[key] = _safetensors_array(path, key, info, body)
    return state


def _safetensors_array(path: Path, key: str, info: Any, body: memoryview) -> np.ndarray:
    try:
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        shape = tuple(int(n) for n in shape)
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"{path}: the header entry of {key!r} is malformed") from None
    if dtype not in _SAFETENSORS_DTYPES:
        raise ValueError(f"{path}: {key!r} has dtype {dtype}, which this engine cannot hold "
                         f"(it reads {', '.join(_SAFETENSORS_DTYPES)})")
    itemsize = np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
    if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(body) \
            or end - begin != math.prod(shape) * itemsize:
        raise ValueError(f"{path}: {key!r} of shape {shape} and dtype {dtype} does not match "
                         f"its data offsets [{begin}, {end}) (the file has {len(body)} bytes "
                         "of data); it is truncated or corrupted")
    raw = np.frombuffer(body[begin:end], dtype=_SAFETENSORS_DTYPES[dtype]).reshape(shape)
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(raw.dtype.newbyteorder("="))  # a native-order copy
