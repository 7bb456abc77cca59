"""The choice among the CPU convolution algorithms: the rule tables of kernels/cpu/rules.py give
the documented choices, every threshold is the one its measurements were taken for, the
default choice computes the right values on both sides of every threshold, and the kernels
that run are the ones `conv2d_algorithm` reports."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from conv_checks import assert_close, check_all_kernels, config, geometry_of, random_problem

from minitorch_resnext.kernels import cpu, reference
from minitorch_resnext.kernels.cpu import blas_threads, conv, depthwise, direct, implicit, rules
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.kernels.selection import Choice

BENCHMARKS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def chosen(geometry: Conv2dGeometry) -> tuple[str, str, str]:
    """What each pass runs: the algorithm, with its row or planned tiles where it has them."""
    return tuple(c.algorithm + (f"/{c.params['tiles']}" if "tiles" in c.params else "")
                 for _, c in cpu.conv2d_algorithm(geometry))


# --- every threshold, on both sides --------------------------------------------------------

THRESHOLDS = [name for node in ast.parse(Path(rules.__file__).read_text()).body
              if isinstance(node, ast.Assign)
              for name in (t.id for t in node.targets if isinstance(t, ast.Name))
              if name.isupper() and isinstance(getattr(rules, name), int)]
IMPLICIT = ("implicit/planned", "implicit/planned", "implicit")
WEIGHT_CHANNELS = max(rules.IMPLICIT_WEIGHT_MIN_CHANNELS, rules.TILED_MIN_CHANNELS)


Chosen = tuple[str, str, str]


class Boundary(NamedTuple):
    """A threshold T and what forward, grad_input and grad_weight run on either side of it: one
    of "at least" lies between T - 1 and T, one of "at most" (`most`) between T and T + 1."""

    name: str  # in rules.py
    make: Callable[[int], dict]  # the convolution for a channel (or pixel) count
    # what runs, or a function of the count where it depends on how the target's thresholds
    # fall against each other (AVX2's narrower tiles put some below TILED_MIN_CHANNELS)
    before: Chosen | Callable[[int], Chosen]
    after: Chosen | Callable[[int], Chosen]
    most: bool = False

    def counts(self) -> tuple[int, int]:
        value = getattr(rules, self.name)
        return (value, value + 1) if self.most else (value - 1, value)

    def expected(self, side: int) -> Chosen:
        count, want = self.counts()[side], (self.before, self.after)[side]
        return want(count) if callable(want) else want


STRIDED_TILED = ("tiled", "direct", "direct")  # the tiled kernel has a strided forward only
# Where NumPy's BLAS runs narrower vectors than the kernels, 1x1 convolutions go to the pointwise
# kernel (their grad_weight to the implicit one) and those of GEMM_MIN_CHANNELS to the implicit
# kernel
NARROW_BLAS = blas_threads.narrower_than(rules.ISA.vector_bytes)
ONE_BY_ONE = ("pointwise", "pointwise", "implicit") if NARROW_BLAS else ("gemm",) * 3
MANY_CHANNELS = IMPLICIT if NARROW_BLAS else ("gemm",) * 3


def tiled_or_direct(channels: int) -> str:
    return "tiled" if channels >= rules.TILED_MIN_CHANNELS else "direct"


def weight_pass(c_in: int, channels: int) -> str:
    """grad_weight at stride 1: the implicit reduction needs both thresholds."""
    return ("implicit" if channels >= rules.TILED_MIN_CHANNELS
            and c_in >= rules.IMPLICIT_WEIGHT_MIN_CHANNELS else "direct")


def strided(c: int, hw: tuple[int, int] = (9, 9)) -> dict:
    """A stride-2 3x3 convolution of `c` channels per group on two images, with enough groups
    for STRIDED_MIN_IMAGE_MACS multiply-adds per image."""
    out = math.prod((n - 1) // 2 + 1 for n in hw)
    return config(2, -(-rules.STRIDED_MIN_IMAGE_MACS // (c * c * 9 * out)), c, c, hw=hw,
                  stride=(2, 2))


def pixels_row(macs: int) -> dict:
    """The largest stride-2 2x2 convolution with 16 channels (one group) on one row of output
    pixels that has at most `macs` multiply-adds per image (16 * 16 * 4 per output pixel)."""
    return config(2, 1, 16, 16, (2, 2), (2, 2 * (macs // 1024)), (2, 2), (0, 0))


def one_by_one_row(macs: int) -> dict:
    """The largest 1x1 convolution with 16 channels (one group) on one row of pixels that has
    at most `macs` multiply-adds per image (16 * 16 per pixel)."""
    return config(2, 1, 16, 16, (1, 1), (1, macs // 256), padding=(0, 0))


def plain(c_in: int, c_out: int) -> Chosen:
    """A 3x3 stride-1 convolution past the implicit kernel's pixels and the row widths."""
    channels = min(c_in, c_out)
    return tiled_or_direct(channels), tiled_or_direct(channels), weight_pass(c_in, channels)


