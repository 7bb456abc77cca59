"""CIFAR-10 and CIFAR-100 from a local folder in the official "python version" layout.

    ROOT/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
    ROOT/cifar-100-python/train, test

(ROOT may also be that folder itself.) The files are pickles; they are read with an
unpickler that only builds what they hold (dicts, lists, bytes, str, numbers, and NumPy
arrays), so a file that names any other class or function is refused, not executed.
Nothing is downloaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import ImageDataset

_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy.core (1.x) or numpy._core (2.x) _reconstruct


def _reconstruct_empty(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """NumPy's pickles rebuild an array empty, then fill it from the file's bytes; any other
    shape would allocate memory (up to terabytes) that the file does not hold."""
    if subtype is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"refusing to build an empty array of shape {shape}: "
                                     "arrays must come from the bytes in the file")
    return _RECONSTRUCT(subtype, shape, dtype)


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR batch holds only dicts, lists, "
                "strings and NumPy arrays"
            ) from None


def load_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 in [0, num_classes) of one batch
    file."""
    try:
        with open(path, "rb") as f:
            raw = _RestrictedUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: {e}") from None
    except (EOFError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a readable CIFAR batch file ({e})") from None
    except MemoryError:
        raise ValueError(f"{path}: not a readable CIFAR batch file (it asks for more memory "
                         "than this machine has)") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict, found {type(raw).__name__}")
    entries = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    data, labels = entries.get("data"), entries.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise ValueError(f"{path}: '{label_key}' must hold one label per image")
    return data.reshape(-1, 3, 32, 32), _class_indices(path, label_key, labels, num_classes)


def _class_indices(path: Path, key: str, labels: list | np.ndarray, num_classes: int
                   ) -> np.ndarray:
    """`labels` as int64 class indices, refusing anything else (floats are not truncated)."""
    odd = next((v for v in labels if not isinstance(v, int | np.integer) or isinstance(v, bool)),
               None)
    if odd is not None:
        odd = odd.item() if isinstance(odd, np.generic) else odd
        raise ValueError(f"{path}: '{key}' must hold integer class indices, found "
                         f"{odd!r:.40} ({type(odd).__name__})")
    found = np.asarray(labels, dtype=np.int64)
    bad = found[(found < 0) | (found >= num_classes)]
    if bad.size:
        raise ValueError(f"{path}: '{key}' holds {bad[0]}, not a class index in "
                         f"[0, {num_classes})")
    return found


class _CIFAR(ImageDataset):
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str

    def __init__(self, root: str | Path, train: bool = True) -> None:
        root = Path(root).expanduser()
        base = root if root.name == self.folder else root / self.folder
        names = self.train_files if train else self.test_files
        for name in names:
            if not (base / name).is_file():
                expected = ", ".join(self.train_files + self.test_files)
                raise FileNotFoundError(
                    f"{type(self).__name__}: missing file {base / name}; expected the "
                    f"'python version' layout {self.folder}/{{{expected}}} under {root} "
                    "(from https://www.cs.toronto.edu/~kriz/cifar.html)"
                )
        parts = [load_batch(base / name, self.label_key, self.num_classes) for name in names]
        super().__init__(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.data[index].astype(np.float32) / 255, self.targets[index]

    def __getitems__(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Images as float32 in [0, 1] (stored as uint8 to keep 50,000 images in 150 MB)."""
        return self.data[indices].astype(np.float32) / 255, self.targets[indices]


class CIFAR10(_CIFAR):
    """CIFAR-10: 50,000 train / 10,000 test colour images 32x32, 10 classes."""

    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


class CIFAR100(_CIFAR):
    """CIFAR-100: 50,000 train / 10,000 test colour images 32x32, 100 (fine) classes."""

    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
