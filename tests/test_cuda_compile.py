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

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from cuda_tools import (
    EMULATED_DEVICE,
    EmulatedRuntime,
    Emulator,
    PtxasInfo,
    nvrtc_compile,
    ptxas_info,
)

from minitorch_resnext.backend import cuda_is_available, get_backend
from minitorch_resnext.kernels import cuda, reference
from minitorch_resnext.kernels.cuda import direct
from minitorch_resnext.kernels.cuda.occupancy import HOPPER, blocks_per_sm, register_budget
from minitorch_resnext.kernels.cuda.runtime import (
    ELEMENTWISE_MIN_BLOCKS,
    ELEMENTWISE_THREADS,
    SOURCE_DIR,
    Kernel,
    kernel_source,
)
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.kernels.selection import PASSES, Choice

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
) -> Conv2dGeometry:
    return Conv2dGeometry.of((n, c_in, *hw), (c_out, c_in // groups, *k), stride, padding,
                             dilation, groups)


def _model_shapes() -> Iterator[Conv2dGeometry]:
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


def _id(g: Conv2dGeometry) -> str:
    """A test id such as n2_c16-16_g4_8x8_k3x3_s1x1_p1x1_d1x1."""
    (h, w), (kh, kw), s, p, d = g.input_hw, g.kernel_hw, g.stride, g.padding, g.dilation
    return (f"n{g.batch}_c{g.in_channels}-{g.out_channels}_g{g.groups}_{h}x{w}_k{kh}x{kw}"
            f"_s{s[0]}x{s[1]}_p{p[0]}x{p[1]}_d{d[0]}x{d[1]}")


CTYPES = {"float": np.float32, "double": np.float64}


def _variants(g: Conv2dGeometry) -> list[dict[str, Choice]]:
    """Per-pass choices that run, between them, every parameter value of every pass of every
    algorithm that computes all three passes of g."""
    variants = []
    for name, algorithm in cuda.ALGORITHMS.items():
        if not all(algorithm.computes(p, g) for p in PASSES):
            continue
        candidates = {p: list(algorithm.candidates(p, g)) for p in PASSES}
        for k in range(max(map(len, candidates.values()))):
            variants.append({p: Choice(name, c[min(k, len(c) - 1)], "every candidate")
                             for p, c in candidates.items()})
    return variants


def _instantiations(shapes: Sequence[Conv2dGeometry]) -> dict[str, list[str]]:
    """Source file -> sorted name expressions the loader may launch for these shapes."""
    names: dict[str, set[str]] = {}
    for g in shapes:
        for ctype in CTYPES:
            for kernel in cuda.planned_kernels(g, ctype):
                names.setdefault(kernel.source, set()).add(kernel.name)
    return {source: sorted(n) for source, n in sorted(names.items())}


def test_every_source_has_planned_instantiations() -> None:
    planned = _instantiations(MODEL_SHAPES)
    assert set(planned) == {p.name for p in SOURCE_DIR.glob("*.cu")}
    assert all(names for names in planned.values())


@pytest.fixture(scope="module")
def ptxas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PtxasInfo]:
    """ptxas -v of every planned instantiation (nvcc, sm_90), cached between runs."""
    for tool in ("nvcc", "c++filt"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")
    return ptxas_info(_instantiations(MODEL_SHAPES), SM, tmp_path_factory.mktemp("ptxas"))


def test_kernels_compile_with_nvcc(ptxas: dict[str, PtxasInfo]) -> None:
    """Every planned instantiation compiles through ptxas, warnings as errors, without spills."""
    planned = {name for names in _instantiations(MODEL_SHAPES).values() for name in names}
    assert set(ptxas) == planned
    spilled = {name: info for name, info in ptxas.items() if info.spill_bytes}
    assert not spilled, f"register spills: {spilled}"


def test_plans_get_the_occupancy_they_assume(ptxas: dict[str, PtxasInfo]) -> None:
    """Every planned launch's kernel uses at most the registers its plan budgets (the
    __launch_bounds__ the plan chose), so it gets at least the blocks per SM the plan
    assumes; the elementwise kernels, the blocks per SM their launch bounds ask for."""
    for g in MODEL_SHAPES:
        for ctype in CTYPES:
            for pass_ in PASSES:
                for params in direct.ALGORITHM.candidates(pass_, g):
                    launch = direct.plan(pass_, g, ctype, HOPPER, **params)
                    used = ptxas[launch.kernel.name].registers
                    assert used <= launch.registers, (launch.kernel.name, used, launch.registers)
                    assumed = blocks_per_sm(HOPPER, launch.block, launch.registers, launch.shared)
                    got = blocks_per_sm(HOPPER, launch.block, used, launch.shared)
                    assert got >= assumed >= 1, (launch.kernel.name, got, assumed)
    budget = register_budget(HOPPER, ELEMENTWISE_THREADS, ELEMENTWISE_MIN_BLOCKS)
    for source, names in _instantiations(MODEL_SHAPES).items():
        for name in names:
            if source == "conv_im2col.cu":
                assert ptxas[name].registers <= budget, (name, ptxas[name].registers, budget)


REQUIRE_GPU = os.environ.get("MINITORCH_REQUIRE_GPU") == "1"  # see conftest.py


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("cupy_backends") is None and not REQUIRE_GPU,
                    reason="CuPy is not installed")