def rows_or_plain(c: int) -> Chosen:
    if c >= rules.ROW_MIN_CHANNELS:
        return ("implicit/rows", "implicit/rows", weight_pass(c, c))
    return plain(c, c)


BOUNDARIES = [
    Boundary("POINTWISE_GEMM_MIN_CHANNELS",
             lambda c: config(2, 2, c, c, (1, 1), (5, 5), padding=(0, 0)),
             ("direct",) * 3, ("gemm",) * 3),
    Boundary("POINTWISE_MIN_IMAGE_MACS", lambda m: one_by_one_row(m), ("gemm",) * 3,
             ONE_BY_ONE),
    # 3x3 on an image too small for the tiled kernel to pay off
    Boundary("GEMM_MIN_CHANNELS", lambda c: config(2, 1, c, c, hw=(4, 4)), IMPLICIT,
             MANY_CHANNELS),
    Boundary("GEMM_MIN_CHANNELS", lambda c: strided(c, (8, 8)), IMPLICIT,
             MANY_CHANNELS),
    # strided, on convolutions of STRIDED_MIN_IMAGE_MACS multiply-adds per image: the implicit
    # kernel against the tiled forward and the direct kernel, and the tiled forward against
    # the direct kernel
    Boundary("STRIDED_MIN_CHANNELS", lambda c: strided(c), STRIDED_TILED,
             ("implicit/planned", "direct", "implicit")),
    Boundary("STRIDED_GRAD_INPUT_MIN_CHANNELS", lambda c: strided(c),
             ("implicit/planned", "direct", "implicit"), IMPLICIT),
    Boundary("STRIDED_MIN_IMAGE_MACS", lambda m: pixels_row(m), ("direct",) * 3,
             ("implicit/planned", "direct", "implicit")),
    Boundary("STRIDED_TILED_MIN_CHANNELS", lambda c: strided(c), ("direct",) * 3, STRIDED_TILED),
    # 3x3 on an image past the implicit kernel's pixels and the row tiles' widths
    Boundary("TILED_MIN_CHANNELS", lambda c: config(2, 2, c, c, hw=(17, 17)),
             ("direct",) * 3, lambda c: plain(c, c)),
    Boundary("TILED_MIN_CHANNELS",  # grad_weight's implicit rule needs it too
             lambda c: config(2, 2, WEIGHT_CHANNELS, c, hw=(17, 17)),
             ("direct",) * 3, ("tiled", "tiled", "implicit")),
    # where the target puts it below TILED_MIN_CHANNELS (AVX2), it changes nothing here
    Boundary("IMPLICIT_WEIGHT_MIN_CHANNELS",
             lambda c: config(2, 2, c, rules.TILED_MIN_CHANNELS, hw=(17, 17)),
             lambda c: plain(c, rules.TILED_MIN_CHANNELS),
             lambda c: plain(c, rules.TILED_MIN_CHANNELS)),
    Boundary("IMPLICIT_MIN_CHANNELS", lambda c: config(2, 1, c, c, hw=(9, 9)),
             ("tiled", "tiled", "implicit"), IMPLICIT),
    Boundary("IMPLICIT_MAX_PIXELS",  # one column of that many pixels (too narrow for rows)
             lambda p: config(1, 1, rules.IMPLICIT_MIN_CHANNELS, rules.IMPLICIT_MIN_CHANNELS,
                              hw=(p, 1)),
             IMPLICIT, ("tiled", "tiled", "implicit"), most=True),
    Boundary("ROW_MIN_CHANNELS", lambda c: config(2, 2, c, c, hw=(5, implicit.ROW_SEGMENTS[-1])),
             rows_or_plain, rows_or_plain),
]


