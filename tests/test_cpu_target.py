"""The CPU target: the ISA read from LLVM, the code-generation settings, the tiles sized from
the registers, and every generated tile against the reference, also in an AVX2 build and under
LLVM's tuning for an Intel server core (subprocesses with NUMBA_CPU_NAME and their own Numba
cache)."""

from __future__ import annotations

import inspect
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import elsewhere
import llvmlite.binding as ll
import numba
import numpy as np
import pytest
from numba.core import codegen

from minitorch_resnext.kernels import cpu, reference
from minitorch_resnext.kernels.cpu import codegen as tile_codegen
from minitorch_resnext.kernels.cpu import implicit, pointwise, target, tiled
from minitorch_resnext.kernels.cpu.codegen import Tile, slp_vectorized
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.kernels.selection import Choice

X86 = ll.Target.from_triple(ll.get_process_triple()).name.startswith("x86")
needs_x86 = pytest.mark.skipif(not X86, reason="the ISA probes are x86 instructions")


@needs_x86
@pytest.mark.parametrize("cpu_name, isa", [
    ("skylake-avx512", target.AVX512), ("znver4", target.AVX512), ("haswell", target.AVX2),
    ("znver2", target.AVX2), ("sandybridge", target.AVX), ("x86-64", target.SSE),
])
def test_isa_is_read_from_the_code_llvm_emits(cpu_name, isa):
    assert target.probe_isa(cpu_name, "") == isa
    assert target.probe_isa(cpu_name, "-avx") in (target.SSE, target.AVX)  # features count


@needs_x86
def test_avx512_targets_are_told_not_to_prefer_256_bit_vectors():
    host_features = ll.get_host_cpu_features().flatten()
    pinned = target._features("sapphirerapids", host_features)
    assert pinned.split(",")[-1] == "-prefer-256-bit" and pinned.startswith(host_features)
    assert target._features("skylake-avx512", "") == "-prefer-256-bit"
    assert target._features("haswell", "") == ""  # nothing to pin below AVX-512
    # a preference the user sets is theirs
    assert target._features("skylake-avx512", "+prefer-256-bit") == "+prefer-256-bit"


@needs_x86
def test_a_named_cpu_narrower_than_the_host_gets_its_own_features():
    host = _host()
    if host.vector_bytes <= target.SSE.vector_bytes:
        pytest.skip("the host has no vectors wider than SSE")
    assert target._features("x86-64", None) == ""
    # a name as wide as the host keeps the host's features (nothing the host cannot run)
    assert target._features(ll.get_host_cpu_name(), None).startswith(
        codegen.get_host_cpu_features())


@pytest.mark.parametrize("isa", [target.AVX512, target.AVX2, target.SSE])
@pytest.mark.parametrize("vectors, max_rows, taps", [(2, 8, 1), (1, 4, 3), (1, 16, 1)])
@pytest.mark.parametrize("hoisted", [False, True])
def test_tiles_fill_the_registers(isa, vectors, max_rows, taps, hoisted):
    tile = Tile.fitting(isa, vectors, max_rows, taps, hoisted)
    assert tile.lanes == vectors * isa.vector_bytes // 4

    def registers(rows: int) -> int:  # accumulators, a step's vectors, its broadcasts
        return rows * vectors * taps + vectors * taps + (rows if hoisted else 1)

    assert 1 <= tile.rows <= max_rows and registers(tile.rows) <= isa.registers
    assert tile.rows == max_rows or registers(tile.rows + 1) > isa.registers


def test_the_tiles_are_sized_for_this_target():
    assert target.TARGET.full_width, target.TARGET.describe()  # set before Numba's codegen
    assert tiled.TILE == pointwise.TILE == Tile.fitting(target.ISA, 2, 8, hoisted=True)
    assert implicit.TILE.lanes == implicit.WEIGHT_TILE.lanes == 2 * target.ISA.lanes()
    assert implicit.NARROW_TILE.lanes == implicit.ROW_LANES == target.ISA.lanes()
    for width in implicit.ROW_SEGMENTS:  # a row's accumulators, 3 weight vectors, a broadcast
        assert width + 4 <= target.ISA.registers


# --- what the generated tiles compile to -----------------------------------------------------

_REGISTER = {64: "zmm", 32: "ymm", 16: "xmm"}


