"""The CUDA kernels checked without a GPU.

- Compilation for sm_90 of every .cu source, with every template instantiation the loader
  plans for ResNeXt's and the benchmark's shapes (both dtypes): by nvcc (full compile through
  ptxas, warnings as errors, no register spills) and by NVRTC through CuPy, the compiler used
  at run time, with CuPy's options. Each check skips when its compiler is missing.
- Host emulation: the same sources compiled by g++ with kernels/cuda/host_emulation.cuh,
  driven by the loader's own planning and launch code over NumPy arrays, against the NumPy
  reference. The emulator enforces barrier semantics and launch limits, poisons shared
  memory, checks argument types against the kernel signatures, and the arrays the loader
  allocates sit between guard bytes checked after every launch; every case also runs with
  each block's threads in reverse order, which must give bitwise the same result (no races).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from minitorch_resnext.backend import cuda_is_available, get_backend
from minitorch_resnext.kernels import cuda, reference
from minitorch_resnext.kernels.cuda import ConvShape, Kernel
from minitorch_resnext.kernels.geometry import Conv2dGeometry

SM = "sm_90"


def _shape(
    n: int,
    c_in: int,
    c_out: int,
    groups: int,
    hw: tuple[int, int],
    k: tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> ConvShape:
    def pair(v: int | tuple[int, int]) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else v

    return ConvShape.of(
        (n, c_in, *hw), (c_out, c_in // groups, *k), pair(stride), pair(padding), pair(dilation), groups
    )


def _geometry(s: ConvShape) -> Conv2dGeometry:
    return Conv2dGeometry(s.n, s.c_in, (s.h, s.w), s.c_out, (s.kh, s.kw), s.stride, s.padding,
                          s.dilation, s.groups)


def _model_shapes() -> Iterator[ConvShape]:
    """ResNeXt-50/101 grouped 3x3 convs (32x4d, 32x8d, 64x4d, stride 1 and the stride-2 first
    block of a stage), their 1x1 convs and stem, CIFAR ResNeXt-29, depthwise 3/5/7, and the
    benchmark's shapes, at batch 64."""
    for groups, width in ((32, 4), (32, 8), (64, 4)):
        for stage, hw in enumerate((56, 28, 14, 7)):
            c = groups * width * 2**stage
            yield _shape(64, c, c, groups, (hw, hw), (3, 3), 1, 1)
            if stage:
                yield _shape(64, c, c, groups, (2 * hw, 2 * hw), (3, 3), 2, 1)
            yield _shape(64, 2 * c, c, 1, (hw, hw), (1, 1))
            yield _shape(64, 4 * c, 4 * c, 1, (2 * hw, 2 * hw), (1, 1), 2)
    yield _shape(64, 3, 64, 1, (224, 224), (7, 7), 2, 3)
    for cardinality in (8, 16):
        for hw, c in ((32, 64), (16, 128), (8, 256)):
            yield _shape(128, c * cardinality, c * cardinality, cardinality, (hw, hw), (3, 3), 1, 1)
    for k in (3, 5, 7):
        for stride in (1, 2):
            yield _shape(64, 144, 144, 144, (56, 56), (k, k), stride, k // 2)
    yield _shape(64, 128, 128, 1, (56, 56), (3, 3), 1, 1)
    yield _shape(64, 512, 512, 8, (32, 32), (3, 3), 1, 1)
    yield _shape(64, 96, 96, 96, (112, 112), (3, 3), 2, 2, 2)


MODEL_SHAPES = list(_model_shapes())


def _id(s: ConvShape) -> str:
    """A test id such as n2_c16-16_g4_8x8_k3x3_s1x1_p1x1_d1x1."""
    return (
        f"n{s.n}_c{s.c_in}-{s.c_out}_g{s.groups}_{s.h}x{s.w}_k{s.kh}x{s.kw}"
        f"_s{s.stride[0]}x{s.stride[1]}_p{s.padding[0]}x{s.padding[1]}"
        f"_d{s.dilation[0]}x{s.dilation[1]}"
    )


CTYPES = {"float": np.float32, "double": np.float64}


def _instantiations(shapes: Sequence[ConvShape]) -> dict[str, list[str]]:
    """Source file -> sorted name expressions the loader launches for these shapes."""
    names: dict[str, set[str]] = {}
    for s in shapes:
        for ctype in CTYPES:
            for algorithm in (None, "gemm"):
                for kernel in cuda.kernels_for(s, ctype, algorithm):
                    names.setdefault(kernel.source, set()).add(kernel.name)
    return {source: sorted(n) for source, n in sorted(names.items())}


def _instantiating(source: str, names: Sequence[str]) -> str:
    """The loader's text of `source` plus a table that instantiates each name expression."""
    table = ",\n  ".join(f"reinterpret_cast<const void*>(&{n})" for n in names)
    return f"{cuda.kernel_source(source)}\nconst void* mr_instances[] = {{\n  {table}\n}};\n"


def test_every_source_has_planned_instantiations() -> None:
    planned = _instantiations(MODEL_SHAPES)
    assert set(planned) == {p.name for p in cuda.SOURCE_DIR.glob("*.cu")}
    assert all(names for names in planned.values())


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_kernels_compile_with_nvcc(tmp_path: Path) -> None:
    jobs = []
    parts = max(1, os.cpu_count() or 1)  # ptxas dominates: split the instantiations over cores
    planned = _instantiations(MODEL_SHAPES)
    for source, names in planned.items():
        for part in range(min(parts, len(names))):
            path = tmp_path / f"{part}_{source}"
            path.write_text(_instantiating(source, names[part::parts]))
            cmd = [
                "nvcc",
                f"-arch={SM}",
                *cuda.COMPILE_OPTIONS,
                "-Werror",
                "all-warnings",
                "-Xptxas",
                "-v",
                "--cubin",
                str(path),
                "-o",
                str(path.with_suffix(".cubin")),
            ]
            jobs.append(
                (source, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            )
    compiled = 0
    for source, job in jobs:
        log = job.communicate()[0]
        assert job.returncode == 0, f"nvcc failed on {source}:\n{log}"
        spills = re.findall(r"(\d+) bytes spill stores", log)
        assert all(s == "0" for s in spills), f"register spills in {source}:\n{log}"
        compiled += len(re.findall(r"Compiling entry function", log))
    assert compiled == sum(len(names) for names in planned.values())


def _nvrtc_available() -> bool:
    try:
        cuda.nvrtc_compile("", [])
    except Exception:  # CuPy or its NVRTC library missing
        return False
    return True


@pytest.mark.skipif(not _nvrtc_available(), reason="CuPy with an NVRTC library is not importable")
def test_kernels_compile_with_nvrtc() -> None:
    for source, names in _instantiations(MODEL_SHAPES).items():
        try:
            lowered = cuda.nvrtc_compile(cuda.kernel_source(source), names, SM)
        except RuntimeError as e:
            pytest.fail(f"NVRTC failed on {source}: {e}")
        assert all(lowered.values())


# --- planning at full size ---------------------------------------------------------------------


@pytest.mark.parametrize("s", MODEL_SHAPES, ids=_id)
def test_plans_fit_a_gpu(s: ConvShape) -> None:
    """Launch limits the emulator enforces, checked on shapes too large to emulate."""
    for ctype in CTYPES:
        plans = cuda._direct_plans(s, ctype)
        if plans is None:
            assert cuda.conv2d_algorithm(_geometry(s)).forward.algorithm == "gemm"
            continue
        for plan in plans:
            assert 1 <= plan.block <= cuda.MAX_THREADS
            assert 0 < plan.shared <= cuda.SHARED_BYTES
            assert plan.grid[0] < 2**31 and plan.grid[1] <= 65535 and plan.grid[2] <= 65535
        assert plans[2].block % 32 == 0


def test_resnext_grouped_convs_run_direct_up_to_16_channels() -> None:
    for s in MODEL_SHAPES:
        choice = cuda.conv2d_algorithm(_geometry(s)).forward
        assert choice.algorithm == ("direct" if max(s.cg, s.og) <= 16 else "gemm"), (s, choice)


# --- host emulation ----------------------------------------------------------------------------

# (n, c_in, c_out, groups, (h, w), (kh, kw), stride, padding, dilation)
EMULATED = [
    _shape(2, 4, 4, 4, (9, 11), (3, 3), 1, 1),  # depthwise
    _shape(1, 3, 6, 3, (12, 10), (5, 5), 2, 2),  # depthwise, 2 outputs per channel
    _shape(2, 16, 16, 4, (8, 8), (3, 3), 1, 1),  # ResNeXt 4 channels per group
    _shape(2, 16, 16, 2, (9, 9), (3, 3), 2, 1),  # 8 per group, stride 2
    _shape(1, 32, 32, 2, (10, 7), (3, 3), 1, 2, 2),  # 16 per group, dilation 2
    _shape(2, 6, 10, 2, (7, 9), (1, 3), (1, 2), (0, 1)),  # 3 in / 5 out, 1x3
    _shape(1, 4, 8, 2, (10, 6), (3, 1), (3, 1), (1, 0), (2, 1)),  # 3x1, per-axis stride
    _shape(1, 2, 2, 2, (5, 70), (3, 3), 1, 1),  # two column tiles
    _shape(1, 16, 16, 1, (8, 64), (3, 3), 1, 1),  # input window in channel chunks
    _shape(1, 2, 2, 2, (12, 12), (7, 7), 1, 3),  # depthwise 7x7
    _shape(1, 2, 4, 2, (5, 5), (3, 3), 2, 4),  # padding past the kernel
    _shape(1, 4, 4, 2, (3, 3), (3, 3)),  # 1x1 output
    _shape(1, 2, 2, 1, (2, 2), (5, 5), 1, 2),  # image smaller than the kernel
    _shape(1, 3, 16, 1, (15, 15), (7, 7), 2, 3),  # stem-like, 3 in / 16 out
    _shape(2, 64, 64, 2, (4, 4), (1, 1)),  # gemm: pointwise, im2col layout
    _shape(2, 32, 64, 1, (7, 6), (3, 3), 2, 1),  # gemm: im2col / col2im
    _shape(1, 32, 40, 1, (32, 32), (1, 1)),  # gemm: pointwise, per image
]


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
            [
                "g++",
                "-std=c++17",
                "-O1",
                "-fno-strict-aliasing",
                "-shared",
                "-fPIC",
                "-Wall",
                "-Werror",
                "-Wno-unknown-pragmas",
                f"-I{cuda.SOURCE_DIR}",
                str(cpp),
                "-o",
                str(lib),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        self._lib = ctypes.CDLL(str(lib))
        self._entries = {k: getattr(self._lib, f"mr_emu_{i}") for i, k in enumerate(kernels)}

    def launch(
        self, kernel: Kernel, grid: Sequence[int], block: int, shared: int, args: Sequence[Any], reverse: bool
    ) -> None:
        values: list[Any] = []
        kinds, sizes = "", []
        for a in args:
            if isinstance(a, np.ndarray):
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


class EmulatedRuntime:
    """A `cuda.Runtime` over guarded NumPy arrays that launches kernels on the emulator."""

    def __init__(self, emulator: Emulator, reverse: bool) -> None:
        self.xp = GuardedArrays()
        self._emulator = emulator
        self._reverse = reverse
        self.launched: list[str] = []

    def launch(
        self, kernel: Kernel, grid: tuple[int, int, int], block: int, shared: int, args: Sequence[Any]
    ) -> None:
        self._emulator.launch(kernel, grid, block, shared, args, self._reverse)
        self.xp.check()
        self.launched.append(kernel.name)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on PATH")
    if not sys.platform.startswith("linux"):
        pytest.skip("the emulator's fibers use glibc's ucontext")
    kernels = sorted(
        {
            k
            for s in EMULATED
            for ctype in CTYPES
            for algorithm in cuda.ALGORITHMS
            if algorithm == "gemm" or cuda._direct_plans(s, ctype)
            for k in cuda.kernels_for(s, ctype, algorithm)
        },
        key=lambda k: k.name,
    )
    try:
        return Emulator(tmp_path_factory.mktemp("emulation"), kernels)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"g++ failed on the emulated kernels:\n{e.stderr}")


def _run(
    rt: EmulatedRuntime, s: ConvShape, arrays: dict[str, np.ndarray], algorithm: str | None
) -> list[np.ndarray]:
    x, w, b, gy = (rt.xp.copy_of(arrays[k]) for k in ("x", "w", "b", "gy"))
    geom = (s.stride, s.padding, s.dilation, s.groups)
    return [
        cuda._forward(rt, x, w, b, *geom, algorithm),
        cuda._forward(rt, x, w, None, *geom, algorithm),
        cuda._grad_input(rt, gy, w, (s.h, s.w), *geom, algorithm),
        cuda._grad_weight(rt, x, gy, (s.kh, s.kw), *geom, algorithm),
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("s", EMULATED, ids=_id)
def test_emulated_kernels_match_reference(emulator: Emulator, s: ConvShape, dtype: Any) -> None:
    rng = np.random.default_rng(0)
    oh, ow = s.out_hw
    arrays = {
        k: rng.standard_normal(shape).astype(dtype)
        for k, shape in (
            ("x", (s.n, s.c_in, s.h, s.w)),
            ("w", (s.c_out, s.cg, s.kh, s.kw)),
            ("b", (s.c_out,)),
            ("gy", (s.n, s.c_out, oh, ow)),
        )
    }
    g = _geometry(s)
    expected = [
        reference.conv2d_forward(arrays["x"], arrays["w"], arrays["b"], g),
        reference.conv2d_forward(arrays["x"], arrays["w"], None, g),
        reference.conv2d_grad_input(arrays["gy"], arrays["w"], g),
        reference.conv2d_grad_weight(arrays["x"], arrays["gy"], g),
    ]
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    direct = cuda._direct_plans(s, cuda._ctype(dtype)) is not None
    for algorithm in ("direct", "gemm") if direct else ("gemm",):
        runs = []
        for reverse in (False, True):
            rt = EmulatedRuntime(emulator, reverse)
            runs.append(_run(rt, s, arrays, algorithm))
        for got, again, want in zip(*runs, expected, strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            err = np.linalg.norm((got - want).ravel())
            assert err <= rtol * max(np.linalg.norm(want.ravel()), 1e-30), (algorithm, err)
            assert np.array_equal(got, again), f"{algorithm}: result depends on thread order"


def test_emulated_launch_rejects_wrong_argument_types(emulator: Emulator) -> None:
    s = EMULATED[2]
    plan = cuda._plan_forward(s, "double")
    x = np.zeros((s.n, s.c_in, s.h, s.w))
    args = [
        x,
        np.zeros((s.c_out, s.cg, 3, 3)),
        x,
        np.zeros((s.n, s.c_out, *s.out_hw)),
        *cuda._i32(*s.geometry(), 0, *plan.params),
    ]
    args[5] = np.int64(s.h)
    with pytest.raises(AssertionError, match="argument 5 has the wrong type"):
        emulator.launch(plan.kernel, plan.grid, plan.block, plan.shared, args, False)


def test_forcing_direct_outside_its_range_is_rejected() -> None:
    rt = EmulatedRuntime.__new__(EmulatedRuntime)
    rt.xp = np
    x, w = np.zeros((1, 32, 4, 4)), np.zeros((32, 32, 1, 1))
    with pytest.raises(ValueError, match="direct CUDA kernels do not handle"):
        cuda._forward(rt, x, w, None, (1, 1), (0, 0), (1, 1), 1, "direct")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        cuda._forward(rt, x, w, None, (1, 1), (0, 0), (1, 1), 1, "winograd")


# --- on a GPU ----------------------------------------------------------------------------------

needs_gpu = pytest.mark.skipif(not cuda_is_available(), reason="no usable GPU (CuPy + NVIDIA)")


def _on_gpu(s: ConvShape, dtype: Any, algorithm: str | None, seed: int = 0) -> None:
    """The three passes on the GPU against the reference; grad_weight twice, bitwise equal."""
    xp = get_backend("cuda").xp
    rng = np.random.default_rng(seed)
    oh, ow = s.out_hw
    x, w, b, gy = (
        rng.standard_normal(shape).astype(dtype)
        for shape in (
            (s.n, s.c_in, s.h, s.w),
            (s.c_out, s.cg, s.kh, s.kw),
            (s.c_out,),
            (s.n, s.c_out, oh, ow),
        )
    )
    g = _geometry(s)
    dx, dw, db, dgy = (xp.asarray(a) for a in (x, w, b, gy))
    got = [
        cuda.conv2d_forward(dx, dw, db, g, algorithm=algorithm),
        cuda.conv2d_grad_input(dgy, dw, g, algorithm=algorithm),
        cuda.conv2d_grad_weight(dx, dgy, g, algorithm=algorithm),
    ]
    want = [
        reference.conv2d_forward(x, w, b, g),
        reference.conv2d_grad_input(gy, w, g),
        reference.conv2d_grad_weight(x, gy, g),
    ]
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for g, want_ in zip(got, want, strict=True):
        g = xp.asnumpy(g)
        assert g.dtype == want_.dtype and g.shape == want_.shape
        err = np.linalg.norm((g - want_).ravel())
        assert err <= rtol * max(np.linalg.norm(want_.ravel()), 1e-30), (algorithm, err)
    again = cuda.conv2d_grad_weight(dx, dgy, g, algorithm=algorithm)
    assert bool((again == got[2]).all()), "grad_weight is not deterministic"


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("s", EMULATED, ids=_id)
def test_gpu_kernels_match_reference(s: ConvShape, dtype: Any) -> None:
    direct = cuda._direct_plans(s, cuda._ctype(dtype)) is not None
    for algorithm in ("direct", "gemm") if direct else ("gemm",):
        _on_gpu(s, dtype, algorithm)


@needs_gpu
@pytest.mark.parametrize("s", [dataclasses.replace(s, n=2) for s in MODEL_SHAPES[:12]], ids=_id)
def test_gpu_model_shapes_match_reference(s: ConvShape) -> None:
    """Full-size tiles (ResNeXt-50 32x4d's convolutions at batch 2), float32."""
    _on_gpu(s, np.float32, None)
