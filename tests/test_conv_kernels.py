"""Grouped-convolution kernels: the NumPy reference against independent computations, and the
Numba CPU kernels (every algorithm) against the reference on random configurations."""

from __future__ import annotations

import itertools
from unittest import mock

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext.kernels import cpu, reference
from minitorch_resnext.kernels.cpu import implicit, rules, tiled
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.kernels.selection import Choice
from minitorch_resnext.testing.strategies import arrays

RTOL = {"float32": 1e-5, "float64": 1e-12}
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str, slack: float = 0.0) -> None:
    """Same shape and dtype, and ||actual - expected|| <= rtol * ||expected|| + slack (norm-wise).
    `slack` is for sums that cancel (see `check_all_kernels`)."""
    assert actual.shape == expected.shape
    assert actual.dtype == np.dtype(dtype)
    err = np.linalg.norm((actual - expected).ravel())
    assert err <= RTOL[dtype] * max(np.linalg.norm(expected.ravel()), 1e-30) + slack, err


def geometry_of(cfg: dict) -> Conv2dGeometry:
    return Conv2dGeometry.of((cfg["n"], cfg["c_in"], *cfg["hw"]),
                             (cfg["c_out"], cfg["c_in"] // cfg["groups"], *cfg["k"]),
                             cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])


def out_hw(x_hw, k_hw, stride, padding, dilation):
    """PyTorch's output size, written out here rather than taken from the code under test."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(x_hw, k_hw, stride, padding, dilation))


def computes(algorithm: str | None, pass_: str, g: Conv2dGeometry) -> bool:
    """Whether a forced algorithm must compute this pass: tiled has no grad_weight and needs a
    transposable convolution (stride 1, padding within the kernel's extent); implicit needs one
    for grad_input."""
    transposable = g.stride == (1, 1) and all(
        p <= d * (k - 1) for p, d, k in zip(g.padding, g.dilation, g.kernel_hw))
    if algorithm == "tiled":
        return pass_ != "grad_weight" and transposable
    if algorithm == "implicit" and pass_ == "grad_input":
        return transposable
    return True


@st.composite
def conv_configs(draw: st.DrawFn, depthwise: bool = False, tiled: bool = False) -> dict:
    """A random conv: groups, channels per group, kernel up to 7x7 (non-square), per-axis
    stride / dilation, padding up to beyond the kernel, odd sizes, output size down to 1.
    `tiled`: what the tiled kernel computes (stride 1, padding within the kernel's extent),
    with channels per group on both sides of its tile sizes (8 and 32)."""
    if depthwise:
        groups, cg, og = draw(st.integers(1, 6)), 1, draw(st.integers(1, 5))
    elif tiled:
        groups, cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 20))
    else:
        groups, cg, og = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    cfg = {
        "n": draw(st.integers(1, 3)),
        "groups": groups,
        "c_in": groups * cg,
        "c_out": groups * og,
        "k": [],
        "stride": [],
        "padding": [],
        "dilation": [],
        "hw": [],
    }
    for _ in range(2):
        k, s, d = draw(st.integers(1, 7)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        s = 1 if tiled else s
        p = draw(st.integers(0, d * (k - 1) + (0 if tiled else 2)))  # up to past the extent
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # input size giving a 1-pixel output
        for key, v in zip(("k", "stride", "padding", "dilation"), (k, s, p, d), strict=True):
            cfg[key].append(v)
        cfg["hw"].append(draw(st.integers(smallest, smallest + 9)))
    for key in ("k", "stride", "padding", "dilation", "hw"):
        cfg[key] = tuple(cfg[key])
    return cfg


@st.composite
def row_tile_configs(draw: st.DrawFn) -> dict:
    """A conv the implicit kernel's row tiles compute (3x3, stride 1, padding 1, an image width
    they are made for, up to their lane count of output channels), with channels per group on
    both sides of the lane count for grad_input (whose output channels are the input's)."""
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 20)), draw(st.integers(1, implicit.ROW_LANES))
    return {
        "n": draw(st.integers(1, 3)), "groups": groups, "c_in": groups * cg,
        "c_out": groups * og, "k": (3, 3), "stride": (1, 1), "padding": (1, 1),
        "dilation": (1, 1),
        "hw": (draw(st.integers(1, 16)), draw(st.sampled_from(implicit.ROW_WIDTHS))),
    }