@needs_x86
def test_compiled_tiles_use_the_target_vectors():
    """The tiled micro-kernel (in `peak_probe`) multiplies on whole registers of the target's
    width: LLVM's SLP vectoriser did not split the tile into narrower vectors."""
    probe = numba.njit(parallel=True, fastmath={"contract"})(tiled._peak_probe.py_func)
    a, b, c = np.zeros(4 * tiled.MR, np.float32), np.zeros(4 * tiled.NR, np.float32), np.zeros(
        (1, tiled.MR * tiled.NR), np.float32)
    with slp_vectorized():  # compiled here, not loaded from Numba's cache (which keeps no asm)
        probe(a, b, c, 1)
    asm = "\n".join(probe.inspect_asm().values())
    ops = re.findall(r"\b(?:vfmadd\w*ps|vmulps|mulps)\s+[^\n]*?%([xyz]mm)", asm)
    want = _REGISTER[target.ISA.vector_bytes]
    assert ops and set(ops) == {want}, f"{target.TARGET.describe()}: {sorted(set(ops))}"


_INDEX_ARRAYS = {"taps", "xoff", "yoff", "rows", "rowoff", "grow", "xrow"}
_OFFSETS = {"ai", "bi", "ci", "ldc", "ao", "bo", "yo", "ldy", "step", "k"}


def _tile_arguments(tile) -> list:
    """Arguments of the types a kernel passes to a tiled or grad_weight tile (to compile it)."""
    def argument(parameter: str):
        if parameter == "at":  # the weight tiles' only structured argument
            return implicit.WeightSpan(*[0] * len(implicit.WeightSpan._fields))
        if parameter == "zero":
            return np.float32(0)
        if parameter == "direct":
            return True
        if parameter in _OFFSETS:
            return 0
        return np.zeros(8, np.int64 if parameter in _INDEX_ARRAYS else np.float32)

    return [argument(p) for p in inspect.signature(tile.py_func).parameters]


def _caller(tile):
    """A function that calls `tile` with its own parameters (which Numba inlines)."""
    parameters = ", ".join(inspect.signature(tile.py_func).parameters)
    namespace = {"tile": tile}
    exec(f"def run({parameters}):\n    tile({parameters})", namespace)
    return namespace["run"]


def _stack_traffic_in_loops(asm: str) -> list[str]:
    """The instructions that move a vector register to or from the stack inside the basic
    blocks that multiply-add: spills of a tile's accumulators or operands."""
    found, block = [], []
    for line in [*asm.splitlines(), ".end:"]:
        if re.match(r"^\.?\w+:", line):
            if any("vfmadd" in op for op in block):
                found += [op.strip() for op in block
                          if re.search(r"%[xyz]mm", op) and re.search(r"\(%r[sb]p\)", op)]
            block = []
        block.append(line)
    return found


@needs_x86
@pytest.mark.parametrize("name", ["tiled.tile", "pointwise.tile", "implicit.weight_tile",
                                  *(f"implicit.weight_tile_{k}" for k in (1, 2, 3))])
def test_hoisted_tiles_keep_their_values_in_registers(name):
    """The tiles sized with `hoisted=True` hold their accumulators, a step's vectors and all of
    its broadcast values in the target's registers: no vector register is spilled to the stack
    inside the multiply-add loop (each spill is a store and a load more per step; with one
    broadcast counted, the AVX2 build spilled 8 to 12). Compiled alone, as their kernels inline
    them; the forward tiles are left out: alone they vectorise differently than inlined."""
    tile = tile_codegen.COMPILED[name]
    run = numba.njit(fastmath={"contract"})(_caller(tile))
    signature = tuple(numba.typeof(a) for a in _tile_arguments(tile))
    with slp_vectorized():
        run.compile(signature)
    asm = run.inspect_asm(signature)
    spills = _stack_traffic_in_loops(asm)
    assert "vfmadd" in asm and not spills, f"{name} on {target.TARGET.describe()}: {spills[:6]}"


# --- every generated tile against the reference ----------------------------------------------

