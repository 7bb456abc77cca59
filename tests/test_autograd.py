"""The engine: graph recording, topological backward, accumulation, errors."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
# ----- in-place writes to values saved for backward (version counters) ------------------
INPLACE = "modified by an inplace operation"


def _sgd_step(params) -> None:
    """One SGD step with unit gradients: an in-place write to every parameter."""
    params = list(params)
    for p in params:
        p.grad = mr.ones(*p.shape)
    mr.optim.SGD(params, lr=0.1).step()


@pytest.mark.parametrize("layer, op", [
    (lambda: mr.nn.Conv2d(2, 4, 3, padding=1), "Conv2d"),   # saves the weight itself
    (lambda: mr.nn.Linear(3, 4), "MatMul"),                 # saves a transposed view of it
])
def test_an_optimizer_step_between_forward_and_backward_is_refused(layer, op):
    model = layer()
    x = mr.randn(2, 2, 5, 5) if op == "Conv2d" else mr.randn(2, 3)
    loss = model(x).sum()
    saved_at = model.weight._version  # 1: the initialiser wrote it
    _sgd_step(model.parameters())
    with pytest.raises(RuntimeError, match=rf"{INPLACE}.*that {op} saved.*version "
                                           rf"{saved_at + 1}; expected version {saved_at}\."):
        loss.backward()


def test_a_step_after_backward_is_the_normal_loop_and_gradients_are_exact():
    lin = mr.nn.Linear(3, 2)
    x = mr.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    for _ in range(3):
        lin.zero_grad()
        lin(x).sum().backward()
        np.testing.assert_array_equal(lin.weight.grad.numpy(), np.tile(x.numpy().sum(0), (2, 1)))
        mr.optim.SGD(lin.parameters(), lr=0.1).step()
    assert lin.weight._version == 1 + 3  # the initialiser, then three steps


def test_a_write_to_a_value_no_backward_reads_is_allowed():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    w = mr.nn.Parameter(np.array([5.0, 7.0], dtype=np.float32))
    loss = (x * 3.0 + w).sum()  # add saves nothing: its backward does not read w
    _sgd_step([w])
    w.grad = None
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])


def test_views_and_detach_share_the_version_of_their_memory():
    w = mr.nn.Parameter(np.ones((2, 3), dtype=np.float32))
    views = [w.T, w.reshape(6), w[0], w.detach()]
    _sgd_step([w])
    assert w._version == 1 and [v._version for v in views] == [1, 1, 1, 1]
    copy = w * 1.0  # new memory
    _sgd_step([w])
    assert copy._version == 0 and views[0]._version == 2


VIEWS = {"T": lambda t: t.T, "flat": lambda t: t.reshape(-1), "slice": lambda t: t[:1],
         "detach": lambda t: t.detach()}


@given(views=st.lists(st.sampled_from(sorted(VIEWS)), max_size=4), write=st.booleans())
def test_a_write_through_any_chain_of_views_is_caught(views, write):
    w = mr.nn.Parameter(np.arange(6, dtype=np.float32).reshape(2, 3))
    v = w
    for kind in views:
        v = VIEWS[kind](v)
    x = mr.tensor(np.ones(v.shape, dtype=np.float32), requires_grad=True)
    loss = (x * v).sum()  # Mul saves v: w's memory, or a copy where a reshape had to copy
    values = v.numpy().copy()
    if write:
        _sgd_step([w])
    if write and np.shares_memory(v.data, w.data):
        with pytest.raises(RuntimeError, match=f"{INPLACE}.*Mul"):
            loss.backward()
    else:  # nothing written, or written to memory v does not share: v's values are intact
        loss.backward()
        np.testing.assert_array_equal(x.grad.numpy(), values)


def test_a_retained_graph_is_refused_after_a_write():
    w = mr.nn.Parameter(np.array([2.0], dtype=np.float32))
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    _sgd_step([w])
    with pytest.raises(RuntimeError, match=rf"{INPLACE}.*Mul"):
        loss.backward()


def test_every_in_place_write_of_the_engine_bumps_the_version():
    bn = mr.nn.BatchNorm2d(2)
    tensors = [bn.weight, bn.running_mean, bn.running_var, bn.num_batches_tracked]
    start = [t._version for t in tensors]
    bn(mr.randn(4, 2, 3, 3))  # training: the running statistics are updated in place
    assert [t._version - s for t, s in zip(tensors, start)] == [0, 1, 1, 1]
    bn.load_state_dict(bn.state_dict())
    assert all(t._version - s >= 1 for t, s in zip(tensors, start))
    v = bn.weight._version
    mr.nn.init.normal_(bn.weight)
    mr.nn.init.zeros_(bn.weight)
    assert bn.weight._version == v + 2
    bn.weight.grad = mr.ones(2)
    g = bn.weight.grad
    bn.zero_grad(set_to_none=False)
    assert g._version == 1 and g.numpy().tolist() == [0.0, 0.0]
