"""Test-only tooling for the CUDA kernels without a GPU: the host emulator and compilers.

- `Emulator`: the kernels compiled by g++ as one host library with kernels/cuda/
  host_emulation.cuh, a C entry per template instantiation.
- `EmulatedRuntime`: a `Runtime` over `GuardedArrays` (NumPy with guard bytes around every
  array the planner allocates) that launches on the emulator, so the package's own planning
  and launch code runs unchanged.
- `nvrtc_compile`: NVRTC through CuPy's bindings, the compiler used at run time, with CuPy's
  options; needs CuPy's NVRTC library but no GPU.
- `ptxas_info`: registers and spills of every instantiation, from nvcc's ptxas -v, compiled
  in parallel and cached.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_resnext.kernels.cuda.occupancy import HOPPER
from minitorch_resnext.kernels.cuda.runtime import (
    COMPILE_OPTIONS,
    SOURCE_DIR,
    Grid,
    Kernel,
    kernel_source,
)


def instantiating(source: str, names: Sequence[str]) -> str:
    """The loader's text of `source` plus a table that instantiates each name expression."""
    table = ",\n  ".join(f"reinterpret_cast<const void*>(&{n})" for n in names)
    return f"{kernel_source(source)}\nconst void* mr_instances[] = {{\n  {table}\n}};\n"


@dataclass(frozen=True)
class PtxasInfo:
    """What ptxas -v reports for one kernel."""

    registers: int
    spill_bytes: int  # bytes of spill stores


_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_SPILLS = re.compile(r"(\d+) bytes spill stores")
_REGISTERS = re.compile(r"Used (\d+) registers")


def _nvcc(path: Path, arch: str) -> subprocess.Popen[str]:
    cmd = ["nvcc", f"-arch={arch}", *COMPILE_OPTIONS, "-Werror", "all-warnings", "-Xptxas", "-v",
           "--cubin", str(path), "-o", str(path.with_suffix(".cubin"))]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _demangled(symbols: Sequence[str]) -> list[str]:
    """`name<args>` of each mangled kernel symbol (c++filt prints `void name<args>(params)`)."""
    out = subprocess.run(["c++filt"], input="\n".join(symbols), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return [line.removeprefix("void ")[: line.index("(") - len("void ")] for line in out]


# ptxas results, kept between runs (CI runs on the same machine as the sessions before it)
PTXAS_CACHE = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "minitorch-resnext/ptxas"


def ptxas_info(planned: Mapping[str, Sequence[str]], arch: str, directory: Path,
               cache: Path | None = PTXAS_CACHE) -> dict[str, PtxasInfo]:
    """ptxas -v's registers and spill stores of every name expression of `planned` (source
    file -> names), compiled by nvcc for `arch` with warnings as errors in `directory`, split
    over the CPU cores. The result is kept in `cache`, keyed by the sources' text, nvcc's
    version, `arch` and the names. Raises AssertionError with nvcc's log on failure."""
    version = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    key_text = json.dumps([version, arch, COMPILE_OPTIONS, sorted(
        (source, kernel_source(source), sorted(names)) for source, names in planned.items())])
    kept = None if cache is None else cache / f"{hashlib.sha256(key_text.encode()).hexdigest()}.json"
    if kept is not None and kept.is_file():
        return {name: PtxasInfo(*info) for name, info in json.loads(kept.read_text()).items()}
    parts = max(1, os.cpu_count() or 1)  # ptxas dominates: one job per core
    jobs = []
    for source, names in planned.items():
        for part in range(min(parts, len(names))):
            unit = directory / f"{part}_{source}"
            unit.write_text(instantiating(source, names[part::parts]))
            jobs.append((source, _nvcc(unit, arch)))
    symbols, infos = [], []
    for source, job in jobs:
        log = job.communicate()[0]
        assert job.returncode == 0, f"nvcc failed on {source}:\n{log}"
        for entry in log.split("Compiling entry function")[1:]:
            entry = "Compiling entry function" + entry
            symbols.append(_ENTRY.search(entry).group(1))
            infos.append(PtxasInfo(int(_REGISTERS.search(entry).group(1)),
                                   int(_SPILLS.search(entry).group(1))))
    result = dict(zip(_demangled(symbols), infos, strict=True))
    if kept is not None:  # written whole, then renamed: a reader never sees half a file
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({n: [i.registers, i.spill_bytes] for n, i in result.items()}))
        partial.replace(kept)
    return result


