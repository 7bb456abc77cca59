"""What the convolution kernel tests share: random problems, the strategies that reach each
algorithm's regime, and the check of every pass against `kernels/reference.py`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from minitorch_resnext.kernels import cpu, reference
from minitorch_resnext.kernels.cpu import implicit, tiled
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.kernels.selection import PASSES, Choice
from minitorch_resnext.testing.strategies import arrays

RTOL = {"float32": 1e-5, "float64": 1e-12}
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}
DTYPES = ("float32", "float64")

# Channels per group on both sides of every size the kernels block channels by: the direct
# kernel's four per inner loop, the tiled kernel's rows, the implicit kernel's row tiles and
# narrow grad_weight tile, and its 32 lanes, once and twice. A kernel that mishandles a
# partial or a second tile is wrong on one side of these.
TILE_SIZES = (4, tiled.MR, implicit.ROW_LANES, implicit.NARROW_TILE.lanes, implicit.TILE.lanes,
              implicit.WEIGHT_TILE.lanes, 2 * implicit.TILE.lanes)
CHANNEL_EDGES = tuple(sorted({1, implicit.TILE.lanes + tiled.MR}
                             | {s + d for s in TILE_SIZES for d in (-1, 0, 1)}))


def config(n: int, groups: int, cg: int, og: int, k: tuple[int, int] = (3, 3),
           hw: tuple[int, int] = (5, 5), stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1)) -> dict:
    """A convolution as the tests describe it: `cg` input and `og` output channels per group."""
    return {"n": n, "groups": groups, "c_in": groups * cg, "c_out": groups * og, "k": k,
            "hw": hw, "stride": stride, "padding": padding, "dilation": dilation}


def geometry_of(cfg: dict) -> Conv2dGeometry:
    return Conv2dGeometry.of((cfg["n"], cfg["c_in"], *cfg["hw"]),
                             (cfg["c_out"], cfg["c_in"] // cfg["groups"], *cfg["k"]),
                             cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])


def out_hw(x_hw, k_hw, stride, padding, dilation) -> tuple[int, int]:
    """PyTorch's output size, written out here rather than taken from the code under test."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(x_hw, k_hw, stride, padding, dilation))


