"""The fused CPU kernels (batch norm, ReLU, pooling, cross-entropy, SGD) against
the naive references of `kernels/reference_ops.py`, shapes and arguments drawn by hypothesis:
float64 to 1e-12, float32 to its rounding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext.kernels import cpu as K
from minitorch_resnext.kernels import reference_ops as R
from minitorch_resnext.testing.cases import CASES
from minitorch_resnext.testing.strategies import arrays

DTYPES = ["float64", "float32"]


def close(got, want, dtype, scale=1.0):
    tol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-5
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=tol, atol=tol * scale)


@st.composite
def batch_norm_case(draw, dtype):
    training = draw(st.booleans())
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5)),
             draw(st.integers(1, 5)))
    if training and shape[0] * shape[2] * shape[3] < 2:
        shape = (2,) + shape[1:]
    c = shape[1]
    # a large mean against the spread: the one-pass statistics must not cancel
    x = draw(arrays(shape, dtype)) + draw(st.sampled_from([0.0, 30.0, -1e3]))
    weight = draw(arrays((c,), dtype, low=-2.0, high=2.0)) if draw(st.booleans()) else None
    bias = draw(arrays((c,), dtype)) if draw(st.booleans()) else None
    moments = np.stack([draw(arrays((c,))), draw(arrays((c,), low=0.1, high=3.0))], axis=1)
    return x, weight, bias, moments, training, draw(st.booleans())


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_batch_norm_kernels_match_the_reference(dtype, data):
    x, weight, bias, moments, training, relu = data.draw(batch_norm_case(dtype))
    c = x.shape[1]
    w = np.ones(c) if weight is None else weight
    b = np.zeros(c) if bias is None else bias
    given_moments = moments.copy()
    y = K.batch_norm_forward(x, weight, bias, moments, 1e-5, training, relu)
    mean, var = R.batch_moments(x) if training else (given_moments[:, 0], given_moments[:, 1])
    spread = max(1.0, float(np.abs(x).max()))
    close(moments[:, 0], mean, "float64", spread)
    close(moments[:, 1], var, "float64" if dtype == "float64" else dtype, spread**2)
    assert y.dtype == x.dtype and y.shape == x.shape
    close(y, R.batch_norm(x, w, b, moments[:, 0], moments[:, 1], 1e-5, relu), dtype, 10.0)

    g = data.draw(arrays(x.shape, dtype))
    dx, dw, db = K.batch_norm_backward(g, x, weight, bias, moments, 1e-5, training, relu)
    want = R.batch_norm_backward(g, x, w, b, moments[:, 0], moments[:, 1], 1e-5, training, relu)
    assert dx.dtype == x.dtype
    for got, expected in zip((dx, dw, db), want):
        close(got, expected, dtype, 10.0 * x.size)
    none, _, _ = K.batch_norm_backward(g, x, weight, bias, moments, 1e-5, training, relu,
                                       need_dx=False)
    assert none is None


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_relu_kernels_match_the_reference(dtype, data):
    shape = data.draw(st.sampled_from([(3,), (2, 5), (2, 3, 4, 5), (1, 40000)]))
    a, g = (data.draw(arrays(shape, dtype)) for _ in range(2))
    a.reshape(-1)[:3] = [0.0, -0.0, np.nan]  # the edges: zero either sign, NaN propagates
    y = K.relu_forward(a)
    np.testing.assert_array_equal(y, R.relu(a))
    np.testing.assert_array_equal(K.relu_backward(g, y), R.relu_backward(g, y))


@given(data=st.data())
def test_max_pool2d_kernels_match_the_reference(data):
    (x,), kw = data.draw(CASES["max_pool2d"].strategy())
    geometry = (kw["kernel_size"], kw["stride"], kw["padding"])
    want, want_dx = R.max_pool2d(x, *geometry)
    y, arg = K.max_pool2d_forward(x, *geometry, want.shape[2:])
    np.testing.assert_array_equal(y, want)
    dx = K.max_pool2d_backward(np.ones_like(y), arg, x.shape[2:], *geometry)
    np.testing.assert_array_equal(dx, want_dx)
    values, none = K.max_pool2d_forward(x, *geometry, want.shape[2:], taps=False)
    assert none is None
    np.testing.assert_array_equal(values, want)  # rows, then columns: the same maxima


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool2d_kernel_passes_nan_on_like_the_composition(stride):
    """A NaN in a window becomes its output, and the gradient stays with the maximum before
    it (the reference, np.argmax, would send it to the NaN instead)."""
    import minitorch_resnext as mr
    from minitorch_resnext import fusion

    x = (np.arange(2 * 3 * 7 * 8, dtype=np.float64) * 5 % 11 - 5).reshape(2, 3, 7, 8)
    x[0, 1, 2, 3] = x[1, 2, 6, 7] = x[1, 0, 0, 0] = np.nan
    geometry = ((3, 3), (stride, stride), (1, 1))
    out_hw = ((7 - 1) // stride + 1, (8 - 1) // stride + 1)
    y, arg = K.max_pool2d_forward(x, *geometry, out_hw)
    dx = K.max_pool2d_backward(np.ones_like(y), arg, x.shape[2:], *geometry)
    values, _ = K.max_pool2d_forward(x, *geometry, out_hw, taps=False)
    with fusion.composed():
        t = mr.tensor(x, requires_grad=True)
        want = mr.F.max_pool2d(t, 3, stride, 1)
        want.sum().backward()
    np.testing.assert_array_equal(y, want.numpy())  # NaN where the composition has NaN
    np.testing.assert_array_equal(values, want.numpy())
    assert np.isnan(y).any() and not np.isnan(dx).any()
    np.testing.assert_array_equal(dx, t.grad.numpy())


@given(data=st.data(), include_pad=st.booleans())
def test_avg_pool2d_kernels_match_the_reference(data, include_pad):
    (x,), kw = data.draw(CASES["avg_pool2d"].strategy())
    geometry = (kw["kernel_size"], kw["stride"], kw["padding"])
    (kh, kwd), (sh, sw), (ph, pw) = geometry
    out_hw = ((x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kwd) // sw + 1)
    g = data.draw(arrays(x.shape[:2] + out_hw))
    want, want_dx = R.avg_pool2d(x, g, *geometry, include_pad)
    close(K.avg_pool2d_forward(x, *geometry, out_hw, include_pad), want, "float64")
    close(K.avg_pool2d_backward(g, x.shape[2:], *geometry, include_pad), want_dx, "float64")


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_cross_entropy_kernels_match_the_reference(dtype, data):
    n, c = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 7))
    logits = data.draw(arrays((n, c), dtype, low=-30.0, high=30.0))
    target = np.random.default_rng(data.draw(st.integers(0, 2**31))).integers(0, c, n)
    smoothing = data.draw(st.sampled_from([0.0, 0.1, 1.0]))
    want_loss, want_grad = R.cross_entropy(logits, target, smoothing)
    loss, lse = K.cross_entropy_forward(logits, target, smoothing)
    close(loss, want_loss, dtype, 30.0)
    rows = data.draw(arrays((n,)))
    dx = K.cross_entropy_backward(logits, target, smoothing, lse, rows)
    assert dx.dtype == logits.dtype
    close(dx, want_grad * rows[:, None], dtype)


OPTIONS = [
    dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=False),
    dict(momentum=0.8, dampening=0.3, weight_decay=0.1, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@given(data=st.data())
def test_sgd_kernel_matches_the_reference(dtype, options, data):
    sizes = data.draw(st.lists(st.sampled_from([1, 7, 100, 4099]), min_size=1, max_size=4))
    params = [data.draw(arrays((size,), dtype, contiguous=True)) for size in sizes]
    want = [(p.astype(np.float64), None) for p in params]
    momentum = options["momentum"]
    buffers = [np.full_like(p, np.nan) for p in params] if momentum else None
    plan = K.sgd_plan(params, buffers)
    for step in range(3):
        grads = [data.draw(arrays((size,), dtype)) for size in sizes]
        K.sgd_update(plan, grads, 0.1, first=step == 0, **options)
        want = [R.sgd_step(p, g, buf, 0.1, **options) for (p, buf), g in zip(want, grads)]
    for p, (expected, _) in zip(params, want):
        close(p, expected, dtype)
    for b, (_, expected) in zip(buffers or [], want):
        close(b, expected, dtype)


def test_sgd_plan_refuses_arrays_it_cannot_address():
    p = np.ones((4, 4), np.float32)
    assert K.sgd_plan([p.T], None) is None  # not C-contiguous
    assert K.sgd_plan([p, np.ones(3)], None) is None  # mixed dtypes
    plan = K.sgd_plan([p], None)
    assert plan.matches([p], None) and not plan.matches([p.copy()], None)
