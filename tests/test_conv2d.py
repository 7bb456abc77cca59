"""F.conv2d: argument handling and validation, forward against the NumPy reference, and
gradients (input, weight, bias) against central differences."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext.functional.conv import conv2d, conv2d_algorithm
from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.cpu import blas_threads, conv
from minitorch_resnext.kernels.cpu import rules as cpu_rules
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.testing import gradcheck
from minitorch_resnext.testing.strategies import arrays


def t(shape, dtype="float64", requires_grad=False, device="cpu"):
    rng = np.random.default_rng(sum(shape))
    data = rng.standard_normal(shape).astype(dtype)
    return mr.Tensor(data, requires_grad=requires_grad, device=device)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, error, match",
    [
        (
            (1, 6, 5, 5),
            (4, 3, 3, 3),
            {"groups": 4},
            ValueError,
            r"input channels \(6\).*groups \(4\)",
        ),
        (
            (1, 6, 5, 5),
            (4, 2, 3, 3),
            {"groups": 3},
            ValueError,
            r"output channels \(4\).*groups \(3\)",
        ),
        ((1, 6, 5, 5), (6, 3, 3, 3), {"groups": 3}, ValueError, r"weight shape .* expects 9 input"),
        ((1, 6, 5, 5), (6, 6, 3, 3), {"groups": 0}, ValueError, r"groups must be a positive int"),
        ((1, 4, 5, 5), (4, 4, 3, 3), {"stride": 0}, ValueError, r"stride must be positive"),
        ((1, 4, 5, 5), (4, 4, 3, 3), {"stride": (1, -2)}, ValueError, r"stride must be positive"),
        ((1, 4, 5, 5), (4, 4, 3, 3), {"dilation": 0}, ValueError, r"dilation must be positive"),
        ((1, 4, 5, 5), (4, 4, 3, 3), {"padding": -1}, ValueError, r"padding must be non-negative"),
        ((1, 4, 5, 5), (4, 4, 3, 3), {"padding": "full"}, ValueError, r"padding must be 'valid'"),
        (
            (1, 4, 5, 5),
            (4, 4, 3, 3),
            {"padding": "same", "stride": 2},
            ValueError,
            r"padding='same' needs stride 1",
        ),
        (
            (1, 4, 5, 5),
            (4, 4, 3, 3),
            {"stride": (1, 2, 3)},
            TypeError,
            r"stride must be an int or a pair of ints",
        ),
        (
            (1, 4, 5, 5),
            (4, 4, 3, 3),
            {"padding": 1.5},
            TypeError,
            r"padding must be an int or a pair of ints",
        ),
        ((1, 4, 2, 5), (4, 4, 3, 3), {}, ValueError, r"output would be empty.*\(1, 4, 0, 3\)"),
        ((1, 4, 5, 5), (4, 4, 3, 3), {"dilation": 3}, ValueError, r"output would be empty"),
        ((4, 5, 5), (4, 4, 3, 3), {}, ValueError, r"input must be 4-D"),
        ((1, 4, 5, 5), (4, 4, 3), {}, ValueError, r"weight must be 4-D"),
    ],
)
def test_invalid_arguments_are_rejected(x_shape, w_shape, kwargs, error, match):
    x, w = t(x_shape), t(w_shape, requires_grad=True)
    with pytest.raises(error, match=match):
        conv2d(x, w, **kwargs)
    with pytest.raises(error, match=match):
        conv2d_algorithm(x, w, **kwargs)


def test_invalid_dtypes_and_bias_are_rejected():
    x, w = t((1, 4, 5, 5)), t((4, 4, 3, 3))
    with pytest.raises(TypeError, match=r"weight dtype float32 must match the input dtype float64"):
        conv2d(x, t((4, 4, 3, 3), "float32"))
    with pytest.raises(TypeError, match=r"bias dtype float32 must match the input dtype"):
        conv2d(x, w, t((4,), "float32"))
    with pytest.raises(TypeError, match=r"input must be floating point, got dtype int64"):
        conv2d(mr.Tensor(np.ones((1, 4, 5, 5), np.int64)), w)
    with pytest.raises(TypeError, match=r"input must be float32 or float64, got dtype float16"):
        conv2d(t((1, 4, 5, 5), "float16"), t((4, 4, 3, 3), "float16"))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        conv2d(x, w, t((3,)))
    with pytest.raises(TypeError, match=r"weight must be a Tensor, got ndarray"):
        conv2d(x, np.ones((4, 4, 3, 3)))


# --- forward -----------------------------------------------------------------------------------


def test_forward_matches_reference_with_argument_forms(device):
    x, w, b = t((2, 6, 9, 8), device=device), t((4, 3, 3, 2), device=device), t((4,), device=device)
    got = conv2d(x, w, b, stride=(2, 1), padding=[1, 3], dilation=2, groups=2)
    g = Conv2dGeometry.of(x.shape, w.shape, (2, 1), (1, 3), (2, 2), 2)
    expected = reference.conv2d_forward(x.numpy(), w.numpy(), b.numpy(), g)
    assert got.shape == expected.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, dilation", [((3, 3), (1, 1)), ((4, 2), (1, 3)), ((2, 5), (2, 1))])
def test_same_and_valid_padding(device, kernel, dilation):
    x, w = t((1, 2, 7, 6), device=device), t((3, 2, *kernel), device=device)
    same = conv2d(x, w, padding="same", dilation=dilation)
    assert same.shape == (1, 3, 7, 6)
    # PyTorch's rule: total padding d*(k-1), the odd one out at the bottom/right
    top_left = [d * (k - 1) // 2 for k, d in zip(kernel, dilation)]
    bottom_right = [d * (k - 1) - p for k, d, p in zip(kernel, dilation, top_left)]
    xp = np.pad(
        x.numpy(), ((0, 0), (0, 0), (top_left[0], bottom_right[0]), (top_left[1], bottom_right[1]))
    )
    expected = reference.conv2d_forward(
        xp, w.numpy(), None, Conv2dGeometry.of(xp.shape, w.shape, dilation=dilation))
    np.testing.assert_allclose(same.numpy(), expected, rtol=1e-12, atol=1e-12)
    valid = conv2d(x, w, padding="valid", dilation=dilation)
    np.testing.assert_allclose(
        valid.numpy(),
        reference.conv2d_forward(x.numpy(), w.numpy(), None,
                                 Conv2dGeometry.of(x.shape, w.shape, dilation=dilation)),
        rtol=1e-12,
        atol=1e-12,
    )


def test_conv2d_algorithm_reports_the_backend_choice_per_pass():
    choices = conv2d_algorithm(t((1, 8, 6, 6)), t((8, 1, 3, 3)), padding=1, groups=8)
    for _, choice in choices:
        assert choice.algorithm == "depthwise" and "depthwise" in choice.reason
    choice = conv2d_algorithm(t((1, 16, 6, 6)), t((32, 16, 1, 1))).forward
    assert choice.algorithm == "gemm" and "1x1" in choice.reason
    assert conv2d_algorithm(t((1, 16, 6, 6)), t((32, 16, 1, 1)), stride=2).forward.algorithm == "gemm"
    assert conv2d_algorithm(t((1, 16, 6, 6)), t((32, 16, 1, 1)), padding=1).forward.algorithm == (
        "direct")
    # 'same' with an even kernel: the choice is for the input padded at the bottom and right
    same = conv2d_algorithm(t((1, 64, 7, 7)), t((64, 32, 2, 2)), padding="same", groups=2)
    assert same.forward.algorithm == "implicit" and same.grad_weight.algorithm == "implicit"


# --- gradients ---------------------------------------------------------------------------------


@st.composite
def conv_calls(draw: st.DrawFn) -> tuple:
    """Small float64 conv2d calls: grouped, dense and depthwise (with multiplier), any
    stride / padding / dilation, with and without bias."""
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    cg = 1 if depthwise else draw(st.integers(1, 2))
    og = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    hw = tuple(
        draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 5))
        for k, d, p in zip(kernel, dilation, padding)
    )
    x = draw(arrays((draw(st.integers(1, 2)), groups * cg, *hw)))
    w = draw(arrays((groups * og, cg, *kernel)))
    b = draw(st.none() | arrays((groups * og,)))
    return x, w, b, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


@given(conv_calls())
def test_gradients_match_finite_differences(device, call):
    x, w, b, kwargs = call
    tensors = [mr.Tensor(a, requires_grad=True, device=device) for a in (x, w, b) if a is not None]
    report = gradcheck(lambda *ts: conv2d(*ts, **kwargs), tensors)
    assert report.ok, str(report)


# One call per algorithm and pass the CPU's default choice runs, and the bottom / right padding
# of 'same' with an even kernel: (input shape, weight shape, arguments). The rules as they are
# where NumPy's BLAS runs narrower vectors than the kernels (`narrow_blas`), so that the 1x1
# convolution of 4.2M multiply-adds per image reaches the pointwise kernel on every machine.
ROUTES = [
    ((1, 64, 16, 16), (256, 64, 1, 1), {}),
    ((2, 16, 5, 5), (16, 8, 1, 1), {"groups": 2}),  # 1x1 of 8 channels per group: the GEMM
    ((2, 6, 7, 6), (10, 3, 3, 3), {"stride": 2, "padding": 1, "groups": 2}),
    ((2, 16, 17, 17), (16, 8, 3, 3), {"padding": 1, "groups": 2}),
    ((1, 20, 17, 17), (20, 10, 3, 3), {"padding": (1, 2), "dilation": (1, 2), "groups": 2}),
    ((2, 64, 5, 5), (64, 32, 3, 3), {"padding": 1, "groups": 2}),
    ((2, 24, 5, 7), (24, 12, 3, 3), {"padding": 1, "groups": 2}),
    ((2, 16, 5, 5), (8, 8, 1, 1), {"groups": 2}),
    ((2, 16, 9, 8), (8, 8, 1, 1), {"stride": 2, "groups": 2}),
    ((1, 96, 4, 4), (96, 96, 3, 3), {"padding": 1}),
    ((1, 64, 7, 7), (64, 32, 2, 2), {"padding": "same", "groups": 2}),
    ((2, 6, 9, 8), (6, 1, 3, 3), {"padding": 1, "groups": 6}),
]


@pytest.fixture
def narrow_blas(monkeypatch) -> Iterator[None]:
    """The rules' choices where NumPy's BLAS computes with narrower vectors than the kernels."""
    monkeypatch.setattr(blas_threads, "VECTOR_BYTES", cpu_rules.ISA.vector_bytes // 2)
    conv.ruled.cache_clear()
    yield
    conv.ruled.cache_clear()


def test_routes_reach_every_algorithm_and_pass(narrow_blas):
    """Every algorithm a rule of the pass's table names."""
    runs = [conv2d_algorithm(t(x), t(w), **kwargs) for x, w, kwargs in ROUTES]
    for pass_ in ("forward", "grad_input", "grad_weight"):
        assert {c[pass_].algorithm for c in runs} == {
            rule.algorithm for rule in cpu_rules.TABLES[pass_]}, pass_