def nvrtc_compile(source: str, names: Sequence[str], arch: str = "sm_90") -> dict[str, str]:
    """Compile `source` with NVRTC through CuPy for `arch`, with the options cupy.RawModule
    uses, instantiating `names`. Returns each name's lowered (mangled) symbol; raises
    RuntimeError with NVRTC's log on failure."""
    from cupy_backends.cuda.libs import nvrtc

    # cupy.RawModule adds these to the caller's options (cupy/cuda/compiler.py)
    options = [*COMPILE_OPTIONS, f"-arch={arch}", "--device-as-default-execution-space", "-ftz=true"]
    program = nvrtc.createProgram(source, "kernel.cu", [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(program, name)
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as e:
            raise RuntimeError(f"{e}\n{nvrtc.getProgramLog(program)}") from None
        return {name: nvrtc.getLoweredName(program, name) for name in names}
    finally:
        nvrtc.destroyProgram(program)


class GuardedArrays:
    """NumPy, except that `empty` and `zeros` place arrays between guard bytes (0xFF, a NaN in
    either dtype) and fill `empty` ones with NaN, so that unwritten outputs, reads past an
    array and writes past an array all show; `check` verifies the guards."""

    GUARD = 256

    def __init__(self) -> None:
        self._buffers: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def empty(self, shape: Any, dtype: Any = np.float64) -> np.ndarray:
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buffer = np.full(size + 2 * self.GUARD, 0xFF, dtype=np.uint8)
        self._buffers.append(buffer)
        return buffer[self.GUARD : self.GUARD + size].view(dtype).reshape(shape)

    def zeros(self, shape: Any, dtype: Any = np.float64) -> np.ndarray:
        array = self.empty(shape, dtype)
        array[...] = 0
        return array

    def copy_of(self, array: np.ndarray) -> np.ndarray:
        out = self.empty(array.shape, array.dtype)
        out[...] = array
        return out

    def check(self) -> None:
        for buffer in self._buffers:
            assert (buffer[: self.GUARD] == 0xFF).all() and (buffer[-self.GUARD :] == 0xFF).all(), (
                "a kernel wrote outside an array"
            )


class Emulator:
    """The kernels compiled as one host shared library, with a C entry per instantiation."""

    def __init__(self, directory: Path, kernels: Sequence[Kernel]) -> None:
        entries = [
            f'extern "C" int mr_emu_{i}(const unsigned* g, const unsigned* b, unsigned long long'
            f" shared, int reverse, void** args, const char* kinds, const int* sizes, char* err,"
            f" int err_len) {{ return mr_emu::launch(&{k.name}, g, b, shared, reverse, args,"
            f" kinds, sizes, err, err_len); }}"
            for i, k in enumerate(kernels)
        ]
        sources = "".join(f'#include "{name}"\n' for name in sorted({k.source for k in kernels}))
        cpp = directory / "emulation.cpp"
        cpp.write_text('#include "host_emulation.cuh"\n' + sources + "\n".join(entries) + "\n")
        lib = directory / "emulation.so"
        subprocess.run(
            ["g++", "-std=c++17", "-O1", "-fno-strict-aliasing", "-shared", "-fPIC", "-Wall",
             "-Werror", "-Wno-unknown-pragmas", f"-I{SOURCE_DIR}", str(cpp), "-o", str(lib)],
            check=True,
            capture_output=True,
            text=True,
        )
        self._lib = ctypes.CDLL(str(lib))
        self._entries = {k: getattr(self._lib, f"mr_emu_{i}") for i, k in enumerate(kernels)}

    def launch(self, kernel: Kernel, grid: Sequence[int], block: int, shared: int,
               args: Sequence[Any], reverse: bool) -> None:
        values: list[Any] = []
        kinds, sizes = "", []
        for a in args:
            if a is None:  # a null pointer, as CuPy passes None
                values.append(ctypes.c_void_p(None))
                kinds, size = kinds + "p", ctypes.sizeof(ctypes.c_void_p)
            elif isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, "kernels take C-contiguous arrays"
                values.append(ctypes.c_void_p(a.ctypes.data))
                kinds, size = kinds + "p", ctypes.sizeof(ctypes.c_void_p)
            elif isinstance(a, np.integer | np.floating):
                values.append(np.ctypeslib.as_ctypes_type(a.dtype)(a.item()))
                kinds, size = kinds + ("i" if isinstance(a, np.integer) else "f"), a.dtype.itemsize
            else:  # CuPy would pass a Python scalar with a type of its own choosing
                raise TypeError(f"kernel argument {a!r} is not an array or a NumPy scalar")
            sizes.append(size)
        argv = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))
        err = ctypes.create_string_buffer(512)
        rc = self._entries[kernel](
            (ctypes.c_uint * 3)(*grid),
            (ctypes.c_uint * 3)(block, 1, 1),
            ctypes.c_ulonglong(shared),
            int(reverse),
            argv,
            kinds.encode(),
            (ctypes.c_int * len(sizes))(*sizes),
            err,
            len(err),
        )
        assert rc == 0, f"{kernel.name}: {err.value.decode()}"


# The device planned for under emulation: an sm_90 GPU with two SMs that run one block at a
# time, so that persistent kernels' blocks each walk several items of their list.
EMULATED_DEVICE = dataclasses.replace(HOPPER, name="emulated sm_90, 2 SMs", sms=2, blocks_per_sm=1)


class EmulatedRuntime:
    """A `Runtime` over guarded NumPy arrays that launches kernels on the emulator, with each
    block's threads in forward order and asynchronous copies landing at their wait, or in
    reverse order with copies landing at once; `launched` lists the kernels it ran."""

    device = EMULATED_DEVICE

    def __init__(self, emulator: Emulator, reverse: bool) -> None:
        self.xp = GuardedArrays()
        self._emulator = emulator
        self._reverse = reverse
        self.launched: list[str] = []

    def launch(self, kernel: Kernel, grid: Grid, block: int, shared: int, args: Sequence[Any]
               ) -> None:
        self._emulator.launch(kernel, grid, block, shared, args, self._reverse)
        self.xp.check()
        self.launched.append(kernel.name)
