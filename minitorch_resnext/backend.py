"""Device registry: the one place that knows which array library and kernels a device uses.

`"cpu"` is NumPy with the Numba kernels of `minitorch_resnext.kernels.cpu`; `"cuda"` is CuPy
with the CUDA kernels of `minitorch_resnext.kernels.cuda`. Both are imported lazily, so a
machine without CuPy (or without a GPU) only fails when `"cuda"` is asked for. `"meta"` has
shapes and dtypes but no data (`kernels.meta`): a model's forward on it computes every shape
at no cost, which is how `models.summary` counts a model's sizes.

Ops reach arrays through `backend.xp` and kernels through attributes of the backend
(`backend.conv2d_forward(...)`), never by importing Numba or CuPy themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from .kernels.meta import empty


class Backend:
    """Arrays (`xp`) and kernels for one device."""

    def __init__(self, name: str, xp: ModuleType, kernel_module: str) -> None:
        self.name = name
        self.xp = xp
        self._kernel_module = kernel_module
        self._kernels: ModuleType | None = None

    @property
    def kernels(self) -> ModuleType:
        if self._kernels is None:
            self._kernels = importlib.import_module(self._kernel_module)
        return self._kernels

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # kernel lookup: backend.conv2d_forward -> kernels.<device>.conv2d_forward
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(self.kernels, name)
        except AttributeError:
            raise AttributeError(f"the {self.name!r} backend has no kernel {name!r}") from None

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        if self.name == "cpu" and hasattr(data, "get") and not isinstance(data, np.ndarray):
            data = data.get()  # a CuPy array coming to the CPU
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        return array if isinstance(array, np.ndarray) else self.xp.asnumpy(array)

    def result(self, array: Any) -> Any:
        """An op's output as this device keeps it (as it is, except on "meta")."""
        return array

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


def _make_cpu() -> Backend:
    return Backend("cpu", np, "minitorch_resnext.kernels.cpu")


class MetaBackend(Backend):
    """Shapes and dtypes only: every array is a read-only zero with a zero stride per axis,
    so it takes no memory whatever its shape. Ops compute on those with NumPy (on a CPU
    tensor and a meta one alike, so a model's CPU parameters can meet a meta input) and keep
    only the shape and dtype of what they produce."""

    def __init__(self) -> None:
        super().__init__("meta", np, "minitorch_resnext.kernels.meta")

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        probe = data if hasattr(data, "shape") and hasattr(data, "dtype") else np.asarray(data)
        return empty(probe.shape, probe.dtype if dtype is None else dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        raise RuntimeError("a tensor on the 'meta' device has a shape and a dtype but no data; "
                           "run on 'cpu' to get values")

    def result(self, array: Any) -> Any:
        return empty(array.shape, array.dtype)


def _make_cuda() -> Backend:
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            "device 'cuda' needs CuPy: install the extra with pip install -e '.[cuda]'"
        ) from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device
        raise RuntimeError(f"device 'cuda' is not usable here: {e}") from e
    if count < 1:
        raise RuntimeError("device 'cuda' is not usable here: no GPU found")
    return Backend("cuda", cupy, "minitorch_resnext.kernels.cuda")


_FACTORIES: dict[str, Callable[[], Backend]] = {"cpu": _make_cpu, "cuda": _make_cuda,
                                                "meta": MetaBackend}
_BACKENDS: dict[str, Backend] = {}


def get_backend(device: str | Backend = "cpu") -> Backend:
    """The backend for a device name ('cpu', 'cuda' or 'cuda:0')."""
    if isinstance(device, Backend):
        return device
    if not isinstance(device, str):
        device = str(device)
    name = device.split(":")[0]
    if name not in _FACTORIES:
        raise ValueError(f"device must be one of {sorted(_FACTORIES)}, got {device!r}")
    if name not in _BACKENDS:
        _BACKENDS[name] = _FACTORIES[name]()
    return _BACKENDS[name]


def cuda_is_available() -> bool:
    """True when CuPy imports and sees a GPU."""
    try:
        get_backend("cuda")
    except RuntimeError:
        return False
    return True


def backend_of_array(array: Any) -> Backend:
    """The backend an array belongs to: CPU for NumPy arrays, CUDA otherwise."""
    return get_backend("cpu" if isinstance(array, np.ndarray | np.generic) else "cuda")


def common_backend(op: str, backends: list[Backend]) -> Backend:
    """The backend an op on tensors of these backends runs on: their one backend, or "meta"
    when some are on it (the others' values only shape the result)."""
    first = backends[0]
    for b in backends[1:]:
        if b is not first:
            if "meta" in (b.name, first.name):
                return get_backend("meta")
            raise RuntimeError(f"{op}: tensors are on different devices ({first.name} and "
                               f"{b.name}); move them with .to(device)")
    return first