def random_problem(cfg: dict, dtype: str, seed: int = 0, bias: bool = True) -> tuple:
    """(cfg, dtype, x, w, bias, grad_out) of standard normal values."""
    rng = np.random.default_rng(seed)
    oh, ow = out_hw(cfg["hw"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"])
    x = rng.standard_normal((cfg["n"], cfg["c_in"], *cfg["hw"])).astype(dtype)
    w = rng.standard_normal((cfg["c_out"], cfg["c_in"] // cfg["groups"], *cfg["k"])).astype(dtype)
    b = rng.standard_normal(cfg["c_out"]).astype(dtype) if bias else None
    gy = rng.standard_normal((cfg["n"], cfg["c_out"], oh, ow)).astype(dtype)
    return cfg, dtype, x, w, b, gy


def computes(algorithm: str | Choice | None, pass_: str, g: Conv2dGeometry) -> bool:
    """Whether a forced algorithm must compute this pass: tiled has no grad_weight and its
    grad_input needs a transposable convolution (stride 1, padding within the kernel's extent);
    depthwise needs
    one input channel per group, and for grad_input also one output channel per group and a
    transposable convolution; pointwise has no grad_weight and needs a 1x1 kernel without
    padding; the others compute every pass of every convolution."""
    name = algorithm.algorithm if isinstance(algorithm, Choice) else algorithm
    transposable = g.stride == (1, 1) and all(
        p <= d * (k - 1) for p, d, k in zip(g.padding, g.dilation, g.kernel_hw))
    if name == "tiled":
        return pass_ == "forward" or pass_ == "grad_input" and transposable
    if name == "depthwise":
        one_input = g.in_channels == g.groups
        if pass_ == "grad_input":
            return one_input and g.out_channels == g.groups and transposable
        return one_input
    if name == "pointwise":
        return pass_ != "grad_weight" and g.kernel_hw == (1, 1) and g.padding == (0, 0)
    return True


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str, slack: float = 0.0) -> None:
    """Same shape and dtype, and ||actual - expected|| <= rtol * ||expected|| + slack (norm-wise).
    `slack` is for sums that cancel (see `check_all_kernels`)."""
    assert actual.shape == expected.shape
    assert actual.dtype == np.dtype(dtype)
    err = np.linalg.norm((actual - expected).ravel())
    assert err <= RTOL[dtype] * max(np.linalg.norm(expected.ravel()), 1e-30) + slack, err


def run_pass(pass_: str, problem: tuple, algorithm: str | Choice | None) -> np.ndarray:
    """One pass of `algorithm` (None: the default choice) on `problem`."""
    cfg, _, x, w, bias, gy = problem
    g = geometry_of(cfg)
    if pass_ == "forward":
        return cpu.conv2d_forward(x, w, bias, g, algorithm)
    if pass_ == "grad_input":
        return cpu.conv2d_grad_input(gy, w, g, algorithm)
    return cpu.conv2d_grad_weight(x, gy, g, algorithm)


def assert_matches_reference(pass_: str, actual: np.ndarray, problem: tuple) -> None:
    """`actual`, the pass's result on `problem`, is the reference's up to rounding.

    Each output is a sum of `terms` products, rounded in `dtype` in some order: when the sum
    cancels, no order is within rtol of the exact result, so the check also allows the
    textbook bound for a sum of n products, n * u * sum |products| (Higham, Accuracy and
    Stability, 3.1), against the reference evaluated in float64 (its |operands| give the
    sum of |products|). A wrong tap or channel is off by a whole product, far above it.
    """
    cfg, dtype, x, w, bias, gy = problem
    g = geometry_of(cfg)
    taps = g.taps
    ref, operands, terms = {
        "forward": (lambda a, b, c: reference.conv2d_forward(a, b, c, g), (x, w, bias),
                    g.in_per_group * taps + 1),
        "grad_input": (lambda a, b: reference.conv2d_grad_input(a, b, g), (gy, w),
                       g.out_per_group * taps),
        "grad_weight": (lambda a, b: reference.conv2d_grad_weight(a, b, g), (x, gy),
                        g.batch * gy.shape[2] * gy.shape[3]),
    }[pass_]
    exact = ref(*(None if a is None else a.astype(np.float64) for a in operands))
    size = ref(*(None if a is None else np.abs(a.astype(np.float64)) for a in operands))
    slack = terms * UNIT_ROUNDOFF[dtype] * np.linalg.norm(size.ravel())
    assert_close(actual, exact.astype(dtype), dtype, slack)


def check_all_kernels(problem: tuple, algorithm: str | Choice | None) -> None:
    """Every pass of `algorithm` (None: the default choice) against the reference, or the
    ValueError of a pass it must refuse."""
    g = geometry_of(problem[0])
    for pass_ in PASSES:
        if computes(algorithm, pass_, g):
            assert_matches_reference(pass_, run_pass(pass_, problem, algorithm), problem)
            continue
        name = algorithm.algorithm if isinstance(algorithm, Choice) else algorithm
        with pytest.raises(ValueError, match=f"algorithm '{name}' (needs|has no)"):
            run_pass(pass_, problem, algorithm)


# --- strategies ------------------------------------------------------------------------------


def _channels(draw: st.DrawFn, kind: str) -> tuple[int, int, int]:
    """(groups, input, output channels per group) for a strategy `kind`."""
    if kind.startswith("depthwise"):
        return draw(st.integers(1, 6)), 1, draw(st.integers(1, 5))
    if kind == "direct-same":  # read="stream" takes whole blocks of four channels
        in_place = st.sampled_from([4, 8, 12, 16])
        return draw(st.integers(1, 3)), draw(in_place), draw(in_place)
    if kind == "general":
        return draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    largest = {"direct": 17, "tiled": 40, "gemm": 40}.get(kind, max(CHANNEL_EDGES))
    edges = st.sampled_from([c for c in CHANNEL_EDGES if c <= largest])
    return draw(st.integers(1, 2 if kind == "implicit" else 3)), draw(edges), draw(edges)


@st.composite
def conv_configs(draw: st.DrawFn, kind: str = "general") -> dict:
    """A random convolution for one algorithm's regime.

    general / depthwise: few channels per group, kernels up to 7x7 (non-square), per-axis
    stride and dilation up to 3 (depthwise-s1: stride 1, where the depthwise kernel's grad_input
    is a forward convolution), padding up to past the kernel's extent, output down to 1x1.
    depthwise-same: 3x3 at stride 1 with padding = dilation (1-3 per axis), images from one
    pixel more than the padding on both sides (where the depthwise kernel can write "stream").
    direct-same: the same convolutions with 4 to 16 channels per group, multiples of 4 (where
    the direct kernel can read x in place, read="stream").
    direct / tiled / implicit / gemm / pointwise: channels per group from CHANNEL_EDGES (up to
    17, 40, 65, 40 and 65); kernels up to 3x3 when there are many channels (their cost grows
    with both);
    tiled and implicit: stride 1 and padding within the extent half of the time (ResNeXt's 3x3
    convolutions, and tiled's grad_input), beside strided ones (tiled: its forward on stride
    phases; implicit: grad_input reads grad_out at every stride-th pixel); gemm: 1x1
    without padding half of the time (its batched-GEMM path, strided or not); pointwise: 1x1
    without padding, strided or not, images whose pixels fill one to several strips of
    pointwise.NR columns (the strips run across images).
    """
    groups, cg, og = _channels(draw, kind)
    if kind in ("depthwise-same", "direct-same"):
        d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        hw = tuple(draw(st.integers(2 * di + 1, 2 * di + 10)) for di in d)
        return config(draw(st.integers(1, 3)), groups, cg, og, (3, 3), hw, (1, 1), d, d)
    pointwise = kind == "pointwise" or (kind == "gemm" and draw(st.booleans()))
    unit_stride = kind == "depthwise-s1" or (kind in ("tiled", "implicit") and draw(st.booleans()))
    within = kind in ("tiled", "implicit") and unit_stride  # padding <= extent
    max_k = 1 if pointwise else 7 if max(cg, og) <= 9 else 3
    axes = []
    for _ in range(2):
        k, s, d = draw(st.integers(1, max_k)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        s = 1 if unit_stride else s
        p = 0 if pointwise else draw(st.integers(0, d * (k - 1) + (0 if within else 2)))
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # input size giving a 1-pixel output
        size = draw(st.integers(smallest, smallest + (9 if max(cg, og) <= 17 else 5)))
        axes.append((k, size, s, p, d))
    k, hw, stride, padding, dilation = (tuple(axis) for axis in zip(*axes))
    return config(draw(st.integers(1, 3)), groups, cg, og, k, hw, stride, padding, dilation)


@st.composite
def row_tile_configs(draw: st.DrawFn) -> dict:
    """A conv the implicit kernel's row tiles compute (3x3, stride 1, padding 1, an image width
    of one to three of their segments), with channels per group in one, two and three registers
    of lanes on either side (grad_input's output channels are the input's)."""
    lanes = implicit.ROW_LANES
    cg, og = (draw(st.integers(1, 2 * lanes + 2)) for _ in range(2))
    width = draw(st.sampled_from(implicit.ROW_SEGMENTS)) * draw(st.integers(1, 3))
    hw = (draw(st.integers(1, 16)), width)
    return config(draw(st.integers(1, 3)), draw(st.integers(1, 3)), cg, og, hw=hw)


@st.composite
def conv_problems(draw: st.DrawFn, kind: str = "general") -> tuple:
    """(cfg, dtype, x, w, bias, grad_out), the arrays possibly non-contiguous, bias on or off;
    `kind` is a `conv_configs` kind or 'rows' (`row_tile_configs`)."""
    cfg = draw(row_tile_configs() if kind == "rows" else conv_configs(kind))
    dtype = draw(st.sampled_from(DTYPES))
    oh, ow = out_hw(cfg["hw"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"])
    x = draw(arrays((cfg["n"], cfg["c_in"], *cfg["hw"]), dtype))
    w = draw(arrays((cfg["c_out"], cfg["c_in"] // cfg["groups"], *cfg["k"]), dtype))
    bias = draw(st.none() | arrays((cfg["c_out"],), dtype))
    grad_out = draw(arrays((cfg["n"], cfg["c_out"], oh, ow), dtype))
    return cfg, dtype, x, w, bias, grad_out