@st.composite
def conv_problems(draw: st.DrawFn, depthwise: bool = False, tiled: bool = False,
                  rows: bool = False) -> tuple:
    """(cfg, dtype, x, w, bias, grad_out) with possibly non-contiguous arrays."""
    cfg = draw(row_tile_configs() if rows else conv_configs(depthwise=depthwise, tiled=tiled))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    oh, ow = out_hw(cfg["hw"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"])
    x = draw(arrays((cfg["n"], cfg["c_in"], *cfg["hw"]), dtype))
    w = draw(arrays((cfg["c_out"], cfg["c_in"] // cfg["groups"], *cfg["k"]), dtype))
    bias = draw(st.none() | arrays((cfg["c_out"],), dtype))
    grad_out = draw(arrays((cfg["n"], cfg["c_out"], oh, ow), dtype))
    return cfg, dtype, x, w, bias, grad_out


def check_all_kernels(problem: tuple, algorithm: str | None) -> None:
    cfg, dtype, x, w, bias, gy = problem
    g = geometry_of(cfg)
    # Each output is a sum of `terms` products, rounded in `dtype` in some order: when the sum
    # cancels, no order is within rtol of the exact result, so the check also allows the
    # textbook bound for a sum of n products, n * u * sum |products| (Higham, Accuracy and
    # Stability, 3.1), against the reference evaluated in float64 (its |operands| give the
    # sum of |products|). A wrong tap or channel is off by a whole product, far above it.
    n_pix, (oh, ow) = cfg["n"], gy.shape[2:]
    kernel_terms = w.shape[2] * w.shape[3]
    passes = (
        ("forward", lambda: cpu.conv2d_forward(x, w, bias, g, algorithm),
         lambda a, b, c: reference.conv2d_forward(a, b, c, g), (x, w, bias),
         w.shape[1] * kernel_terms + 1),
        ("grad_input", lambda: cpu.conv2d_grad_input(gy, w, g, algorithm),
         lambda a, b: reference.conv2d_grad_input(a, b, g), (gy, w),
         w.shape[0] // cfg["groups"] * kernel_terms),
        ("grad_weight", lambda: cpu.conv2d_grad_weight(x, gy, g, algorithm),
         lambda a, b: reference.conv2d_grad_weight(a, b, g), (x, gy),
         n_pix * oh * ow),
    )
    for pass_, run, ref, operands, terms in passes:
        if not computes(algorithm, pass_, g):
            with pytest.raises(ValueError, match=f"algorithm '{algorithm}' (needs|has no)"):
                run()
            continue
        actual = run()
        exact = ref(*(None if a is None else a.astype(np.float64) for a in operands))
        size = ref(*(None if a is None else np.abs(a.astype(np.float64)) for a in operands))
        slack = terms * UNIT_ROUNDOFF[dtype] * np.linalg.norm(size.ravel())
        assert_close(actual, exact.astype(dtype), dtype, slack)


# --- the reference against independent computations ----------------------------------------


def naive_conv(x, w, b, stride, padding, dilation, groups):
    """The definition, one output element at a time."""
    n_img, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    oh, ow = out_hw((h, wd), (kh, kw), stride, padding, dilation)
    y = np.zeros((n_img, c_out, oh, ow))
    for n, o, r, q in itertools.product(range(n_img), range(c_out), range(oh), range(ow)):
        acc = b[o]
        for c, i, j in itertools.product(range(cg), range(kh), range(kw)):
            ih = r * stride[0] - padding[0] + i * dilation[0]
            iw = q * stride[1] - padding[1] + j * dilation[1]
            if 0 <= ih < h and 0 <= iw < wd:
                acc += w[o, c, i, j] * x[n, (o // og) * cg + c, ih, iw]
        y[n, o, r, q] = acc
    return y


@pytest.mark.parametrize(
    "groups, stride, padding, dilation",
    [(1, (1, 1), (0, 0), (1, 1)), (2, (2, 1), (1, 3), (1, 2)), (4, (1, 3), (4, 0), (2, 1))],
)
def test_reference_forward_matches_definition(groups, stride, padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((8, 4 // groups, 3, 2))
    b = rng.standard_normal(8)
    g = Conv2dGeometry.of(x.shape, w.shape, stride, padding, dilation, groups)
    y = reference.conv2d_forward(x, w, b, g)
    np.testing.assert_allclose(
        y, naive_conv(x, w, b, stride, padding, dilation, groups), rtol=1e-12, atol=1e-12
    )


@given(conv_configs())
def test_reference_gradients_are_adjoints(cfg):
    """<conv(x, w), g> = <x, grad_input(g, w)> = <w, grad_weight(x, g)> (conv is bilinear)."""
    rng = np.random.default_rng(1)
    geometry = geometry_of(cfg)
    x = rng.standard_normal((cfg["n"], cfg["c_in"], *cfg["hw"]))
    w = rng.standard_normal((cfg["c_out"], cfg["c_in"] // cfg["groups"], *cfg["k"]))
    y = reference.conv2d_forward(x, w, None, geometry)
    g = rng.standard_normal(y.shape)
    lhs = np.vdot(y, g)
    scale = np.linalg.norm(y) * np.linalg.norm(g) + 1e-300
    gx = reference.conv2d_grad_input(g, w, geometry)
    gw = reference.conv2d_grad_weight(x, g, geometry)
    assert gx.shape == x.shape and gw.shape == w.shape
    assert abs(np.vdot(x, gx) - lhs) <= 1e-12 * scale
    assert abs(np.vdot(w, gw) - lhs) <= 1e-12 * scale


# --- CPU kernels against the reference -------------------------------------------------------


@given(conv_problems(), st.sampled_from([None, *cpu.ALGORITHMS]))
def test_cpu_kernels_match_reference(problem, algorithm):
    check_all_kernels(problem, algorithm)


@given(conv_problems(depthwise=True), st.sampled_from([None, *cpu.ALGORITHMS]))
def test_cpu_kernels_match_reference_depthwise(problem, algorithm):
    check_all_kernels(problem, algorithm)


@given(conv_problems(tiled=True), st.sampled_from([tiled._BLOCK_COLUMNS, 8, 40]))
def test_tiled_kernels_match_reference(problem, block_columns):
    """Every configuration the tiled kernel takes, with blocks of several images, of one
    image and of a band of rows (small `block_columns`)."""
    with mock.patch.object(tiled, "_BLOCK_COLUMNS", block_columns):
        check_all_kernels(problem, "tiled")


@given(conv_problems(tiled=True), st.sampled_from([implicit._IMAGES, 2, 1]))
def test_implicit_kernels_match_reference(problem, images):
    """Every configuration the implicit-GEMM kernel takes, in blocks of up to 8, 2 and 1 images
    (a smaller last block has its own plan)."""
    with mock.patch.object(implicit, "_IMAGES", images):
        check_all_kernels(problem, "implicit")


@given(conv_problems(rows=True))
def test_implicit_row_tiles_match_reference(problem):
    g = geometry_of(problem[0])
    assert implicit.rows_fit(g) and cpu.ALGORITHMS["implicit"].defaults("forward", g) == {
        "tiles": "rows"}
    check_all_kernels(problem, "implicit")  # forced, it runs row tiles wherever they fit


def test_forced_parameters_are_checked():
    g = Conv2dGeometry.of((1, 4, 9, 9), (4, 4, 3, 3), padding=1)  # 9 wide: no row tiles
    x, w = np.ones(g.input_shape), np.ones(g.weight_shape)
    with pytest.raises(ValueError, match=r"cannot run forward with tiles='rows'.*\('planned',\)"):
        cpu.conv2d_forward(x, w, None, g, Choice("implicit", {"tiles": "rows"}, ""))
    with pytest.raises(ValueError, match="has no parameter 'tiles' for grad_weight"):
        cpu.conv2d_grad_weight(x, np.ones(g.output_shape), g,
                               Choice("implicit", {"tiles": "planned"}, ""))


@pytest.mark.parametrize("algorithm", cpu.ALGORITHMS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "c_in, c_out, groups, stride, padding, dilation",
    [
        (6, 6, 6, (2, 2), (2, 2), (2, 2)),  # depthwise, stride and dilation 2 (MobileNet-like)
        (4, 12, 4, (3, 2), (1, 0), (2, 3)),  # depthwise multiplier 3
        (8, 8, 2, (2, 2), (1, 1), (1, 1)),  # ResNeXt-like strided grouped conv
        (3, 5, 1, (1, 1), (9, 8), (1, 1)),  # dense, padding far past the kernel
    ],
)
def test_cpu_kernels_explicit_cases(
    algorithm, dtype, c_in, c_out, groups, stride, padding, dilation
):
    rng = np.random.default_rng(2)
    cfg = {
        "n": 2,
        "groups": groups,
        "c_in": c_in,
        "c_out": c_out,
        "k": (3, 3),
        "hw": (11, 9),
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
    }
    oh, ow = out_hw(cfg["hw"], cfg["k"], stride, padding, dilation)
    x = rng.standard_normal((2, c_in, 11, 9)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups, 3, 3)).astype(dtype)
    gy = rng.standard_normal((2, c_out, oh, ow)).astype(dtype)
    check_all_kernels((cfg, dtype, x, w, rng.standard_normal(c_out).astype(dtype), gy), algorithm)


@pytest.mark.parametrize("algorithm", cpu.ALGORITHMS)
@pytest.mark.parametrize(
    "n, c_in, c_out, groups, kernel, stride, padding, hw",
    [
        (3, 12, 10, 2, (3, 3), (1, 1), (1, 1), (9, 8)),  # 6 in / 5 out per group: leftovers
        (2, 6, 4, 2, (1, 1), (1, 1), (0, 0), (33, 32)),  # pointwise, one image per GEMM
        (1, 6, 4, 2, (1, 1), (1, 1), (0, 0), (5, 7)),  # pointwise, a single small image
        (3, 16, 8, 2, (1, 1), (2, 2), (0, 0), (9, 8)),  # strided pointwise, one batched GEMM
        (2, 8, 16, 1, (1, 1), (2, 1), (0, 0), (66, 34)),  # strided pointwise, one image per GEMM
        (3, 4, 6, 2, (3, 2), (2, 1), (1, 0), (65, 33)),  # large images: one per GEMM
        (2, 4, 8, 1, (2, 2), (2, 2), (0, 0), (8, 8)),  # strided, no padding, no overlap
        (2, 4, 8, 2, (3, 3), (1, 1), (1, 1), (40, 130)),  # images split into row blocks
    ],
)
def test_cpu_kernels_channel_leftovers_and_gemm_chunking(
    algorithm, n, c_in, c_out, groups, kernel, stride, padding, hw
):
    rng = np.random.default_rng(4)
    cfg = {
        "n": n,
        "groups": groups,
        "c_in": c_in,
        "c_out": c_out,
        "k": kernel,
        "hw": hw,
        "stride": stride,
        "padding": padding,
        "dilation": (1, 1),
    }
    oh, ow = out_hw(hw, kernel, stride, padding, (1, 1))
    x = rng.standard_normal((n, c_in, *hw))
    w = rng.standard_normal((c_out, c_in // groups, *kernel))
    gy = rng.standard_normal((n, c_out, oh, ow))
    check_all_kernels((cfg, "float64", x, w, rng.standard_normal(c_out), gy), algorithm)


def test_grad_weight_is_deterministic_across_thread_counts():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 8, 13, 13)).astype("float32")
    gy = rng.standard_normal((5, 8, 13, 13)).astype("float32")
    g = Conv2dGeometry.of(x.shape, (8, 4, 3, 3), 1, 1, 1, 2)
    threads = numba.get_num_threads()
    try:
        results = []
        for n in sorted({1, threads}):
            numba.set_num_threads(n)
            results += [cpu.conv2d_grad_weight(x, gy, g) for _ in range(2)]
    finally:
        numba.set_num_threads(threads)
    assert all(np.array_equal(results[0], r) for r in results[1:])
    assert_close(results[0], reference.conv2d_grad_weight(x, gy, g), "float32")


# --- algorithm selection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "c_in, c_out, groups, kernel, expected",
    [
        (128, 128, 32, 3, "direct"),  # ResNeXt-50 stage 1: 4 channels per group
        (256, 256, 32, 3, "tiled"),  # ResNeXt-50 stage 2: 8 channels per group
        (1024, 1024, 32, 3, "implicit"),  # ResNeXt-50 stage 4: 32 channels per group
        (512, 512, 8, 3, "implicit"),  # 64 channels per group on 16x16 images
        # ResNeXt-50 stage 3 (16 channels per group) with AVX-512: half a lane tile
        (32 * (implicit.TILE.lanes // 2), 32 * (implicit.TILE.lanes // 2), 32, 3, "tiled"),
        (144, 144, 144, 3, "direct"),  # depthwise
        (64, 192, 64, 3, "direct"),  # depthwise multiplier 3
        (3, 64, 1, 7, "direct"),  # an RGB stem: 3 input channels
        (128, 128, 1, 3, "gemm"),  # dense
        (256, 128, 1, 1, "gemm"),  # pointwise
        (64, 64, 16, 1, "direct"),  # pointwise with 4 channels per group
    ],
)
def test_conv2d_algorithm_choice(rules_only, c_in, c_out, groups, kernel, expected):
    g = Conv2dGeometry.of((8, c_in, 16, 16), (c_out, c_in // groups, kernel, kernel),
                          padding=kernel // 2, groups=groups)
    choice = cpu.conv2d_algorithm(g).forward
    assert choice.algorithm == expected and choice.source == "rule"
    assert isinstance(choice.reason, str) and len(choice.reason) > 20


ROW_LANES, ROW_WIDTH = implicit.ROW_LANES, implicit.ROW_WIDTHS[-1]


@pytest.mark.parametrize(
    "cg, hw, rows",
    [*((ROW_LANES, w, True) for w in implicit.ROW_WIDTHS), (rules.ROW_MIN_CHANNELS, ROW_WIDTH, True),
     (ROW_LANES // 2, ROW_WIDTH, False), (ROW_LANES, 16, False), (ROW_LANES, 28, False)],
)
def test_row_tiles_are_chosen_for_their_widths_and_channels(rules_only, cg, hw, rows):
    """ResNeXt-50's 3x3 convolutions of 16 channels per group on 14x14 and 7x7 images (with
    AVX-512; a row tile's lanes are one vector register of the target)."""
    g = Conv2dGeometry.of((8, 32 * cg, hw, hw), (32 * cg, cg, 3, 3), 1, 1, 1, 32)
    for choice in (cpu.conv2d_algorithm(g).forward, cpu.conv2d_algorithm(g).grad_input):
        assert (choice.algorithm == "implicit") == rows
        assert (choice.params.get("tiles") == "rows") == rows
        assert ("row tiles" in choice.reason) == rows


def test_tiled_is_chosen_for_stride_1_only(rules_only):
    x_shape, w_shape = (8, 256, 16, 16), (256, 8, 3, 3)
    choose = lambda s, p: cpu.conv2d_algorithm(  # noqa: E731
        Conv2dGeometry.of(x_shape, w_shape, s, p, 1, 32)).forward.algorithm
    assert choose(1, 1) == "tiled"
    assert choose(2, 1) == "direct"
    assert choose(1, 3) == "direct"
    g = Conv2dGeometry.of(x_shape, w_shape, 2, 1, 1, 32)
    with pytest.raises(ValueError, match="algorithm 'tiled' needs stride 1"):
        cpu.conv2d_forward(np.ones(x_shape), np.ones(w_shape), None, g, algorithm="tiled")
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


def test_unknown_algorithm_is_rejected():
    x, w = np.ones((1, 2, 4, 4)), np.ones((2, 2, 3, 3))
    g = Conv2dGeometry.of(x.shape, w.shape)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        cpu.conv2d_forward(x, w, None, g, algorithm="winograd")