def test_kernels_compile_with_nvrtc() -> None:
    """Where CuPy is installed, a missing NVRTC library fails here, not skips. The
    instantiations are split over threads (NVRTC runs without the GIL)."""
    parts = max(1, os.cpu_count() or 1)
    jobs = [(source, names[part::parts]) for source, names in _instantiations(MODEL_SHAPES).items()
            for part in range(min(parts, len(names)))]
    with ThreadPoolExecutor(parts) as pool:
        results = pool.map(lambda job: nvrtc_compile(kernel_source(job[0]), job[1], SM), jobs)
        try:
            lowered = {name: symbol for result in results for name, symbol in result.items()}
        except RuntimeError as e:
            pytest.fail(f"NVRTC failed: {e}")
    assert set(lowered) == {name for _, names in jobs for name in names}
    assert all(lowered.values())


# --- planning at full size ---------------------------------------------------------------------


@pytest.mark.parametrize("g", MODEL_SHAPES, ids=_id)
def test_plans_fit_a_gpu(g: Conv2dGeometry) -> None:
    """Launch limits the emulator enforces, checked on shapes too large to emulate."""
    for ctype in CTYPES:
        for pass_ in PASSES:
            if not direct.supports(pass_, g):
                assert cuda.conv2d_algorithm(g)[pass_].algorithm == "gemm"
                continue
            for params in direct.ALGORITHM.candidates(pass_, g):
                plan = direct.plan(pass_, g, ctype, **params)
                assert plan is not None, (pass_, params)
                assert 1 <= plan.block <= direct.MAX_THREADS
                assert 0 < plan.shared <= direct.SHARED_BYTES
                assert plan.grid[0] < 2**31 and plan.grid[1] <= 65535 and plan.grid[2] <= 65535
                assert blocks_per_sm(HOPPER, plan.block, plan.registers, plan.shared) >= 1
                if pass_ == "grad_weight":
                    assert plan.block % 32 == 0


@pytest.mark.parametrize(("threads", "registers", "shared", "blocks"), [
    (256, 32, 0, 8),  # 8 warps x 32 lanes x 32 registers = 8192 per block: 8 fill 65536
    (256, 64, 0, 4),
    (256, 255, 0, 1),  # 255 is allocated as 256 per thread
    (224, 111, 0, 2),  # 112 per thread x 32 = 3584 per warp: 4 warps per sub-partition, 7 per block
    (128, 72, 0, 7),  # 2304 per warp: 7 per sub-partition, 28 warps, 4 per block
    (256, 32, 48 * 1024, 4),  # (48 + 1 reserved) KiB each of 228 KiB
    (32, 16, 0, 32),  # block slots
])
def test_occupancy_model_on_sm90(threads: int, registers: int, shared: int, blocks: int) -> None:
    assert blocks_per_sm(HOPPER, threads, registers, shared) == blocks


def test_register_budget_of_launch_bounds_on_sm90() -> None:
    budgets = [register_budget(HOPPER, 256, b) for b in (1, 2, 3, 4, 8)]
    assert budgets == [255, 128, 80, 64, 32]
    for b, budget in zip((1, 2, 3, 4, 8), budgets, strict=True):
        assert blocks_per_sm(HOPPER, 256, budget, 0) >= b > blocks_per_sm(HOPPER, 256, budget + 8, 0)


def test_persistent_grids_are_one_wave_of_resident_blocks() -> None:
    for g in MODEL_SHAPES:
        for pass_ in ("forward", "grad_input"):
            if "rows" not in direct.ALGORITHM.space(pass_, g).get("kernel", ()):
                continue
            launch = direct.plan(pass_, g, "float", HOPPER, kernel="rows")
            quads, row_groups, strips = launch.params[:3]
            items = g.batch * g.groups * strips
            resident = blocks_per_sm(HOPPER, launch.block, launch.registers, launch.shared)
            assert launch.grid[0] == min(items, resident * HOPPER.sms), (g, pass_)


