"""The engine: graph recording, topological backward, accumulation, errors."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import minitorch_resnext as mr


def test_leaf_gradients_accumulate_across_backward_calls(device):
    x = mr.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1, 2, 3]) + 3)


def test_shared_subexpression_backward_runs_once_per_node(device):
    # y = a*b is used by two consumers; its gradient must be the sum of both paths
    a = mr.tensor([2.0], requires_grad=True, device=device)
    b = mr.tensor([5.0], requires_grad=True, device=device)
    y = a * b
    z = (y * y + y * 4.0).sum()  # dz/dy = 2y + 4 = 24
    z.backward()
    assert a.grad.item() == pytest.approx(24 * 5)
    assert b.grad.item() == pytest.approx(24 * 2)


def test_same_leaf_used_twice_in_one_op():
    x = mr.tensor([3.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.item() == pytest.approx(6.0)


def test_graph_ten_thousand_ops_deep_has_no_recursion_limit():
    x = mr.tensor([1.0], requires_grad=True, dtype=mr.float64)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-9)


def test_no_grad_records_nothing():
    x = mr.tensor([1.0], requires_grad=True)
    with mr.no_grad():
        y = x * 2
    assert y.grad_fn is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_as_decorator():
    @mr.no_grad()
    def f(t):
        return t * 2

    assert f(mr.tensor([1.0], requires_grad=True)).grad_fn is None


def test_second_backward_through_freed_graph_is_a_clear_error():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_backward_on_non_scalar_needs_grad():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(mr.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 20.0])


def test_backward_grad_of_wrong_shape():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(mr.tensor([1.0, 2.0, 3.0]))


def test_backward_on_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mr.tensor([1.0]).sum().backward()


def test_int_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        mr.tensor([1, 2], requires_grad=True)


def test_ints_where_floats_are_needed():
    with pytest.raises(TypeError, match="floating-point"):
        mr.tensor([1, 2]).exp()


def test_mismatched_shapes_name_both():
    a, b = mr.ones(2, 3), mr.ones(4)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        a + b
    with pytest.raises(ValueError, match="do not chain"):
        mr.ones(2, 3) @ mr.ones(2, 3)


def test_graph_keeps_no_activation_after_backward():
    x = mr.tensor(np.ones((64, 64)), requires_grad=True)
    hidden = (x * 2).exp()
    ref = weakref.ref(hidden.data)
    loss = (hidden * hidden).sum()
    del hidden
    gc.collect()
    assert ref() is not None  # saved for backward
    loss.backward()
    gc.collect()
    assert ref() is None  # freed although `loss` is still alive


def test_detach_and_dtypes():
    x = mr.tensor([1.5, 2.5], requires_grad=True)
    assert x.dtype == mr.float32
    assert mr.tensor([1, 2]).dtype == mr.int64
    assert mr.tensor(np.array([1.0]), dtype=mr.float64).dtype == mr.float64
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    y = x.double() * 2
    y.sum().backward()
    assert y.dtype == mr.float64 and x.grad.dtype == mr.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_item_numpy_to_and_repr():
    x = mr.tensor([[1.0, 2.0]])
    assert x.shape == (1, 2) and x.ndim == 2 and x.device == "cpu"
    assert mr.tensor(3.0).item() == 3.0
    with pytest.raises(ValueError, match="one-element"):
        x.item()
    assert isinstance(x.numpy(), np.ndarray)
    assert x.to("cpu") is x
    assert "tensor(" in repr(x)


def test_unknown_device():
    with pytest.raises(ValueError, match="device must be one of"):
        mr.tensor([1.0], device="tpu")


def test_cuda_request_without_gpu_is_a_clear_error():
    if mr.cuda_is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cuda"):
        mr.tensor([1.0], device="cuda")


def test_moving_between_devices_is_differentiable(device):
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(device) * 3.0
    assert y.device == device
    y.to("cpu").sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_a_0d_leaf_used_twice_keeps_an_array_gradient():
    x = mr.tensor(np.array(0.5), dtype=mr.float64, requires_grad=True)
    (x * 2.0 + x * 3.0).backward()
    assert isinstance(x.grad.data, np.ndarray) and x.grad.numpy() == 5.0