def _cases() -> list[tuple[str, Choice | str, tuple]]:
    """(name, forced algorithm, (n, c_in, c_out, groups, hw, padding, dilation[, kernel size,
    stride], 3 and 1 if not given)) reaching each generated tile of this target, with channel
    counts just past its rows and lanes."""
    lanes = implicit.TILE.lanes
    narrow, wide = implicit.NARROW_TILE, implicit.WEIGHT_TILE
    cases = [
        ("tiled", "tiled", (2, 2 * (tiled.MR + 1), 2 * (tiled.MR + 1), 2, (9, 11), 1, 1)),
        ("implicit planned", Choice("implicit", {"tiles": "planned"}, ""),
         (3, 6, 2 * (lanes + 3), 2, (6, 5), 1, 1)),
        ("implicit grad_weight narrow", "implicit",
         (2, 2 * (narrow.lanes - 1), 2 * (narrow.rows + 1), 2, (7, 6), 1, 1)),
        ("implicit grad_weight dilated", "implicit",
         (2, narrow.lanes, narrow.rows + 3, 1, (8, 9), 2, 2)),
        ("implicit grad_weight wide", "implicit",
         (2, 2 * (narrow.lanes + 1), 2 * (wide.rows + 1), 2, (5, 6), 1, 1)),
    ]
    cases += [(f"implicit rows {s}{'' if k == 1 else f' x {k}'}",
               Choice("implicit", {"tiles": "rows"}, ""),
               (2, 2 * 5, 2 * (implicit.ROW_LANES - 1), 2, (4, k * s), 1, 1))
              for s in implicit.ROW_SEGMENTS for k in (1, 3)]  # a segment alone; three in a row
    cases += [(f"depthwise {write}", Choice("depthwise", {"write": write}, ""),
               (2, 5, 5, 5, (9, width), 1, 1))
              for write, width in (("rows", 40), ("plane", 11), ("stream", 40))]
    cases.append(("depthwise dots", "depthwise", (2, 4, 4, 4, (7, 9), 2, 2)))
    # 1x1: strips of columns across images and a partial last one; a partial tile of rows
    cases += [(f"pointwise stride {s}", "pointwise",
               (3, 2 * (pointwise.MR + 1), 2 * (pointwise.MR - 1), 2, (7, 9), 0, 1, 1, s))
              for s in (1, 2)]
    cases.append(("depthwise masked dots", Choice("depthwise", {"read": "stream"}, ""),
                  (2, 5, 5, 5, (9, 40), 1, 1)))
    # the direct kernel's in-place planes (`intrinsics.plane_taps`, vectors of the target's
    # width): two blocks of four channels each side, a plane that ends inside a step; dilated
    cases += [(f"direct in place{name}", Choice("direct", {"read": "stream"}, ""), sizes)
              for name, sizes in (("", (2, 16, 16, 2, (9, 11), 1, 1)),
                                  (" dilated", (2, 8, 16, 2, (7, 9), 2, 2)))]
    return cases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, algorithm, sizes", _cases(), ids=[c[0] for c in _cases()])