def test_waves_schedule_sizes_grad_weight_chunks_to_the_sms() -> None:
    g = _shape(64, 128, 128, 32, (56, 56), (3, 3), 1, 1)  # ResNeXt-50 stage 1, 4 per group
    fixed = direct.plan("grad_weight", g, "float", HOPPER, schedule="fixed")
    waves = direct.plan("grad_weight", g, "float", HOPPER, schedule="waves")
    assert fixed.grid[:2] == (64, 32) and fixed.registers == 255  # 2048 blocks, by shape
    # 256 threads under a 128-register budget: 2 blocks per SM, 264 slots on 132 SMs, which
    # hold 8 chunks x 32 groups in one wave; each chunk sums 24 of the 64 x 3 (image, tile)
    # items (more chunks would take a second wave for as many items per block)
    assert waves.registers == 128 and waves.block == 256 and waves.params[2:4] == (3, 1)
    assert waves.grid[:2] == (8, 32)


def test_resnext_grouped_convs_run_direct_up_to_16_channels() -> None:
    for g in MODEL_SHAPES:
        for pass_, choice in cuda.conv2d_algorithm(g):
            expected = "direct" if g.max_channels <= 16 else "gemm"
            assert choice.algorithm == expected, (g, pass_, choice)


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
    _shape(1, 8, 8, 2, (24, 64), (3, 3), 1, 1),  # rows: blocks of several warps, 2 strips
    _shape(2, 8, 8, 2, (4, 8), (1, 1)),  # 1x1 direct, rows without zero columns
    _shape(2, 64, 64, 2, (4, 4), (1, 1)),  # gemm: pointwise, im2col layout
    _shape(2, 32, 64, 1, (7, 6), (3, 3), 2, 1),  # gemm: im2col / col2im
    _shape(1, 32, 40, 1, (32, 32), (1, 1)),  # gemm: pointwise, per image
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on PATH")
    if not sys.platform.startswith("linux"):
        pytest.skip("the emulator's fibers use glibc's ucontext")
    kernels = sorted(
        {k for g in EMULATED for ctype in CTYPES
         for k in cuda.planned_kernels(g, ctype, EMULATED_DEVICE)},
        key=lambda k: k.name,
    )
    try:
        return Emulator(tmp_path_factory.mktemp("emulation"), kernels)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"g++ failed on the emulated kernels:\n{e.stderr}")


def _arrays(g: Conv2dGeometry, dtype: Any, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"x": g.input_shape, "w": g.weight_shape, "b": (g.out_channels,), "gy": g.output_shape}
    return {k: rng.standard_normal(shape).astype(dtype) for k, shape in shapes.items()}


