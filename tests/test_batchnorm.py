"""Batch norm: forward and running statistics against hand-written NumPy, gradients against
finite differences, PyTorch's buffers and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext import nn
from minitorch_resnext.testing import gradcheck
from minitorch_resnext.testing.strategies import arrays

F = mr.F


def numpy_bn_train(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5):
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    y = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps)
    return y * w[:, None, None] + b[:, None, None], mean, var


def test_training_forward_and_running_stats_follow_pytorchs_rule():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm2d(3, momentum=0.2).double()
    bn.weight.data[...] = rng.uniform(0.5, 2, 3)
    bn.bias.data[...] = rng.standard_normal(3)
    run_mean, run_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = rng.normal(2.0, 3.0, (4, 3, 5, 2))
        y = bn(mr.tensor(x))
        want, mean, var = numpy_bn_train(x, bn.weight.numpy(), bn.bias.numpy())
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)
        m = x.size // 3
        run_mean = 0.8 * run_mean + 0.2 * mean
        run_var = 0.8 * run_var + 0.2 * var * m / (m - 1)  # unbiased
        np.testing.assert_allclose(bn.running_mean.numpy(), run_mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.numpy(), run_var, rtol=1e-12)
        assert int(bn.num_batches_tracked.item()) == step + 1


def test_eval_uses_running_stats():
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm2d(2).double()
    bn.running_mean.data[...] = [0.5, -1.0]
    bn.running_var.data[...] = [4.0, 0.25]
    bn.weight.data[...] = [2.0, 3.0]
    bn.bias.data[...] = [0.1, 0.2]
    bn.eval()
    x = rng.standard_normal((3, 2, 4, 4))
    want = ((x - np.array([0.5, -1.0])[:, None, None]) / np.sqrt(np.array([4.0, 0.25]) + 1e-5)
            [:, None, None] * np.array([2.0, 3.0])[:, None, None]
            + np.array([0.1, 0.2])[:, None, None])
    np.testing.assert_allclose(bn(mr.tensor(x)).numpy(), want, rtol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 0
    np.testing.assert_array_equal(bn.running_mean.numpy(), [0.5, -1.0])


def test_cumulative_average_when_momentum_is_none():
    rng = np.random.default_rng(2)
    bn = nn.BatchNorm2d(2, momentum=None).double()
    batches = [rng.standard_normal((2, 2, 3, 3)) + k for k in range(3)]
    for x in batches:
        bn(mr.tensor(x))
    means = [x.mean(axis=(0, 2, 3)) for x in batches]
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean(means, axis=0), rtol=1e-12)


def test_no_affine_and_no_running_stats():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 2, 2))
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False).double()
    assert list(bn.state_dict()) == [] and list(bn.parameters()) == []
    bn.eval()  # still batch statistics without running ones
    want, _, _ = numpy_bn_train(x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(bn(mr.tensor(x)).numpy(), want, rtol=1e-12, atol=1e-12)


def test_state_dict_keys_match_torch():
    assert list(nn.BatchNorm2d(4).state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


@given(data=st.data(), training=st.booleans())
def test_gradcheck_through_batch_norm(data, training):
    n, c, h, w = (data.draw(st.integers(1, 3)) for _ in range(4))
    if training and n * h * w == 1:
        n = 2
    x = mr.tensor(data.draw(arrays((n, c, h, w))), requires_grad=True)
    weight = mr.tensor(data.draw(arrays((c,), low=0.5, high=2.0)), requires_grad=True)
    bias = mr.tensor(data.draw(arrays((c,))), requires_grad=True)
    rm = mr.tensor(data.draw(arrays((c,))))
    rv = mr.tensor(data.draw(arrays((c,), low=0.5, high=2.0)))
    report = gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=training,
                                                    momentum=0.0), [x, weight, bias])
    assert report, report


def test_gradcheck_without_affine_in_training():
    x = mr.tensor(np.random.default_rng(4).standard_normal((3, 2, 2, 3)), requires_grad=True)
    assert gradcheck(lambda x: F.batch_norm(x, None, None, training=True), [x])


def test_float32_training_matches_float64():
    rng = np.random.default_rng(5)
    x = rng.normal(5.0, 2.0, (8, 4, 6, 6))
    outs = [F.batch_norm(mr.tensor(x, dtype=dt), None, None, training=True).numpy()
            for dt in (mr.float32, mr.float64)]
    assert outs[0].dtype == np.float32
    np.testing.assert_allclose(outs[0], outs[1], atol=2e-5)


def test_errors_are_clear():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got shape \(2, 4, 2, 2\)"):
        bn(mr.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel when training"):
        bn(mr.randn(1, 3, 1, 1))
    with pytest.raises(ValueError, match="running_mean and running_var are needed"):
        F.batch_norm(mr.randn(2, 3, 2, 2), None, None, training=False)
    with pytest.raises(ValueError, match="weight has shape"):
        F.batch_norm(mr.randn(2, 3, 2, 2), None, None, mr.ones(4), training=True)


def test_gpu_matches_cpu(gpu):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 5, 5))
    g = rng.standard_normal(x.shape)
    results = []
    for dev in ("cpu", gpu):
        bn = nn.BatchNorm2d(3).double().to(dev)
        xt = mr.tensor(x, requires_grad=True, device=dev)
        bn(xt).backward(mr.tensor(g, device=dev))
        results.append([xt.grad.numpy(), bn.weight.grad.numpy(), bn.running_var.numpy()])
        bn.eval()
        results[-1].append(bn(xt).numpy())
    for got, want in zip(*reversed(results)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
