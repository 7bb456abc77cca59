"""The CPU convolution kernels where they really run: fixed cases that reach each algorithm's
regime (partial and second tiles, more work than tasks, blocks of images and bands of rows),
ResNeXt's own convolutions at a small batch, grad_weight's determinism across thread counts,
and the implicit kernel's lane tiles run with Numba's bounds checks on.

The hypothesis tests of test_conv_kernels.py draw from the same regimes; these cases reach
each one on every run."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import elsewhere
import numba
import numpy as np
import pytest
from conv_checks import (
    DTYPES,
    assert_matches_reference,
    check_all_kernels,
    config,
    geometry_of,
    random_problem,
    run_pass,
)
from threadpoolctl import threadpool_limits

from minitorch_resnext.kernels.cpu import (
    activation,
    depthwise,
    direct,
    gemm,
    implicit,
    pointwise,
    tiled,
)
from minitorch_resnext.kernels.geometry import Conv2dGeometry

ROOT = Path(__file__).resolve().parents[1]
bounds = pytest.mark.bounds  # also run with NUMBA_BOUNDSCHECK=1 (test_kernels_stay_in_bounds)


def direct_blocks(g: Conv2dGeometry, itemsize: int) -> int:
    """How many blocks of rows (or of stacked images) the direct kernel's grad_weight splits a
    group's work into."""
    (out_h, out_w), (kh, kw), (sh, sw), (dh, dw) = g.output_hw, g.kernel_hw, g.stride, g.dilation
    halo = (kh - 1) * dh // sh
    seg_rows, segs = direct._segments(out_h, halo, out_w + (kw - 1) * dw // sw,
                                      4 + g.in_per_group * sh * sw, itemsize)
    return -(-g.batch * -(-out_h // seg_rows) // segs)


class Regime(NamedTuple):
    """A fixed case: `algorithm` forced on `cfg`, with module constants patched, because `why`."""

    algorithm: str
    cfg: dict
    patches: dict
    why: str


# Channels per group sit on either side of the sizes the kernels block them by (see
# conv_checks); every case runs with a bias, in float32 and float64.
MANY_GROUPS = Regime("direct", config(1, 300, 1, 1, hw=(6, 6)), {},
                     "depthwise, more groups than the forward's tasks: tasks take one or two")
MANY_UNITS = Regime("direct", config(2, 260, 2, 3, hw=(4, 5)), {},
                    "grouped, more (group, block) units than tasks, partial blocks of four")
MANY_BLOCKS = Regime("direct", config(9, 1, 32, 5, hw=(30, 30)), {},
                     "grad_weight: more blocks of rows than partial sums, not a multiple")
SLICES = Regime("implicit", config(3, 1, 16, 24, hw=(6, 6), padding=(1, 2), dilation=(1, 2)),
                {}, "grad_weight: 16 input channels, runs of taps, output channels in three "
                "slices")
CHUNKS = Regime("gemm", config(5, 2, 9, 7, hw=(6, 6)), {"_GEMM_COLUMNS": 64},
                "im2col in chunks of two images, a last chunk of one; grad_weight: three "
                "partial sums of one chunk each")
POINTWISE_PARTS = Regime("gemm", config(7, 2, 8, 9, (1, 1), (5, 4), padding=(0, 0)),
                         {"_PRODUCT_BYTES": 1},
                         "1x1 grad_weight: four partial sums of one-image products, the last "
                         "of one image")
POINTWISE = [
    Regime("pointwise", config(3, 2, 9, 7, (1, 1), (7, 7), padding=(0, 0)), {},
           "1x1: strips of columns across three 7x7 images, the last partial; 7 and 9 rows of a "
           "group (forward, grad_input): partial tiles"),
    Regime("pointwise", config(2, 1, 33, 9, (1, 1), (9, 8), (2, 3), (0, 0)), {"_PANEL_BYTES": 1},
           "strided 1x1: columns gathered from every 2nd row, 3rd column (grad_input: scattered, "
           "zero between); a panel per strip, its tiles split over tasks (grad_input's 33 rows: "
           "a last block of fewer tiles)"),
]
ROW_LANES = Regime("implicit", config(2, 2, 12, 15, hw=(4, 14)), {},
                   "row tiles 14 wide, 15 of 16 lanes; grad_input on row tiles too")
ROW_PASSES = Regime("implicit", config(2, 3, 17, 16, hw=(7, 7)), {},
                    "row tiles 7 wide, 16 lanes; grad_input's 17 output channels in two "
                    "passes, the second of one channel")
ROW_SEGMENTS = Regime("implicit", config(2, 2, 13, 14, hw=(5, 3 * implicit.ROW_SEGMENTS[-1])), {},
                      "rows of three row-tile segments: the columns before and after a segment "
                      "read in the middle one only")
ROW_SLICES = Regime("implicit", config(1, 1, 5, 2 * implicit.ROW_LANES + 3, hw=(4, 7)), {},
                    "batch 1, one group: its three lane tiles (the last of three channels) "
                    "sliced over the tasks, at any thread count")
# planned tiles (strided, so not row tiles): 2 full lane tiles and one of 3 channels both ways
PLANNED_SLICES = Regime("implicit", config(1, 1, 2 * implicit.TILE.lanes + 3,
                                           2 * implicit.TILE.lanes + 3, hw=(5, 6), stride=(2, 2)),
                        {}, "batch 1, one group: its three lane tiles (the last of three "
                        "channels) sliced over the tasks, forward and grad_input, at any thread "
                        "count; each task packs its slice's weights")
LANE_TILES = [
    Regime("implicit", config(3, 2, 8, 65, hw=(5, 6)), {"_IMAGES": 2},
           "three lane tiles, the third of one output channel; a last block of one image"),
    Regime("implicit", config(2, 1, 31, 33, hw=(4, 4)), {},
           "a second lane tile of one output channel; grad_weight: 31 input channels on 32 lanes"),
    Regime("implicit", config(2, 2, 40, 40, (3, 3), (7, 6), (2, 2), (1, 1)), {},
           "strided: grad_input reads grad_out at every other pixel; one full and one "
           "partial lane tile"),
]
TILED_PHASES = [
    Regime("tiled", config(3, 2, 8, 9, (3, 3), (11, 10), (2, 2)),
           {"min_tasks_per_group": lambda groups: 1},
           "strided: four phase planes per channel, three images stacked in a block, a partial "
           "tile of output channels"),
    Regime("tiled", config(2, 1, 5, 9, (3, 2), (13, 9), (3, 2), (5, 2), (2, 1)),
           {"_BLOCK_COLUMNS": 8}, "strides 3 and 2, padding past the kernel's extent, bands of "
                                  "rows: the phases' rows that a band's taps read"),
    Regime("tiled", config(2, 2, 7, 8, (3, 3), (6, 5), padding=(3, 2)),
           {"min_tasks_per_group": lambda groups: 1},
           "stride 1, padding past the kernel's extent, two images stacked in a block: more "
           "output rows than input and padding rows, so rows cannot share their padding (the "
           "last image's would end past the block); no grad_input"),
]
DEPTHWISE = [
    Regime("depthwise", config(2, 3, 1, 1, (7, 7), (13, 12), padding=(3, 2), dilation=(1, 2)),
           {}, "49 taps: five passes and a sixth padded with zero weights, on a plane"),
    Regime("depthwise", config(2, 2, 1, 3, (3, 3), (9, 40), (2, 3), (1, 2), (2, 1)), {},
           "strided: row and column phases, the rows no tap reads skipped; three outputs per "
           "channel"),
    Regime("depthwise", config(3, 4, 1, 1, (5, 3), (7, 40), padding=(2, 1)), {},
           "'rows' on 40-wide images: two passes straight into y, the second padded"),
    Regime("depthwise", config(2, 3, 1, 1, (3, 3), (7, 40), padding=(2, 1), dilation=(2, 1)),
           {}, "'stream': x read in place, two edge rows each side (dilation 2): the "
           "forward's loads masked there, grad_weight's computed again"),
    Regime("depthwise", config(2, 2, 1, 1, (3, 3), (9, 40), padding=(1, 2), dilation=(1, 2)),
           {"MASK_LEN": 40}, "grad_weight's 'stream' over a plane in calls of one row each, "
           "the last shorter; two masked columns each side"),
]
DIRECT_STREAM = [
    Regime("direct", config(2, 2, 4, 8, (3, 3), (6, 41), padding=(1, 2), dilation=(1, 2)), {},
           "read='stream': x in place, masked columns two wide, two blocks of four outputs, "
           "the last step past the plane masked off"),
    Regime("direct", config(1, 3, 8, 4, (3, 3), (5, 40), padding=(2, 1), dilation=(2, 1)), {},
           "read='stream' on one interior row between two edge rows each side; eight input "
           "channels, the second four added to y"),
]
REGIMES = [
    MANY_GROUPS, MANY_UNITS, MANY_BLOCKS,
    *DIRECT_STREAM,
    Regime("direct", config(3, 2, 3, 6, (3, 2), (5, 4), (1, 1), (2, 1), (2, 1)), {},
           "small images stacked in one block, the rows between them zero"),
    Regime("direct", config(2, 3, 5, 7, (3, 3), (9, 11), (2, 3), (1, 2), (1, 2)), {},
           "stride 2 and 3: two and three column phases; leftover taps of the blocks of four"),
    Regime("tiled", config(3, 2, 9, 17, hw=(6, 7)), {},
           "output channels past two tiles of rows, several images per block"),
    Regime("tiled", config(2, 1, 33, 7, hw=(9, 10)), {"_BLOCK_COLUMNS": 40},
           "bands of three rows, one partial tile of output channels"),
    Regime("tiled", config(2, 2, 1, 33, (3, 5), (8, 9), padding=(2, 1), dilation=(1, 2)),
           {"_BLOCK_COLUMNS": 8}, "bands of two rows; padding and dilation differ per axis"),
    *TILED_PHASES,
    *LANE_TILES,
    ROW_LANES,
    ROW_PASSES,
    ROW_SEGMENTS,
    ROW_SLICES,
    PLANNED_SLICES,
    SLICES,
    Regime("implicit", config(2, 1, 65, 17, hw=(5, 5)), {},
           "grad_weight: input channels over three lane tiles, output channels in two slices"),
    Regime("gemm", config(2, 2, 8, 9, (1, 1), (9, 8), padding=(0, 0)), {},
           "1x1: one batched GEMM over (image, group) on the NCHW arrays"),
    Regime("gemm", config(3, 2, 9, 8, (1, 1), (9, 7), (2, 2), (0, 0)), {},
           "strided 1x1: a GEMM on every other pixel; the rest of grad_input zero"),
    Regime("gemm", config(2, 1, 8, 16, (1, 1), (33, 32), padding=(0, 0)), {},
           "1x1 on images of over 1024 pixels"),
    CHUNKS,
    POINTWISE_PARTS,
    *POINTWISE,
    *DEPTHWISE,
]
MODULES = {"depthwise": depthwise, "direct": direct, "tiled": tiled, "implicit": implicit,
           "gemm": gemm, "pointwise": pointwise}


def patched(regime: Regime) -> contextlib.AbstractContextManager:
    """The regime's module constants patched while in the context."""
    if not regime.patches:
        return contextlib.nullcontext()
    return mock.patch.multiple(MODULES[regime.algorithm], **regime.patches)


@pytest.mark.parametrize("regime, dtype, seed", [
    pytest.param(r, dtype, i, id=f"{r.algorithm}-{i}-{dtype}")
    for i, r in enumerate(REGIMES) for dtype in DTYPES])
def test_kernel_regimes(regime, dtype, seed):
    with patched(regime):
        check_all_kernels(random_problem(regime.cfg, dtype, seed), regime.algorithm)


def test_regimes_reach_what_they_are_for():
    """The cases meant to pass the kernels' task counts, lane tiles and write modes still do."""
    assert min(geometry_of(r.cfg).groups for r in (MANY_GROUPS, MANY_UNITS)) > direct._TASKS
    for itemsize in (4, 8):
        blocks = direct_blocks(geometry_of(MANY_BLOCKS.cfg), itemsize)
        assert blocks > direct._GRAD_WEIGHT_TASKS and blocks % direct._GRAD_WEIGHT_TASKS
    assert {geometry_of(r.cfg).out_per_group % implicit.TILE.lanes for r in LANE_TILES} == {1, 8}
    segments, slices = geometry_of(ROW_SEGMENTS.cfg), geometry_of(ROW_SLICES.cfg)
    assert implicit.rows_fit(segments) and implicit.rows_fit(slices)
    assert segments.input_hw[1] == 3 * implicit.row_segment(segments.input_hw[1])
    assert -(-slices.out_per_group // implicit.ROW_LANES) == 3  # lane tiles, to slice ...
    assert implicit.min_tasks_per_group(slices.groups) > slices.batch  # ... for idle threads
    planned = geometry_of(PLANNED_SLICES.cfg)
    assert not implicit.rows_fit(planned) and implicit.min_tasks_per_group(1) > planned.batch
    assert {-(-c // implicit.TILE.lanes) for c in (planned.out_per_group, planned.in_per_group)
            } == {3}
    passes, _, rows, stream, chunks = (geometry_of(r.cfg) for r in DEPTHWISE)
    assert passes.taps % depthwise.TAPS and rows.taps % depthwise.TAPS
    assert [depthwise.ALGORITHM.defaults("forward", g)["write"] for g in (passes, rows, stream)
            ] == ["plane", "rows", "stream"]
    assert stream.dilation[0] == stream.padding[0] == 2
    assert [depthwise.ALGORITHM.defaults("grad_weight", g)["read"] for g in (stream, chunks)
            ] == ["stream", "stream"]
    (h, wd), (dh, dw) = chunks.input_hw, chunks.dilation
    assert ((h - 2 * dh) * wd - 2 * dw) % wd and dw == 2  # a shorter last call
    for regime, block in zip(TILED_PHASES, ((3, 6), (1, 1), (2, 10))):  # images, rows
        g = geometry_of(regime.cfg)
        with patched(regime):
            assert tiled.block_of(g, 4) == block
    banded, padded = (geometry_of(r.cfg) for r in TILED_PHASES[1:])
    assert banded.padding[0] > banded.dilation[0] * 2 and not padded.has_transpose
    across, strided = (geometry_of(r.cfg) for r in POINTWISE)
    pixels = across.output_hw[0] * across.output_hw[1]
    assert pixels % pointwise.NR and across.batch * pixels % pointwise.NR  # strips across images
    assert across.out_per_group % pointwise.MR and across.in_per_group % pointwise.MR
    with patched(POINTWISE[1]):  # grad_input: its rows are the input channels
        per_panel, per_task = pointwise._tasks(strided, strided.in_per_group,
                                               strided.out_per_group, 4)
    assert per_panel == 1 and per_task < -(-strided.in_per_group // pointwise.MR)
    assert strided.stride == (2, 3)


# --- ResNeXt's own convolutions ----------------------------------------------------------

# (name, batch, C_in, C_out, groups, kernel, stride, input size): the ImageNet models at 224x224
# and ResNeXt-29 at 32x32, the grouped 3x3 convolution of every stage (and of its first block,
# at stride 2), 1x1s and the stem; and the depthwise convolution of a MobileNet. Whatever the
# rules choose for them runs, with a bias.
PRODUCTION = [
    ("resnext50-stem", 1, 3, 64, 1, 7, 2, 224),
    ("resnext50-stage1-1x1", 2, 256, 128, 1, 1, 1, 56),
    ("resnext50-stage1", 2, 128, 128, 32, 3, 1, 56),
    ("resnext50-stage2-first", 1, 256, 256, 32, 3, 2, 56),
    ("resnext50-stage2", 2, 256, 256, 32, 3, 1, 28),
    ("resnext50-stage2-downsample", 1, 256, 512, 1, 1, 2, 56),
    ("resnext50-stage3", 2, 512, 512, 32, 3, 1, 14),
    ("resnext50-stage4-first", 2, 1024, 1024, 32, 3, 2, 14),
    ("resnext50-stage4", 2, 1024, 1024, 32, 3, 1, 7),
    ("resnext101_32x8d-stage4", 2, 2048, 2048, 32, 3, 1, 7),
    ("resnext29_8x64d-stage1", 1, 512, 512, 8, 3, 1, 32),
    ("resnext29_8x64d-stage2", 1, 1024, 1024, 8, 3, 1, 16),
    ("resnext29_8x64d-stage3-first", 1, 2048, 2048, 8, 3, 2, 16),
    ("resnext29_8x64d-stage3", 1, 2048, 2048, 8, 3, 1, 8),
    ("depthwise-144", 1, 144, 144, 144, 3, 1, 56),
]


@pytest.mark.parametrize("n, c_in, c_out, groups, kernel, stride, size",
                         [p[1:] for p in PRODUCTION], ids=[p[0] for p in PRODUCTION])
def test_resnext_convolutions(n, c_in, c_out, groups, kernel, stride, size):
    cfg = config(n, groups, c_in // groups, c_out // groups, (kernel, kernel), (size, size),
                 (stride, stride), (kernel // 2, kernel // 2))
    check_all_kernels(random_problem(cfg, "float32", seed=c_out), None)


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("regime", [MANY_BLOCKS, SLICES, CHUNKS, POINTWISE_PARTS, DEPTHWISE[1]],
                         ids=["direct", "implicit", "gemm", "gemm-pointwise", "depthwise"])
def test_grad_weight_is_deterministic_across_thread_counts(regime):
    """Each algorithm splits grad_weight's sums by the shape alone, so the result is bitwise the
    same on one thread (Numba's and BLAS's) and on all of them."""
    problem = random_problem(regime.cfg, "float32", seed=3)
    threads = numba.get_num_threads()
    results = []
    with patched(regime):
        try:
            for n in sorted({1, threads}):
                numba.set_num_threads(n)
                with threadpool_limits(n):
                    results += [run_pass("grad_weight", problem, regime.algorithm)
                                for _ in range(2)]
        finally:
            numba.set_num_threads(threads)
    assert all(np.array_equal(results[0], r) for r in results[1:])
    assert_matches_reference("grad_weight", results[0], problem)


def _depthwise(g: Conv2dGeometry) -> None:
    depthwise.forward(np.zeros(g.input_shape), np.zeros(g.weight_shape), None,
                      np.zeros(g.output_shape), g)


def _pointwise(g: Conv2dGeometry) -> None:
    pointwise.grad_input(np.zeros(g.output_shape), np.zeros(g.weight_shape),
                         np.zeros(g.input_shape), g)


def _relu(g: Conv2dGeometry) -> None:
    activation.relu_forward(np.zeros(g.input_shape))


SMALL_DEPTHWISE = Conv2dGeometry.of((1, 2, 5, 5), (2, 1, 3, 3), padding=1, groups=2)
SMALL_POINTWISE = Conv2dGeometry.of((1, 2, 5, 5), (3, 2, 1, 1))


@pytest.mark.parametrize("module, threshold, kernel, call, g, work", [
    (depthwise, "PARALLEL_MIN_MACS", "_forward", _depthwise, SMALL_DEPTHWISE,
     SMALL_DEPTHWISE.macs),
    (pointwise, "PARALLEL_MIN_MACS", "_product", _pointwise, SMALL_POINTWISE,
     SMALL_POINTWISE.macs),
    (activation, "PARALLEL_MIN_ELEMENTS", "_relu", _relu, SMALL_POINTWISE,
     math.prod(SMALL_POINTWISE.input_shape)),  # elements
], ids=["depthwise", "pointwise", "relu"])
def test_small_calls_run_on_the_calling_thread(monkeypatch, module, threshold, kernel, call, g,
                                               work):
    """Below its threshold a kernel runs on one thread, and the caller's thread count is back
    afterwards, also when the kernel raises."""
    threads, seen = numba.get_num_threads(), []

    def at(value: int) -> None:
        monkeypatch.setattr(module, threshold, value)
        call(g)

    monkeypatch.setattr(module, kernel, lambda *args: seen.append(numba.get_num_threads()))
    at(work + 1)
    at(work)
    assert seen == [1, threads] and numba.get_num_threads() == threads
    monkeypatch.setattr(module, kernel, lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        at(work + 1)
    assert numba.get_num_threads() == threads


@pytest.mark.parametrize("shape, weight, threads, panels, blocks", [
    # batch 1, 14x14: the weights (2 MB) outweigh the input (0.4 MB): one panel, tiles split
    ((1, 512, 14, 14), (1024, 512, 1, 1), 2, 1, 4),
    ((1, 512, 14, 14), (1024, 512, 1, 1), 1, 1, 2),
    # batch 1, 56x56: the input (0.8 MB against 64 KB of weights): strips split, tiles whole
    ((1, 64, 56, 56), (256, 64, 1, 1), 2, 4, 1),
    # batch 32: panels enough for the L2 budget and the threads
    ((32, 256, 56, 56), (128, 256, 1, 1), 2, 196, 1),
])
def test_pointwise_splits_the_product_where_it_repeats_fewest_bytes(
        monkeypatch, shape, weight, threads, panels, blocks):
    monkeypatch.setattr(pointwise, "min_tasks_per_group", lambda groups: 2 * threads // groups)
    g = Conv2dGeometry.of(shape, weight)
    per_panel, per_task = pointwise._tasks(g, g.out_per_group, g.in_per_group, 4)
    strips = -(-g.batch * g.output_hw[0] * g.output_hw[1] // pointwise.NR)
    tiles = -(-g.out_per_group // pointwise.MR)
    assert (-(-strips // per_panel), -(-tiles // per_task)) == (panels, blocks)
    fits = pointwise._PANEL_BYTES // (g.in_per_group * pointwise.NR * 4)
    assert per_panel <= max(1, fits)


# --- bounds ----------------------------------------------------------------------------------


@bounds
@pytest.mark.parametrize("regime", [LANE_TILES[0], LANE_TILES[2], PLANNED_SLICES, ROW_LANES,
                                    ROW_PASSES, ROW_SEGMENTS, ROW_SLICES],
                         ids=["planned", "strided", "planned slices", "rows", "row passes",
                              "row segments", "row slices"])
def test_lane_tiles_read_only_the_channels_there_are(regime):
    """The implicit kernel's forward and grad_input tiles compute whole lane tiles of output
    channels: past the last channel they must read no bias or weight (and strided, grad_input's
    rows read grad_out only at the output pixels that exist). In the process of
    test_kernels_stay_in_bounds an index past the end raises, as shown first."""
    if os.environ.get("NUMBA_BOUNDSCHECK") == "1":
        with pytest.raises(IndexError):
            numba.njit(lambda a, i: a[i])(np.zeros(3), 3)
    problem = random_problem(regime.cfg, "float32")
    with patched(regime):
        for pass_ in ("forward", "grad_input"):
            assert_matches_reference(pass_, run_pass(pass_, problem, "implicit"), problem)


@bounds
@pytest.mark.parametrize("regime", POINTWISE, ids=["across images", "strided"])
def test_pointwise_reads_only_its_columns(regime):
    """The pointwise kernel's tiles compute whole tiles of rows and strips of columns: past the
    last row they must read no weight or bias, past the last column no input, and strided
    they gather and scatter at every stride-th pixel only (bounds-checked process)."""
    problem = random_problem(regime.cfg, "float32")
    with patched(regime):
        for pass_ in ("forward", "grad_input"):
            assert_matches_reference(pass_, run_pass(pass_, problem, "pointwise"), problem)


@bounds
@pytest.mark.parametrize("regime", TILED_PHASES, ids=["strided", "bands", "padded"])
def test_tiled_reads_only_its_block(regime):
    """The tiled kernel's tiles read its padded block at per-tap offsets, into stride phases
    and past a band's last row by the taps' reach (bounds-checked process)."""
    problem = random_problem(regime.cfg, "float32")
    with patched(regime):
        assert_matches_reference("forward", run_pass("forward", problem, "tiled"), problem)


@bounds
@pytest.mark.parametrize("regime", DIRECT_STREAM, ids=["blocks", "one-row"])
def test_direct_stream_reads_only_the_image(regime):
    """read="stream" reads x in place at the taps' offsets: its loop over a plane must stop
    where a tap would leave the plane, and the edge rows and pixels read only the taps that
    reach the image (bounds-checked process; grad_input is the same forward)."""
    problem = random_problem(regime.cfg, "float32")
    assert direct.ALGORITHM.defaults("forward", geometry_of(regime.cfg)) == {"read": "stream"}
    check_all_kernels(problem, "direct")


@bounds
@pytest.mark.parametrize("regime", DEPTHWISE,
                         ids=["passes", "strided", "rows", "stream", "stream-calls"])
def test_depthwise_taps_read_only_their_buffers(regime):
    """The depthwise kernel's taps read at offsets into a plane's padded (and strided,
    phase-split) buffer, a short last pass into the block of zeros past it, "stream" into x
    itself (its loop over a plane must stop where the taps would leave it), and grad_weight's dot
    products run over grad_out's buffer, or with read="stream" over x and grad_out in place and
    the masks: checked for every pass in the bounds-checked process."""
    problem = random_problem(regime.cfg, "float32")
    with patched(regime):
        check_all_kernels(problem, "depthwise")


def _bounds_run(config: pytest.Config) -> elsewhere.Run:
    """The `bounds` tests in a process with Numba's bounds checks on, their kernels cached apart
    from the unchecked ones (Numba's cache does not tell them apart), kept between runs where
    they can be."""
    cache = (Path(os.environ["NUMBA_CACHE_DIR"] + "-boundscheck") if os.environ.get("NUMBA_CACHE_DIR")
             else elsewhere.cache_dir(config, "numba-boundscheck"))
    return elsewhere.Run(
        ("-m", "pytest", "-q", "-x", "-m", "bounds", "-p", "no:cacheprovider",
         str(Path(__file__).relative_to(ROOT))),
        {"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(cache)}, timeout=900)


@elsewhere.early(_bounds_run)
def test_kernels_stay_in_bounds(request):
    """The `bounds` tests, in the process `_bounds_run` starts. They are few: compiling the
    checked kernels takes minutes (once per change of the kernels)."""
    done = elsewhere.result(_bounds_run, request.config)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "19 passed" in done.stdout, done.stdout[-4000:]
