"""Tutorial 4's exercises, checked against the reference kernels on drawn configurations."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry, output_length

ONE = (1, 1)



def geometry(x: np.ndarray, w: np.ndarray, padding: tuple, dilation: tuple, groups: int = 1
             ) -> Conv2dGeometry:
    """The stride-1 convolution of x with w."""
    return Conv2dGeometry.of(x.shape, w.shape, 1, padding, dilation, groups)

@st.composite
def convolutions(draw, max_dilation: int = 3):
    """(x, w, padding, dilation, groups) of a small stride-1 grouped convolution, float64."""
    groups, cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 8))
    wd = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (rng.standard_normal((2, groups * cg, h, wd)), rng.standard_normal((groups * og, cg, kh, kw)),
            padding, dilation, groups)


@given(convolutions())
def test_grad_input_with_dilation_is_the_reference(t4, case):
    x, w, padding, dilation, groups = case
    y = reference.conv2d_forward(x, w, None, geometry(x, w, padding, dilation, groups))
    gy = np.random.default_rng(0).standard_normal(y.shape)
    np.testing.assert_allclose(
        t4.grad_input(gy, w, x.shape[2:], padding, dilation, groups),
        reference.conv2d_grad_input(gy, w, geometry(x, w, padding, dilation, groups)),
        rtol=1e-10, atol=1e-10)


@given(convolutions())
def test_im2col_times_the_weight_is_the_convolution(t4, case):
    x, w, padding, dilation, groups = case
    w = np.random.default_rng(1).standard_normal((w.shape[0], x.shape[1], *w.shape[2:]))  # dense
    cols = t4.im2col(x, w.shape[2:], padding, dilation)
    y = reference.conv2d_forward(x, w, None, geometry(x, w, padding, dilation))
    assert cols.shape == (x.shape[0], w[0].size, y.shape[2] * y.shape[3])
    np.testing.assert_allclose((w.reshape(w.shape[0], -1) @ cols).reshape(y.shape), y,
                               rtol=1e-10, atol=1e-10)


@given(convolutions(), st.sampled_from([2, 4, 8]))
def test_im2col_bytes_counts_the_matrix(t4, case, itemsize):
    x, w, padding, dilation, _ = case
    out_hw = [output_length(n, k, 1, p, d)
              for n, k, p, d in zip(x.shape[2:], w.shape[2:], padding, dilation)]
    expected = x.shape[0] * x.shape[1] * w.shape[2] * w.shape[3] * math.prod(out_hw) * itemsize
    assert t4.im2col_bytes(x.shape, w.shape[2:], padding, dilation, itemsize) == expected


def test_im2col_of_a_3x3_is_nine_inputs(t4):
    x_shape = (8, 128, 56, 56)  # ResNeXt-50's first stage
    input_bytes = 4 * math.prod(x_shape)
    assert t4.im2col_bytes(x_shape, (3, 3), ONE, ONE) == 9 * input_bytes


@given(convolutions(max_dilation=1))
def test_grad_weight_is_the_reference(t4, case):
    x, w, padding, dilation, groups = case
    y = reference.conv2d_forward(x, w, None, geometry(x, w, padding, dilation, groups))
    gy = np.random.default_rng(0).standard_normal(y.shape)
    np.testing.assert_allclose(
        t4.grad_weight(x, gy, w.shape[2:], padding, groups),
        reference.conv2d_grad_weight(x, gy, geometry(x, w, padding, dilation, groups)),
        rtol=1e-10, atol=1e-10)
