"""Grouped-convolution kernels: the NumPy reference against independent computations, and the
Numba CPU kernels (every algorithm) against the reference on random configurations drawn from
each algorithm's regime. Fixed cases of each regime, ResNeXt's own shapes and determinism are
in test_conv_regimes.py; the choice among the algorithms in test_conv_selection.py."""

from __future__ import annotations

import itertools
from unittest import mock

import numpy as np
import pytest
from conv_checks import (
    DTYPES,
    RTOL,
    assert_close,
    assert_matches_reference,
    check_all_kernels,
    computes,
    config,
    conv_configs,
    conv_problems,
    geometry_of,
    out_hw,
    random_problem,
    run_pass,
)
from hypothesis import assume, given
from hypothesis import strategies as st

from minitorch_resnext.kernels import cpu, reference
from minitorch_resnext.kernels.cpu import direct, gemm, implicit, memory, pointwise, tiled
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.kernels.selection import Choice

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


@given(conv_problems("depthwise"), st.sampled_from([None, *cpu.ALGORITHMS]))
def test_cpu_kernels_match_reference_depthwise(problem, algorithm):
    check_all_kernels(problem, algorithm)


@given(conv_problems("depthwise") | conv_problems("depthwise-s1"),
       st.sampled_from(["rows", "plane"]))
def test_depthwise_kernels_match_reference(problem, write):
    """Both ways of writing the outputs, on kernels of 1 to 49 taps (passes of TAPS, the last
    padded with zero weights), strided or at stride 1 (where grad_input is the same loop)."""
    g, forced = geometry_of(problem[0]), Choice("depthwise", {"write": write}, "")
    for pass_ in ("forward", "grad_input"):
        if computes("depthwise", pass_, g):
            assert_matches_reference(pass_, run_pass(pass_, problem, forced), problem)
    check_all_kernels(problem, "depthwise")  # grad_weight, and the passes it must refuse


@given(conv_problems("depthwise-same"))
def test_depthwise_stream_matches_reference(problem):
    """write="stream" and grad_weight's read="stream" read x in place: one loop over each plane,
    the forward's (and grad_input's) with masked loads where a tap leaves the image and only
    the vectors of the last step that hold pixels of the plane; grad_weight's with masks on
    the columns whose taps wrap around a row's end, then the edge rows and the pixels on
    either side of the loop (and grad_weight's "buffers" on the same problems); dilations
    1-3."""
    g = geometry_of(problem[0])
    for pass_, params in (("forward", {"write": "stream"}), ("grad_input", {"write": "stream"}),
                          ("grad_weight", {"read": "stream"}), ("grad_weight", {"read": "buffers"})):
        if computes("depthwise", pass_, g):
            forced = Choice("depthwise", params, "")
            assert_matches_reference(pass_, run_pass(pass_, problem, forced), problem)


def test_depthwise_stream_moves_nan_and_inf_of_its_input_as_the_definition():
    """"stream" masks the taps that leave the image (across a row's end, above the first row,
    below the last): a NaN or Inf next to them must reach only the outputs whose taps see it
    (finite weights; with a NaN weight the padding's products count, and it writes "rows")."""
    g = Conv2dGeometry.of((1, 2, 6, 7), (2, 1, 3, 3), padding=1, groups=2)
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(g.input_shape), rng.standard_normal(g.weight_shape)
    x[0, 0, 2, -1], x[0, 1, 3, 0], x[0, 0, 0, 0] = np.nan, np.inf, -np.inf
    stream = Choice("depthwise", {"write": "stream"}, "")
    for got, want in ((cpu.conv2d_forward(x, w, None, g, stream),
                       reference.conv2d_forward(x, w, None, g)),
                      (cpu.conv2d_grad_input(x, w, g, stream),
                       reference.conv2d_grad_input(x, w, g))):
        assert np.isfinite(want).any() and not np.isfinite(want).all()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


@given(conv_problems("direct-same"), st.sampled_from(["stream", "buffers"]))
def test_direct_reads_in_place_or_from_buffers_as_the_reference(problem, read):
    """read="stream" reads x in place: one loop over each plane, all nine kernel positions of
    four input channels summed in registers for four outputs, masked loads where a tap leaves
    the image (kernel rows at the top and bottom rows, columns across a row's end), the last
    step past the plane masked off; more than four input channels add to y; grad_input is the
    same forward on the transposed geometry. Dilations 1-3, 4-16 channels per group."""
    forced = Choice("direct", {"read": read}, "")
    for pass_ in ("forward", "grad_input"):
        assert_matches_reference(pass_, run_pass(pass_, problem, forced), problem)