@pytest.mark.parametrize("x_shape, w_shape, kwargs", ROUTES)
def test_gradients_along_random_directions(narrow_blas, x_shape, w_shape, kwargs):
    """d/ds <g, conv(x + s dx, w, b)> at 0 against a central difference, and likewise for w and
    b, through whatever algorithm each pass runs. conv is linear in each argument, so the
    difference (f(1) - f(-1)) / 2 is exact but for rounding: a wrong element of any gradient
    shows at once."""
    rng = np.random.default_rng(len(ROUTES) + sum(x_shape))
    args = [rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1])]
    tensors = [mr.Tensor(a, requires_grad=True) for a in args]
    y = conv2d(*tensors, **kwargs)
    g = rng.standard_normal(y.shape)
    (y * mr.Tensor(g)).sum().backward()
    for i, tensor in enumerate(tensors):
        d = rng.standard_normal(args[i].shape)
        ends = [conv2d(*(mr.Tensor(a + s * d if j == i else a) for j, a in enumerate(args)),
                       **kwargs).numpy() for s in (1.0, -1.0)]
        numeric = (np.vdot(g, ends[0]) - np.vdot(g, ends[1])) / 2
        scale = np.linalg.norm(g) * sum(np.linalg.norm(e) for e in ends)
        assert abs(np.vdot(tensor.grad.numpy(), d) - numeric) <= 1e-12 * scale, i


def test_depthwise_strided_dilated_gradients(device):
    x = t((2, 3, 9, 8), requires_grad=True, device=device)
    w = t((6, 1, 3, 3), requires_grad=True, device=device)
    b = t((6,), requires_grad=True, device=device)
    report = gradcheck(
        lambda *ts: conv2d(*ts, stride=2, padding=2, dilation=2, groups=3), [x, w, b]
    )
    assert report.ok, str(report)


def test_bias_gradient_is_the_sum_of_grad_out(device):
    x, w = t((2, 4, 5, 5), device=device), t((4, 2, 3, 3), device=device)
    b = t((4,), requires_grad=True, device=device)
    y = conv2d(x, w, b, padding=1, groups=2)
    g = np.random.default_rng(5).standard_normal(y.shape)
    (y * mr.Tensor(g, device=device)).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), g.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert x.grad is None and w.grad is None
