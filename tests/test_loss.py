"""Losses and accuracy against NumPy, gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext.testing import gradcheck
from minitorch_resnext.testing.strategies import arrays

F = mr.F


def numpy_cross_entropy(logits, target, smoothing=0.0):
    logp = logits - logits.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    c = logits.shape[1]
    q = np.full_like(logits, smoothing / c)
    q[np.arange(len(target)), target] += 1 - smoothing
    return -(q * logp).sum(axis=1)


@st.composite
def logits_and_target(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    logits = draw(arrays((n, c), low=-5, high=5))
    target = np.array([draw(st.integers(0, c - 1)) for _ in range(n)])
    return logits, target


@given(case=logits_and_target(), smoothing=st.sampled_from([0.0, 0.1, 1.0]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_matches_numpy_and_gradcheck(case, smoothing, reduction):
    logits, target = case
    want = numpy_cross_entropy(logits, target, smoothing)
    want = {"mean": want.mean(), "sum": want.sum(), "none": want}[reduction]
    t = mr.tensor(target)
    got = F.cross_entropy(mr.tensor(logits), t, reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    x = mr.tensor(logits, requires_grad=True)
    assert gradcheck(lambda x: F.cross_entropy(x, t, reduction=reduction,
                                               label_smoothing=smoothing), [x])


def test_cross_entropy_is_stable_for_huge_logits():
    logits = mr.tensor([[1000.0, 0.0, -1000.0], [-5e4, 5e4, 0.0]], requires_grad=True)
    loss = F.cross_entropy(logits, mr.tensor([1, 1]))
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), 500.0, rtol=1e-6)
    loss.backward()
    assert np.all(np.isfinite(logits.grad.numpy()))


def test_nll_loss_picks_the_targets():
    logp = mr.tensor([[-0.1, -2.0], [-3.0, -0.5]], requires_grad=True)
    loss = F.nll_loss(logp, mr.tensor([1, 0]), reduction="sum")
    np.testing.assert_allclose(loss.item(), 5.0)
    loss.backward()
    np.testing.assert_array_equal(logp.grad.numpy(), [[0.0, -1.0], [-1.0, 0.0]])


def test_accuracy_top1_and_topk():
    scores = mr.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    target = mr.tensor([1, 2, 0, 1])
    assert F.accuracy(scores, target) == 0.25  # row 0; row 3's tie goes to class 0 (argmax)
    assert F.accuracy(scores, target, k=2) == 0.5
    assert F.accuracy(scores, target, k=3) == 1.0
    assert F.accuracy(mr.zeros(4, 3), mr.tensor([0, 1, 2, 1])) == 0.25  # constant scores


def naive_accuracy(scores: np.ndarray, target: np.ndarray, k: int) -> float:
    """Row by row: NaN anywhere is wrong; else the target's rank, ties to the lower index."""
    correct = 0
    for row, t in zip(scores, target):
        if np.isnan(row).any():
            continue
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        correct += order.index(t) < k
    return correct / len(target)


@given(case=logits_and_target(), nan_rows=st.lists(st.booleans(), min_size=5, max_size=5),
       nan_column=st.integers(0, 4), k=st.integers(1, 5))
def test_accuracy_matches_a_naive_count_and_nan_rows_are_wrong(case, nan_rows, nan_column, k):
    logits, target = case
    logits = logits.copy()
    n, c = logits.shape
    for i in range(n):
        if nan_rows[i]:
            logits[i, nan_column % c] = np.nan
    k = min(k, c)
    assert F.accuracy(mr.tensor(logits), mr.tensor(target), k=k) == pytest.approx(
        naive_accuracy(logits, target, k))


def test_all_nan_logits_are_zero_accuracy():
    nan = mr.tensor(np.full((3, 4), np.nan, dtype=np.float32))
    assert F.accuracy(nan, mr.tensor([0, 1, 2])) == 0.0


def test_errors_are_clear():
    logits = mr.randn(3, 4)
    with pytest.raises(ValueError, match="target 4 is out of range for 4 classes"):
        F.cross_entropy(logits, mr.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="target -1 is out of range"):
        F.nll_loss(logits, mr.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
        F.cross_entropy(logits, mr.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(logits, mr.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(logits, mr.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(logits, mr.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C\)"):
        F.cross_entropy(mr.randn(3, 4, 2), mr.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        F.accuracy(logits, mr.tensor([0, 1, 2]), k=5)


def test_gpu_matches_cpu(gpu):
    logits = np.random.default_rng(0).standard_normal((6, 4))
    target = np.array([0, 3, 1, 1, 2, 0])
    results = []
    for dev in ("cpu", gpu):
        x = mr.tensor(logits, requires_grad=True, device=dev)
        t = mr.tensor(target, device=dev)
        loss = F.cross_entropy(x, t, label_smoothing=0.2)
        loss.backward()
        results.append((loss.item(), x.grad.numpy(), F.accuracy(x, t, k=2)))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-12, atol=1e-15)
    assert results[1][2] == results[0][2]