def _expected(g: Conv2dGeometry, a: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [
        reference.conv2d_forward(a["x"], a["w"], a["b"], g),
        reference.conv2d_forward(a["x"], a["w"], None, g),
        reference.conv2d_grad_input(a["gy"], a["w"], g),
        reference.conv2d_grad_weight(a["x"], a["gy"], g),
    ]


def _run(rt: EmulatedRuntime, g: Conv2dGeometry, arrays: dict[str, np.ndarray],
         choices: dict[str, Choice]) -> list[np.ndarray]:
    x, w, b, gy = (rt.xp.copy_of(arrays[k]) for k in ("x", "w", "b", "gy"))
    return [
        cuda.conv2d_forward(x, w, b, g, choices["forward"], runtime=rt),
        cuda.conv2d_forward(x, w, None, g, choices["forward"], runtime=rt),
        cuda.conv2d_grad_input(gy, w, g, choices["grad_input"], runtime=rt),
        cuda.conv2d_grad_weight(x, gy, g, choices["grad_weight"], runtime=rt),
    ]


def _close(got: Any, want: np.ndarray, rtol: float) -> bool:
    err = np.linalg.norm((got - want).ravel())
    return bool(err <= rtol * max(np.linalg.norm(want.ravel()), 1e-30))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("g", EMULATED, ids=_id)
def test_emulated_kernels_match_reference(emulator: Emulator, g: Conv2dGeometry, dtype: Any) -> None:
    arrays = _arrays(g, dtype)
    expected = _expected(g, arrays)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for choices in _variants(g):
        runs = [_run(EmulatedRuntime(emulator, reverse), g, arrays, choices)
                for reverse in (False, True)]
        for got, again, want in zip(*runs, expected, strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert _close(got, want, rtol), choices
            assert np.array_equal(got, again), f"{choices}: result depends on thread order"


class _Tampering(EmulatedRuntime):
    """Launches with one int argument passed as a 64-bit integer."""

    def launch(self, kernel: Kernel, grid: Any, block: int, shared: int, args: Sequence[Any]
               ) -> None:
        args = list(args)
        args[5] = np.int64(args[5])
        super().launch(kernel, grid, block, shared, args)


def test_emulated_launch_rejects_wrong_argument_types(emulator: Emulator) -> None:
    g = EMULATED[2]
    a = _arrays(g, np.float64)
    with pytest.raises(AssertionError, match="argument 5 has the wrong type"):
        cuda.conv2d_forward(a["x"], a["w"], None, g, "direct", runtime=_Tampering(emulator, False))


class _NumPyRuntime:
    xp = np

    def launch(self, *args: Any) -> None:
        raise AssertionError("nothing may be launched")


def test_forcing_direct_outside_its_range_is_rejected() -> None:
    x, w = np.zeros((1, 32, 4, 4)), np.zeros((32, 32, 1, 1))
    g = Conv2dGeometry.of(x.shape, w.shape)
    with pytest.raises(ValueError, match="algorithm 'direct' needs at most 16 input and output"):
        cuda.conv2d_forward(x, w, None, g, "direct", runtime=_NumPyRuntime())
    with pytest.raises(ValueError, match="algorithm must be one of"):
        cuda.conv2d_forward(x, w, None, g, "winograd", runtime=_NumPyRuntime())


def test_empty_sums_launch_nothing() -> None:
    """Without input channels the forward is the bias and the gradients are zero or empty."""
    rng = np.random.default_rng(0)
    x, w, b = np.zeros((2, 0, 5, 5)), np.zeros((3, 0, 3, 3)), rng.standard_normal(3)
    g = Conv2dGeometry.of(x.shape, w.shape, padding=1)
    gy = rng.standard_normal(g.output_shape)
    y = cuda.conv2d_forward(x, w, b, g, runtime=_NumPyRuntime())
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(1, 3, 1, 1), g.output_shape))
    assert not cuda.conv2d_forward(x, w, None, g, runtime=_NumPyRuntime()).any()
    assert cuda.conv2d_grad_input(gy, w, g, runtime=_NumPyRuntime()).shape == (2, 0, 5, 5)
    assert cuda.conv2d_grad_weight(x, gy, g, runtime=_NumPyRuntime()).shape == (3, 0, 3, 3)


# --- on a GPU ----------------------------------------------------------------------------------

def needs_gpu(test: Any) -> Any:
    """Marked gpu; skipped where no GPU is usable, unless MINITORCH_REQUIRE_GPU=1."""
    skip = pytest.mark.skipif(not cuda_is_available() and not REQUIRE_GPU,
                              reason="no usable GPU (CuPy + NVIDIA)")
    return pytest.mark.gpu(skip(test))


def _on_gpu(g: Conv2dGeometry, dtype: Any, choices: dict[str, Choice | None], seed: int = 0
            ) -> None:
    """The four calls of `_run` on the GPU against the reference; grad_weight twice, bitwise
    equal."""
    xp = get_backend("cuda").xp
    arrays = _arrays(g, dtype, seed)
    x, w, b, gy = (xp.asarray(arrays[k]) for k in ("x", "w", "b", "gy"))
    got = [
        cuda.conv2d_forward(x, w, b, g, choices["forward"]),
        cuda.conv2d_forward(x, w, None, g, choices["forward"]),
        cuda.conv2d_grad_input(gy, w, g, choices["grad_input"]),
        cuda.conv2d_grad_weight(x, gy, g, choices["grad_weight"]),
    ]
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for value, want in zip(got, _expected(g, arrays), strict=True):
        value = xp.asnumpy(value)
        assert value.dtype == want.dtype and value.shape == want.shape
        assert _close(value, want, rtol), choices
    again = cuda.conv2d_grad_weight(x, gy, g, choices["grad_weight"])
    assert bool((again == got[3]).all()), "grad_weight is not deterministic"


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("g", EMULATED, ids=_id)
def test_gpu_kernels_match_reference(g: Conv2dGeometry, dtype: Any) -> None:
    for choices in _variants(g):
        _on_gpu(g, dtype, choices)


@needs_gpu
@pytest.mark.parametrize("g", [g.with_batch(2) for g in MODEL_SHAPES[:12]], ids=_id)
def test_gpu_model_shapes_match_reference(g: Conv2dGeometry) -> None:
    """Full-size tiles (ResNeXt-50 32x4d's convolutions at batch 2), float32."""
    _on_gpu(g, np.float32, dict.fromkeys(PASSES))
