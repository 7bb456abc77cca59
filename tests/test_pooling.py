"""Pooling: forward against naive NumPy loops, gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext.testing import gradcheck
from minitorch_resnext.testing.strategies import arrays

F = mr.F


def naive_pool(x, k, s, p, reduce, include_pad=True):
    """Window by window over the padded input; `reduce` of the in-bounds values."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            win = x[:, :, max(r0, 0) : r0 + k[0], max(c0, 0) : c0 + k[1]]
            if reduce == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                count = k[0] * k[1] if include_pad else win.shape[2] * win.shape[3]
                out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out


def naive_adaptive(x, oh, ow):
    n, c, h, w = x.shape
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r = slice(i * h // oh, -(-(i + 1) * h // oh))
            q = slice(j * w // ow, -(-(j + 1) * w // ow))
            out[:, :, i, j] = x[:, :, r, q].mean(axis=(2, 3))
    return out


@st.composite
def pool_case(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    h = draw(st.integers(max(1, k[0] - 2 * p[0]), 6))
    w = draw(st.integers(max(1, k[1] - 2 * p[1]), 6))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    x = draw(arrays((n, c, h, w)))
    return x, k, s, p


@given(case=pool_case())
def test_max_pool2d_matches_numpy_and_gradcheck(case):
    x, k, s, p = case
    out = F.max_pool2d(mr.tensor(x), k, s, p)
    np.testing.assert_array_equal(out.numpy(), naive_pool(x, k, s, p, "max"))
    t = mr.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: F.max_pool2d(t, k, s, p), [t])


@given(case=pool_case(), include_pad=st.booleans())
def test_avg_pool2d_matches_numpy_and_gradcheck(case, include_pad):
    x, k, s, p = case
    out = F.avg_pool2d(mr.tensor(x), k, s, p, count_include_pad=include_pad)
    np.testing.assert_allclose(out.numpy(), naive_pool(x, k, s, p, "avg", include_pad),
                               rtol=1e-12, atol=1e-12)
    t = mr.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: F.avg_pool2d(t, k, s, p, count_include_pad=include_pad), [t])


@given(data=st.data())
def test_adaptive_avg_pool2d_matches_numpy_and_gradcheck(data):
    h, w = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    oh, ow = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    x = data.draw(arrays((2, 2, h, w)))
    out = F.adaptive_avg_pool2d(mr.tensor(x), (oh, ow))
    np.testing.assert_allclose(out.numpy(), naive_adaptive(x, oh, ow), rtol=1e-12, atol=1e-12)
    t = mr.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, (oh, ow)), [t])


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = mr.tensor(np.array([[[[1.0, 5.0, 5.0], [5.0, 2.0, 0.0], [0.0, 0.0, 0.0]]]]),
                  requires_grad=True)
    F.max_pool2d(x, 3).sum().backward()
    want = np.zeros((3, 3))
    want[0, 1] = 1.0  # the first 5 in row-major order, not split between the three
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], want)


def test_overlapping_max_windows_accumulate():
    x = mr.tensor(np.arange(25.0).reshape(1, 1, 5, 5), requires_grad=True)
    F.max_pool2d(x, 3, 1).sum().backward()  # every window's max is its bottom-right corner
    want = np.zeros((5, 5))
    want[2:, 2:] = 1.0
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], want)


def test_stem_pool_float32_keeps_dtype():
    x = mr.randn(2, 4, 112, 112)
    out = F.max_pool2d(x, 3, 2, 1)
    assert out.shape == (2, 4, 56, 56) and out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), naive_pool(x.numpy(), (3, 3), (2, 2), (1, 1),
                                                          "max"))


def test_errors_are_clear():
    x = mr.randn(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"input spatial size \(2, 2\) is too small"):
        F.max_pool2d(x, 3)
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        F.avg_pool2d(mr.randn(1, 1, 8, 8), 3, 1, 2)
    with pytest.raises(ValueError, match="4-D input"):
        F.max_pool2d(mr.randn(2, 2), 1)
    with pytest.raises(ValueError, match="must be positive"):
        F.adaptive_avg_pool2d(x, (0, 1))
    with pytest.raises(TypeError, match=r"max_pool2d: kernel_size must be an int or a pair of ints"):
        F.max_pool2d(x, (1, 1, 1))
    with pytest.raises(TypeError, match=r"stride must be an int or a pair of ints, got True"):
        F.avg_pool2d(x, 2, stride=True)
    with pytest.raises(TypeError, match="floating-point"):
        F.max_pool2d(mr.tensor(np.ones((1, 1, 2, 2), np.int64)), 2)


def test_gpu_matches_cpu(gpu):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    ops = [lambda t: F.max_pool2d(t, 3, 2, 1), lambda t: F.avg_pool2d(t, 2, 1, 1, False),
           lambda t: F.adaptive_avg_pool2d(t, (3, 2)), lambda t: F.adaptive_avg_pool2d(t, 1)]
    for op in ops:
        results = []
        for dev in ("cpu", gpu):
            t = mr.tensor(x, requires_grad=True, device=dev)
            out = op(t)
            (out * out).sum().backward()
            results.append((out.numpy(), t.grad.numpy()))
        for got, want in zip(*results):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