def test_generated_tiles_match_reference(name, algorithm, sizes, dtype):
    n, c_in, c_out, groups, hw, padding, dilation, k, stride = (*sizes, 3, 1)[:9]
    g = Conv2dGeometry.of((n, c_in, *hw), (c_out, c_in // groups, k, k), stride, padding,
                          dilation, groups)
    rng = np.random.default_rng(7)
    x, w, b, gy = (rng.standard_normal(s).astype(dtype)
                   for s in (g.input_shape, g.weight_shape, (c_out,), g.output_shape))
    runs = {
        "forward": (lambda a: cpu.conv2d_forward(x, w, b, g, a),
                    lambda: reference.conv2d_forward(*(a.astype(np.float64) for a in (x, w, b)), g)),
        "grad_input": (lambda a: cpu.conv2d_grad_input(gy, w, g, a),
                       lambda: reference.conv2d_grad_input(gy.astype(np.float64),
                                                           w.astype(np.float64), g)),
        "grad_weight": (lambda a: cpu.conv2d_grad_weight(x, gy, g, a),
                        lambda: reference.conv2d_grad_weight(x.astype(np.float64),
                                                             gy.astype(np.float64), g)),
    }
    name_, params = (algorithm.algorithm, algorithm.params) if isinstance(algorithm, Choice) else (
        algorithm, {})
    rtol = 1e-5 if dtype == "float32" else 1e-12
    checked = 0
    for pass_, (run, exact) in runs.items():
        kernels = cpu.ALGORITHMS[name_]
        if not kernels.computes(pass_, g):
            continue
        # a pass without the case's parameter (grad_weight has "read", not "write") runs its
        # defaults
        space = kernels.space(pass_, g)
        actual = run(Choice(name_, {k: v for k, v in params.items() if k in space}, ""))
        expected = exact()
        assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape
        err = np.linalg.norm(actual - expected)
        assert err <= rtol * np.linalg.norm(expected), (pass_, err)
        checked += 1
    assert checked >= 2


# --- small batches ----------------------------------------------------------------------------

@pytest.mark.parametrize("n_img, out_hw, min_blocks", [
    (1, (16, 16), 4), (3, (7, 7), 8), (64, (8, 8), 4), (2, (56, 56), 9), (1, (3, 40), 8),
    (32, (14, 14), 1)])
def test_tiled_blocks_split_small_batches(n_img, out_hw, min_blocks):
    images, rows = tiled._blocks(n_img, out_hw, 64, 4, min_blocks)
    blocks = -(-n_img // images) * -(-out_hw[0] // rows)
    assert blocks >= min(min_blocks, n_img * out_hw[0])  # enough tasks, where there are rows
    assert images == 1 or rows == out_hw[0]  # several images are whole images
    assert images <= n_img and rows <= out_hw[0]


@pytest.mark.parametrize("n_img, min_blocks", [(8, 1), (8, 4), (8, 16), (3, 2), (1, 4)])
def test_implicit_image_blocks_split_small_batches(n_img, min_blocks):
    m = implicit._images(n_img, 1, 1 << 20, min_blocks)
    assert m == 1 or -(-n_img // m) >= min_blocks
    assert m <= max(1, n_img) and m & (m - 1) == 0


@pytest.mark.parametrize("algorithm", ["tiled", "implicit"])
def test_one_image_of_one_group_is_split_and_exact(algorithm, monkeypatch):
    """Batch 1, groups 1: the work is split into bands (tiled) or single-image blocks
    (implicit) for the threads, and every output is still exact."""
    monkeypatch.setattr(numba, "get_num_threads", lambda: 8)  # as many tasks as 8 threads want
    g = Conv2dGeometry.of((1, 16, 13, 12), (40, 16, 3, 3), 1, 1, 1, 1)
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(g.input_shape), rng.standard_normal(g.weight_shape)
    assert tiled._blocks(1, g.output_hw, 56, 8, 16).rows < 13
    got = cpu.conv2d_forward(x, w, None, g, algorithm)
    np.testing.assert_allclose(got, reference.conv2d_forward(x, w, None, g), rtol=1e-12,
                               atol=1e-12)


# --- other builds, in subprocesses (started early: `elsewhere`) ---------------------------------

def _host() -> target.ISA:
    return target.probe_isa(ll.get_host_cpu_name(), ll.get_host_cpu_features().flatten())


def _other_build(cpu_name: str, isa: str, tests: str,
                 runs_here: Callable[[target.ISA], bool]) -> elsewhere.RunFor:
    """How to run `tests` (a -k expression of this file) in a process compiling for `cpu_name`,
    with its own Numba cache, after checking that it compiles for `isa`; where the host's ISA
    fails `runs_here`, nothing."""
    def run_for(config: pytest.Config) -> elsewhere.Run | None:
        if not X86 or not runs_here(_host()):
            return None
        cache = elsewhere.cache_dir(config, f"numba-{cpu_name}")
        script = ("import sys, pytest\n"
                  "from minitorch_resnext.kernels.cpu import TARGET\n"
                  f"assert TARGET.isa.name == {isa!r}, TARGET.describe()\n"
                  f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-k', {tests!r}, "
                  f"{str(Path(__file__))!r}]))\n")
        env = {"NUMBA_CPU_NAME": cpu_name, "NUMBA_CACHE_DIR": str(cache),
               "NUMBA_CPU_FEATURES": None}
        return elsewhere.Run(("-c", script), env, timeout=1800)
    return run_for


def _passed(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


AVX2_BUILD = _other_build(
    "haswell", "avx2", "generated_tiles or target_vectors or sized_for_this or hoisted_tiles",
    lambda host: host.vector_bytes >= target.AVX2.vector_bytes)
INTEL_SERVER_BUILD = _other_build("sapphirerapids", "avx512", "target_vectors",
                                  lambda host: host == target.AVX512)


@needs_x86
@pytest.mark.slow
@elsewhere.early(AVX2_BUILD)
def test_avx2_build_is_exact(request):
    """NUMBA_CPU_NAME=haswell on any AVX2 or AVX-512 machine: an AVX2 build, its tiles sized for
    8 lanes and 16 registers, every tile exact."""
    if _host().vector_bytes < target.AVX2.vector_bytes:
        pytest.skip("this CPU cannot run AVX2 code")
    _passed(elsewhere.result(AVX2_BUILD, request.config))


@needs_x86
@pytest.mark.slow
@elsewhere.early(INTEL_SERVER_BUILD)
def test_intel_server_tuning_keeps_full_width_tiles(request):
    """LLVM's tuning for Sapphire Rapids prefers 256-bit vectors; with the host's AVX-512
    features and the pinned setting, the tiles still use 512-bit registers."""
    if _host() != target.AVX512:
        pytest.skip("this CPU has no AVX-512")
    _passed(elsewhere.result(INTEL_SERVER_BUILD, request.config))