def test_every_threshold_has_its_boundary_cases():
    assert {b.name for b in BOUNDARIES} == set(THRESHOLDS)


def test_thresholds_are_the_measured_ones():
    """A threshold moves with new measurements: docs/benchmarks.md records those behind each
    one ("How the CPU rules were set"), for the definition rules.py has (some follow from the
    target's tiles, so the definition is compared, not the value on this CPU)."""
    text = BENCHMARKS.read_text()
    section = text[text.index("### How the CPU rules were set"):]
    section = section[:section.index("\n## ")]
    documented = dict(re.findall(r"`([A-Z_]+) = ([^`]+)`", section))
    source = Path(rules.__file__).read_text()
    defined = {t.id: ast.get_source_segment(source, node.value)
               for node in ast.parse(source).body if isinstance(node, ast.Assign)
               for t in node.targets if isinstance(t, ast.Name) and t.id in THRESHOLDS}
    assert documented == defined


@pytest.mark.parametrize("side", [0, 1], ids=["before", "after"])
@pytest.mark.parametrize("boundary", BOUNDARIES, ids=[b.name for b in BOUNDARIES])
def test_default_choice_on_both_sides_of_each_threshold(rules_only, boundary, side):
    """The choice flips exactly at the threshold, and what runs by default is right there."""
    count = boundary.counts()[side]
    cfg = boundary.make(count)
    assert chosen(geometry_of(cfg)) == boundary.expected(side)
    check_all_kernels(random_problem(cfg, "float32", seed=count), None)