def test_direct_stream_moves_nan_and_inf_of_its_input_as_the_definition():
    """"stream" masks the taps that leave the image (across a row's end, above the first row,
    below the last): a NaN or Inf next to them must reach only the outputs whose taps see it
    (finite weights; with an Inf weight the padding's products count, and it reads "buffers")."""
    g = Conv2dGeometry.of((2, 8, 6, 7), (8, 4, 3, 3), padding=1, groups=2)
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(g.input_shape), rng.standard_normal(g.weight_shape)
    x[0, 1, 2, -1], x[1, 5, 3, 0], x[0, 4, 0, 0] = np.nan, np.inf, -np.inf
    x[0, 2, -1, 3], x[1, 6, 0, 2] = np.nan, np.inf  # a plane's last row, the next one's first
    stream = Choice("direct", {"read": "stream"}, "")
    for w_ in (w, np.where(np.arange(w.size).reshape(w.shape) == 7, np.inf, w)):
        got, want = cpu.conv2d_forward(x, w_, None, g, stream), reference.conv2d_forward(x, w_,
                                                                                      None, g)
        assert np.isfinite(want).any() and not np.isfinite(want).all()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["direct", "depthwise"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape, dilation, whole_vectors", [
    ((2, 8, 16, 16), 1, True),   # a few edge steps at each end of a plane, the rest interior
    ((1, 8, 12, 32), 2, True),   # two rows each side for kernel rows 0 and 2
    ((1, 4, 8, 8), 1, True),     # no interior step (AVX-512, float32: two steps in all)
    ((2, 8, 9, 7), 1, False),    # planes of 63 values: written through the caches
])
def test_stream_writes_large_outputs_past_the_caches(algorithm, x_shape, dilation,
                                                     whole_vectors, dtype, monkeypatch):
    """An output larger than the last-level cache (here the cache is said to hold nothing) is
    written with non-temporal stores where each plane starts on a vector, the same values as
    the definition; forward and grad_input (the same forward, transposed), by the direct
    kernel (four channels per group) and the depthwise one."""
    monkeypatch.setattr(memory, "last_level_cache_bytes", lambda: 0)
    channels = x_shape[1]
    w_shape, groups = (((8, 4, 3, 3), channels // 4) if algorithm == "direct"
                       else ((channels, 1, 3, 3), channels))
    g = Conv2dGeometry.of(x_shape, w_shape, padding=dilation, dilation=dilation, groups=groups)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(g.input_shape, dtype), rng.standard_normal(g.weight_shape, dtype)
    b = rng.standard_normal(g.out_channels, dtype)
    gy = rng.standard_normal(g.output_shape, dtype)
    y = memory.empty_aligned(g.output_shape, np.dtype(dtype))
    assert direct.bypasses_caches(y) == whole_vectors
    assert not direct.bypasses_caches(memory.empty_aligned((y.size + 1,), y.dtype)[1:]
                                      .reshape(y.shape))  # not on a vector: cached stores
    stream = Choice(algorithm, {"read" if algorithm == "direct" else "write": "stream"}, "")
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == "float64" else {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(cpu.conv2d_forward(x, w, b, g, stream),
                               reference.conv2d_forward(x, w, b, g), **tol)
    np.testing.assert_allclose(cpu.conv2d_grad_input(gy, w, g, stream),
                               reference.conv2d_grad_input(gy, w, g), **tol)


def test_outputs_start_on_a_cache_line_and_the_cache_size_is_read():
    """The CPU passes' outputs start on a cache line (non-temporal stores need it), and the
    last-level cache is at least a megabyte (sysfs) or the stated default."""
    g = Conv2dGeometry.of((1, 3, 5, 5), (6, 3, 3, 3))
    rng = np.random.default_rng(6)
    for _ in range(4):
        y = cpu.conv2d_forward(rng.standard_normal(g.input_shape, np.float32),
                               rng.standard_normal(g.weight_shape, np.float32), None, g)
        assert y.ctypes.data % memory.CACHE_LINE_BYTES == 0 and y.flags.c_contiguous
    assert memory.last_level_cache_bytes() >= 1 << 20


@given(conv_problems("direct"))
def test_direct_kernels_match_reference(problem):
    """Channels per group on both sides of the direct kernel's blocks of four."""
    check_all_kernels(problem, "direct")


@given(conv_problems("tiled"), st.sampled_from([tiled._BLOCK_COLUMNS, 8, 40]))
def test_tiled_kernels_match_reference(problem, block_columns):
    """Every configuration the tiled kernel takes (strided or padded past the kernel's extent:
    the forward, on stride phases), channels per group on both sides of its tile sizes, with
    blocks of several images, of one image and of a band of rows (small `block_columns`)."""
    with mock.patch.object(tiled, "_BLOCK_COLUMNS", block_columns):
        check_all_kernels(problem, "tiled")


@given(conv_problems("implicit"), st.sampled_from([implicit._IMAGES, 2, 1]),
       st.sampled_from([implicit._WEIGHT_CHUNK_BYTES, 1, 1000]))
def test_implicit_kernels_match_reference(problem, images, chunk_bytes):
    """Every configuration the implicit-GEMM kernel takes, channels per group on both sides of
    one and two lane tiles, in blocks of up to 8, 2 and 1 images (a smaller last block has
    its own plan); grad_weight over its blocks whole, pixel by pixel (`chunk_bytes` 1) and in
    chunks of a few pixels, some of them with no step of a tap's list."""
    with (mock.patch.object(implicit, "_IMAGES", images),
          mock.patch.object(implicit, "_WEIGHT_CHUNK_BYTES", chunk_bytes)):
        check_all_kernels(problem, "implicit")


@given(conv_problems("rows"))
def test_implicit_row_tiles_match_reference(problem):
    g = geometry_of(problem[0])
    assert implicit.rows_fit(g) and cpu.ALGORITHMS["implicit"].defaults("forward", g) == {
        "tiles": "rows"}
    check_all_kernels(problem, "implicit")  # forced, it runs row tiles wherever they fit


@given(conv_problems("gemm"), st.sampled_from([gemm._GEMM_COLUMNS, 16]))
def test_gemm_kernels_match_reference(problem, gemm_columns):
    """1x1 convolutions half of the time (one batched GEMM, strided or not), in chunks of
    images sized for 1024 and for 16 columns."""
    with mock.patch.object(gemm, "_GEMM_COLUMNS", gemm_columns):
        check_all_kernels(problem, "gemm")


@given(conv_problems("pointwise"), st.sampled_from([pointwise._PANEL_BYTES, 1]))
def test_pointwise_kernels_match_reference(problem, panel_bytes):
    """1x1 convolutions at strides 1 to 3, output channels on both sides of the tiles' rows,
    strips of columns that span images and a last one partly filled, in panels of as many
    strips as fit and of one strip each (`panel_bytes` 1)."""
    with mock.patch.object(pointwise, "_PANEL_BYTES", panel_bytes):
        check_all_kernels(problem, "pointwise")


@given(conv_problems("pointwise") | conv_problems(), st.sampled_from([None, *cpu.ALGORITHMS]),
       st.booleans(), st.booleans())
def test_forward_epilogue_matches_reference(problem, algorithm, add, relu):
    """relu(conv + residual), fused into the forward (in the pointwise kernel's tiles, a pass
    after the others): the reference's in float64, and in float32 bit for bit the unfused
    forward followed by the addition and the ReLU, which compute the same float operations."""
    cfg, dtype, x, w, bias, gy = problem
    g = geometry_of(cfg)
    assume(computes(algorithm, "forward", g))
    residual = gy + 0.5 if add else None  # an array of y's shape, shifted so some sums cancel
    fused = cpu.conv2d_forward(x, w, bias, g, algorithm, residual=residual, relu=relu)
    expected = reference.conv2d_forward(x, w, bias, g, residual=residual, relu=relu)
    assert_close(fused, expected, dtype, slack=RTOL[dtype] * np.linalg.norm(gy.ravel()))
    unfused = cpu.conv2d_forward(x, w, bias, g, algorithm) + (0 if residual is None else residual)
    assert np.array_equal(fused, np.maximum(unfused, 0) if relu else unfused)


def test_forward_epilogue_keeps_nan_and_checks_the_residual():
    """A NaN reaches the output through the ReLU, as numpy.maximum keeps it; a residual of
    another shape or dtype is refused before the kernel runs."""
    g = Conv2dGeometry.of((2, 16, 6, 6), (32, 16, 1, 1))
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(g.input_shape), rng.standard_normal(g.weight_shape)
    residual = np.full(g.output_shape, -1e9)
    residual[1, 3, 2, 4] = np.nan
    for algorithm in ("pointwise", "gemm"):
        y = cpu.conv2d_forward(x, w, None, g, algorithm, residual=residual, relu=True)
        assert np.isnan(y[1, 3, 2, 4]) and np.isnan(y).sum() == 1
        assert (np.nan_to_num(y) == 0).all()
    with pytest.raises(ValueError, match="residual has shape"):
        cpu.conv2d_forward(x, w, None, g, residual=residual[:1])
    with pytest.raises(TypeError, match="residual dtype float32"):
        cpu.conv2d_forward(x, w, None, g, residual=residual.astype(np.float32))


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
    cfg = config(2, groups, c_in // groups, c_out // groups, (3, 3), (11, 9), stride, padding,
                 dilation)
    check_all_kernels(random_problem(cfg, dtype, seed=2), algorithm)


@pytest.mark.parametrize("algorithm", cpu.ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES)
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
    algorithm, dtype, n, c_in, c_out, groups, kernel, stride, padding, hw
):
    cfg = config(n, groups, c_in // groups, c_out // groups, kernel, hw, stride, padding)
    check_all_kernels(random_problem(cfg, dtype, seed=4), algorithm)


def test_unknown_algorithm_is_rejected():
    x, w = np.ones((1, 2, 4, 4)), np.ones((2, 2, 3, 3))
    g = Conv2dGeometry.of(x.shape, w.shape)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        cpu.conv2d_forward(x, w, None, g, algorithm="winograd")
