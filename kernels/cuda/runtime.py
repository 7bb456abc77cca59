"""How the CUDA kernels reach a GPU: kernel names, the `Runtime` that launches them, CuPy's.

A `Kernel` is one template instantiation of a .cu source of this folder. A `Runtime` is an
array module plus a way to launch a Kernel on arrays of it. The algorithm modules (direct.py,
gemm.py) plan their launches in plain Python and call `Runtime.launch`, so the same planning
code drives a GPU through CuPy and, in tests/test_cuda_compile.py, the host emulator over
NumPy arrays.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..geometry import Conv2dGeometry
from .occupancy import HOPPER, Device, ceil_div

SOURCE_DIR = Path(__file__).resolve().parent
COMPILE_OPTIONS = ("-std=c++17",)
ELEMENTWISE_THREADS = 256  # threads per block of the elementwise (grid-stride) kernels
ELEMENTWISE_MIN_BLOCKS = 4  # their __launch_bounds__: 4 x 256 threads per SM, 64 registers
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INCLUDE = re.compile(r'^#include "([\w.]+)"$', re.MULTILINE)

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class Kernel:
    """One template instantiation: a source file of this folder and its C++ name expression."""

    source: str
    name: str

    @classmethod
    def template(cls, source: str, name: str, *args: object) -> Kernel:
        """`name<args...>` in `source`; booleans are written as C++ spells them."""
        spelled = (str(a).lower() if isinstance(a, bool) else str(a) for a in args)
        return cls(source, f"{name}<{', '.join(spelled)}>")


@dataclass(frozen=True)
class Launch:
    """A planned launch of a kernel with `params`, the int arguments after the geometry's;
    `registers` is the register budget per thread the kernel is compiled for (its
    ``__launch_bounds__``), 255 where it has none."""

    kernel: Kernel
    grid: Grid
    block: int
    shared: int
    params: tuple[int, ...]
    registers: int = 255


class Runtime(Protocol):
    """An array module, the device the planners plan for, and a way to launch a `Kernel` on
    arrays of the array module.

    `args` are arrays (passed as pointers), None (a null pointer) and NumPy scalars whose
    types match the kernel's parameters (np.int32 for int, np.int64 for long long).
    """

    xp: Any

    @property
    def device(self) -> Device: ...

    def launch(self, kernel: Kernel, grid: Grid, block: int, shared: int, args: Sequence[Any]
               ) -> None: ...


class CupyRuntime:
    """CuPy arrays on the current CUDA device; each kernel compiled by NVRTC on its first
    launch on a device (CuPy caches the binary on disk) and kept per device, since a loaded
    function belongs to the device it was loaded on."""

    def __init__(self) -> None:
        import cupy

        self.xp = cupy
        self._functions: dict[tuple[int, Kernel], Any] = {}
        self._devices: dict[int, Device] = {}

    @property
    def device(self) -> Device:
        index = self.xp.cuda.runtime.getDevice()
        if index not in self._devices:
            self._devices[index] = device_of(self.xp.cuda.runtime.getDeviceProperties(index))
        return self._devices[index]

    def launch(self, kernel: Kernel, grid: Grid, block: int, shared: int, args: Sequence[Any]
               ) -> None:
        key = (self.xp.cuda.runtime.getDevice(), kernel)
        function = self._functions.get(key)
        if function is None:
            module = self.xp.RawModule(code=kernel_source(kernel.source), options=COMPILE_OPTIONS,
                                       name_expressions=(kernel.name,))
            function = self._functions[key] = module.get_function(kernel.name)
        function(grid, (block, 1, 1), tuple(args), shared_mem=shared)


def device_of(properties: Mapping[str, Any]) -> Device:
    """A `Device` from cudaDeviceProp fields (as CuPy's getDeviceProperties returns them);
    a field an older CuPy does not report keeps the value of an sm_90 GPU."""
    fields = {"sms": "multiProcessorCount", "registers_per_sm": "regsPerMultiprocessor",
              "threads_per_sm": "maxThreadsPerMultiProcessor",
              "blocks_per_sm": "maxBlocksPerMultiProcessor",
              "shared_per_sm": "sharedMemPerMultiprocessor",
              "shared_reserved": "reservedSharedMemPerBlock"}
    name = properties.get("name", b"GPU")
    return dataclasses.replace(
        HOPPER, name=name.decode() if isinstance(name, bytes) else str(name),
        **{field: int(properties[key]) for field, key in fields.items() if key in properties})


@cache
def cupy_runtime() -> CupyRuntime:
    """The runtime of the public entry points (CuPy imported on first use)."""
    return CupyRuntime()


@cache
def kernel_source(name: str) -> str:
    """The text of a .cu file of this folder with its local #includes inlined, so NVRTC needs
    no include path and CuPy's cache key covers every line that is compiled."""

    def inline(match: re.Match[str]) -> str:
        return (SOURCE_DIR / match.group(1)).read_text().replace("#pragma once\n", "")

    return _INCLUDE.sub(inline, (SOURCE_DIR / name).read_text())


def ctype(dtype: Any) -> str:
    """The C type of a NumPy dtype the kernels are instantiated for; TypeError otherwise."""
    try:
        return _CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"CUDA conv2d supports float32 and float64, not {dtype}") from None


def unit_steps(g: Conv2dGeometry) -> bool:
    """Stride 1 and dilation 1: the template argument (UNIT) of the kernels' compile-time fast
    path, where the window offsets are constants."""
    return g.stride == (1, 1) and g.dilation == (1, 1)


def itemsize(ctype_: str) -> int:
    """Bytes of one element of the C type ("float" or "double")."""
    return 4 if ctype_ == "float" else 8


def i32(*values: int) -> list[np.int32]:
    """Kernel int arguments."""
    return [np.int32(v) for v in values]


def elementwise_grid(total: int) -> Grid:
    """Blocks of a grid-stride kernel over `total` elements (at most 65536 blocks)."""
    return (max(1, min(ceil_div(total, ELEMENTWISE_THREADS), 1 << 16)), 1, 1)