@pytest.mark.parametrize(
    "c_in, c_out, groups, kernel, expected",
    [
        (128, 128, 32, 3, "direct"),  # ResNeXt-50 stage 1: 4 channels per group
        # ResNeXt-50 stage 2: 8 channels per group, a row tile's register with AVX2 only
        (256, 256, 32, 3, "implicit" if 8 >= rules.ROW_MIN_CHANNELS else "tiled"),
        (1024, 1024, 32, 3, "implicit"),  # ResNeXt-50 stage 4: 32 channels per group
        (512, 512, 8, 3, "implicit"),  # 64 channels per group on 16x16 images: row tiles
        # 16 channels per group with AVX-512: half a planned tile, a row tile's register
        (32 * (implicit.TILE.lanes // 2), 32 * (implicit.TILE.lanes // 2), 32, 3, "implicit"),
        (144, 144, 144, 3, "depthwise"),  # depthwise
        (64, 192, 64, 3, "depthwise"),  # depthwise multiplier 3
        (3, 64, 1, 7, "direct"),  # an RGB stem: 3 input channels
        (128, 128, 1, 3, "implicit"),  # dense: row tiles
        (256, 128, 1, 1, ONE_BY_ONE[0]),  # pointwise
        (64, 64, 16, 1, "direct"),  # pointwise with 4 channels per group
    ],
)
def test_conv2d_algorithm_choice(rules_only, c_in, c_out, groups, kernel, expected):
    g = Conv2dGeometry.of((8, c_in, 16, 16), (c_out, c_in // groups, kernel, kernel),
                          padding=kernel // 2, groups=groups)
    choice = cpu.conv2d_algorithm(g).forward
    assert choice.algorithm == expected and choice.source == "rule"
    assert isinstance(choice.reason, str) and len(choice.reason) > 20


@pytest.fixture
def ruled_afresh() -> Iterator[None]:
    """The rule tables' choices forgotten before and after (a test changes what they read)."""
    conv.ruled.cache_clear()
    yield
    conv.ruled.cache_clear()


@pytest.mark.parametrize("blas_bytes, expected", [
    (rules.ISA.vector_bytes // 2, ("pointwise", "pointwise", "implicit")),
    (rules.ISA.vector_bytes, ("gemm",) * 3),
    (None, ("gemm",) * 3),  # a BLAS that does not say (MKL, BLIS): its own widest vectors
])
def test_own_kernels_replace_blas_where_it_runs_narrower_vectors(
        monkeypatch, rules_only, ruled_afresh, blas_bytes, expected):
    monkeypatch.setattr(blas_threads, "VECTOR_BYTES", blas_bytes)
    g = Conv2dGeometry.of((8, 256, 14, 14), (512, 256, 1, 1), stride=2)
    assert chosen(g) == expected
    small = geometry_of(one_by_one_row(rules.POINTWISE_MIN_IMAGE_MACS - 1))
    assert chosen(small) == ("gemm",) * 3
    for stride in (1, 2):  # dense 3x3 where rows do not fit: im2col + GEMM, or planned tiles
        dense = Conv2dGeometry.of((2, 96, 17, 17), (96, 96, 3, 3), stride=stride, padding=1)
        assert chosen(dense) == (IMPLICIT if expected[0] == "pointwise" else ("gemm",) * 3)
    few = Conv2dGeometry.of((8, 64, 14, 14), (64, 4, 1, 1), groups=16)  # 4 channels per group
    assert chosen(few) == ("direct",) * 3


def test_depthwise_grad_input_the_depthwise_kernel_cannot_run_goes_to_direct(rules_only):
    strided = Conv2dGeometry.of((8, 96, 16, 16), (96, 1, 3, 3), stride=2, padding=1, groups=96)
    choices = cpu.conv2d_algorithm(strided)
    assert [choice.algorithm for _, choice in choices] == ["depthwise", "direct", "depthwise"]
    multiplier = Conv2dGeometry.of((8, 64, 16, 16), (192, 1, 3, 3), padding=1, groups=64)
    choices = cpu.conv2d_algorithm(multiplier)  # grad_input sums 3 outputs per input channel
    assert [choice.algorithm for _, choice in choices] == ["depthwise", "direct", "depthwise"]


@pytest.mark.parametrize("width, write", [(depthwise.ROWS_MIN_WIDTH, "rows"),
                                          (depthwise.ROWS_MIN_WIDTH - 1, "plane")])
def test_depthwise_writes_rows_of_wide_images(rules_only, width, write):
    g = Conv2dGeometry.of((2, 8, 9, width), (8, 1, 3, 5), padding=(1, 2), groups=8)  # not 3x3
    choices = cpu.conv2d_algorithm(g)
    assert choices.forward.params == choices.grad_input.params == {"write": write}


@pytest.mark.parametrize("kernel, hw, stride, padding, dilation, streams, default, read", [
    ((3, 3), (9, 32), 1, 1, 1, True, "stream", "stream"),
    ((3, 3), (9, 31), 1, 1, 1, True, "stream", "buffers"),  # narrow: grad_weight buffers
    ((3, 3), (5, 40), 1, (2, 1), (2, 1), True, "stream", "stream"),  # a pixel past the padding
    ((3, 3), (4, 40), 1, (2, 1), (2, 1), False, "rows", None),  # ... and not
    ((3, 3), (9, 33), 1, 1, 2, False, "plane", None),  # padding != dilation: 31 wide outputs
    ((3, 3), (9, 80), 2, 1, 1, False, "rows", None),
    ((5, 5), (9, 40), 1, 2, 1, False, "rows", None),
])
def test_depthwise_streams_3x3_convolutions_with_padding_equal_to_dilation(
        rules_only, kernel, hw, stride, padding, dilation, streams, default, read):
    g = Conv2dGeometry.of((2, 8, *hw), (8, 1, *kernel), stride, padding, dilation, groups=8)
    assert depthwise.streams(g) == streams
    assert ("stream" in depthwise.ALGORITHM.space("forward", g)["write"]) == streams
    assert ("stream" in depthwise.ALGORITHM.space("grad_weight", g).get("read", ())) == streams
    choices = cpu.conv2d_algorithm(g)
    assert choices.forward.params == {"write": default}
    assert choices.grad_weight.params == ({} if read is None else {"read": read})


@pytest.mark.parametrize("channels, hw, stride, padding, dilation, read", [
    ((4, 4), (9, 40), 1, 1, 1, "stream"),
    ((4, 8), (6, 16), 1, (2, 1), (2, 1), "stream"),
    ((4, 4), (32, 32), 1, 1, 1, "stream"),
    ((8, 8), (32, 32), 1, 1, 1, "stream"),  # planes of 1024 pixels start in the same L1 sets
    ((12, 16), (7, 7), 1, 1, 1, "stream"),
    ((5, 5), (9, 40), 1, 1, 1, None),  # not whole blocks of four ...
    ((2, 4), (9, 40), 1, 1, 1, None),  # ... of input channels
    ((4, 6), (9, 40), 1, 1, 1, None),  # ... or of output channels
    ((4, 4), (9, 40), 2, 1, 1, None),  # strided
    ((4, 4), (9, 40), 1, 1, 2, None),  # padding != dilation
    ((4, 4), (2, 40), 1, 1, 1, None),  # no row past the padding
])
def test_direct_reads_x_in_place_by_default(rules_only, channels, hw, stride, padding, dilation,
                                            read):
    (cg, og), groups = channels, 32
    g = Conv2dGeometry.of((2, groups * cg, *hw), (groups * og, cg, 3, 3), stride, padding,
                          dilation, groups)
    assert direct.reads_in_place(g) == (read is not None)
    for pass_ in ("forward", "grad_input"):
        assert direct.ALGORITHM.defaults(pass_, g) == ({} if read is None else {"read": read})
        assert direct.ALGORITHM.space(pass_, g).get("read", ()) == (
            () if read is None else ("stream", "buffers"))
    assert direct.ALGORITHM.space("grad_weight", g) == {}
    if read == "stream" and cg < 8:  # the rules run the direct kernel below 8 channels
        assert cpu.conv2d_algorithm(g).forward.params == {"read": "stream"}


def test_direct_refuses_to_read_in_place_where_it_cannot():
    """read="stream" forced on a convolution it cannot read in place (not whole blocks of four
    channels) is refused before any kernel runs: the parameter is not in its space."""
    g = Conv2dGeometry.of((1, 6, 9, 9), (6, 3, 3, 3), 1, 1, 1, 2)
    x, w = np.ones(g.input_shape), np.ones(g.weight_shape)
    with pytest.raises(ValueError, match="no parameter 'read' for forward"):
        cpu.conv2d_forward(x, w, None, g, Choice("direct", {"read": "stream"}, ""))


ROW_LANES, ROW_WIDTH = implicit.ROW_LANES, implicit.ROW_SEGMENTS[-1]


@pytest.mark.parametrize(
    "cg, hw, groups, rows",
    [*((ROW_LANES, w, 32, True) for w in implicit.ROW_SEGMENTS),
     (ROW_LANES, 2 * ROW_WIDTH, 32, True), (rules.ROW_MIN_CHANNELS, ROW_WIDTH, 32, True),
     (2 * ROW_LANES, 7, 32, True), (4 * ROW_LANES, 7, 32, True),
     (2 * ROW_LANES + 1, ROW_WIDTH, 32, True), (ROW_LANES // 2, ROW_WIDTH, 32, False),
     (ROW_LANES, 11, 32, False), (ROW_LANES, 17, 32, False),
     (128, 28, 1, True), (128, 17, 1, False), (64, 32, 8, True)],
)
def test_row_tiles_are_chosen_for_their_widths_and_channels(rules_only, cg, hw, groups, rows):
    """ResNeXt-50's 3x3 convolutions of 16 channels per group on 14x14 and 7x7 images (with
    AVX-512; a row tile's lanes are one vector register of the target), ResNeXt-101's of 32
    and 64, which take a pass per register of output channels, rows of several segments
    (ResNeXt-29's 64 channels per group on 32x32), and dense ones, ahead of im2col + GEMM;
    not where no segment divides the width."""
    g = Conv2dGeometry.of((8, groups * cg, hw, hw), (groups * cg, cg, 3, 3), 1, 1, 1, groups)
    for choice in (cpu.conv2d_algorithm(g).forward, cpu.conv2d_algorithm(g).grad_input):
        assert choice.algorithm == "implicit" or not rows
        assert (choice.params.get("tiles") == "rows") == rows
        assert ("row tiles" in choice.reason) == rows


@pytest.mark.parametrize("hw, spread", [((16, 30), True), ((16, 32), False), ((32, 32), False),
                                        ((2, 256), False), ((28, 28), True)])
def test_strided_grad_input_avoids_planes_that_alias(rules_only, hw, spread):
    """Stride-2 grad_input runs the implicit kernel unless the input's planes are a multiple
    of 512 pixels apart (its tiles' stores would fall into one or two L1 sets)."""
    g = geometry_of(strided(rules.STRIDED_GRAD_INPUT_MIN_CHANNELS, hw))
    choices = cpu.conv2d_algorithm(g)
    assert choices.forward.algorithm == choices.grad_weight.algorithm == "implicit"
    assert choices.grad_input.algorithm == ("implicit" if spread else "direct")


def test_tiled_computes_strided_forwards_and_stride_1_grad_inputs(rules_only):
    x_shape, w_shape = (8, 256, 16, 16), (256, 8, 3, 3)
    choose = lambda s, p: cpu.conv2d_algorithm(  # noqa: E731
        Conv2dGeometry.of(x_shape, w_shape, s, p, 1, 32))
    assert choose(1, 1).forward.algorithm == choose(1, 1).grad_input.algorithm == "tiled"
    assert (choose(2, 1).forward.algorithm, choose(2, 1).grad_input.algorithm) == (
        "tiled", "direct")
    assert choose(1, 3).forward.algorithm == "direct"  # padded past the kernel: no rule's
    g = Conv2dGeometry.of(x_shape, w_shape, 2, 1, 1, 32)
    with pytest.raises(ValueError, match="algorithm 'tiled' needs stride 1 .* for grad_input"):
        cpu.conv2d_grad_input(np.ones(g.output_shape), np.ones(w_shape), g, algorithm="tiled")
    with pytest.raises(ValueError, match="algorithm 'tiled' has no grad_weight kernel"):
        cpu.conv2d_grad_weight(np.ones(x_shape), np.ones(g.output_shape),
                               Conv2dGeometry.of(x_shape, w_shape, 1, 1, 1, 32), "tiled")


@pytest.mark.parametrize(
    "c_in, groups", [(8, 4), (64, 2), (32, 2), (16, 2), (18, 2), (2 * rules.GEMM_MIN_CHANNELS, 1)]
)
def test_kernels_run_the_reported_algorithm(monkeypatch, rules_only, c_in, groups):
    ran = []
    for name, algorithm in cpu.ALGORITHMS.items():
        for pass_, kernel in algorithm.kernels.items():

            def spy(*args, _name=name, _kernel=kernel, **params):
                ran.append(_name)
                return _kernel(*args, **params)

            monkeypatch.setitem(algorithm.kernels, pass_, spy)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, c_in, 5, 5))
    w = rng.standard_normal((c_in, c_in // groups, 3, 3))
    g = Conv2dGeometry.of(x.shape, w.shape, 1, 1, 1, groups)
    choices = cpu.conv2d_algorithm(g)
    y = cpu.conv2d_forward(x, w, None, g)
    gx = cpu.conv2d_grad_input(y, w, g)
    gw = cpu.conv2d_grad_weight(x, y, g)
    assert ran == [choices.forward.algorithm, choices.grad_input.algorithm,
                   choices.grad_weight.algorithm]
    for got, want in ((y, reference.conv2d_forward(x, w, None, g)),
                      (gx, reference.conv2d_grad_input(y, w, g)),
                      (gw, reference.conv2d_grad_weight(x, y, g))):
        assert_close(got, want, "float64")


