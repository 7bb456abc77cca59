"""Ops on fused kernels and fused nodes against the composition of array ops they replace
(`fusion.composed()`): forward values and float64 gradients, through the op catalogue, a
model and the optimizer."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext import fusion, models, optim
from minitorch_resnext.testing.cases import CASES

F = mr.F

FUSED_OPS = ["batch_norm", "batch_norm_relu", "relu", "max_pool2d", "avg_pool2d",
             "cross_entropy"]


def run(case, inputs, kwargs):
    tensors = [mr.tensor(x, requires_grad=i not in case.constant) if x.dtype.kind == "f"
               else mr.tensor(x) for i, x in enumerate(inputs)]
    out = case.fn(*tensors, **kwargs)
    out.backward(mr.tensor(np.linspace(-1.0, 2.0, out.numel()).reshape(out.shape)))
    return out, [t.grad.numpy() for t in tensors if t.requires_grad]


@pytest.mark.parametrize("name", FUSED_OPS)
@given(data=st.data())
def test_fused_op_matches_its_composition(name, data):
    case = CASES[name]
    inputs, kwargs = data.draw(case.strategy(), label="inputs")
    out, grads = run(case, inputs, kwargs)
    with fusion.composed():
        want_out, want_grads = run(case, inputs, kwargs)
    assert getattr(out.grad_fn.ctx, "fused", True) and not getattr(want_out.grad_fn.ctx,
                                                                    "fused", False)
    np.testing.assert_allclose(out.numpy(), want_out.numpy(), rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def bn_input(rng):
    x = mr.tensor(rng.standard_normal((4, 3, 5, 5)), requires_grad=True)
    w = mr.tensor(rng.uniform(0.5, 2.0, 3), requires_grad=True)
    b = mr.tensor(rng.standard_normal(3), requires_grad=True)
    return x, w, b


def test_relu_of_a_batch_norm_is_one_announced_node():
    x, w, b = bn_input(np.random.default_rng(0))
    sites = []
    with fusion.listening(lambda kind, *_: sites.append(kind)):
        y = F.batch_norm(x, None, None, w, b, training=True)
        z = F.relu(y)
    assert z.grad_fn.name == "BatchNormReLU" and sites == ["batch_norm+relu"]
    assert z.grad_fn.parents == y.grad_fn.parents  # the ReLU node is gone from the graph
    with fusion.composed(), fusion.listening(lambda kind, *_: sites.append(kind)):
        z = F.relu(F.batch_norm(x, None, None, w, b, training=True))
    assert z.grad_fn.name == "ReLU" and sites == ["batch_norm+relu"]


def grads_of(fn, inputs):
    for t in inputs:
        t.grad = None
    fn(*inputs).backward()
    return [t.grad.numpy() for t in inputs]


def test_a_batch_norm_output_also_used_elsewhere_gets_both_gradients():
    inputs = bn_input(np.random.default_rng(1))

    def loss(x, w, b):
        y = F.batch_norm(x, None, None, w, b, training=True)
        return (F.relu(y) * 3.0 + y * y).sum()  # y feeds the fused node and a product

    got = grads_of(loss, inputs)
    with fusion.composed():
        want = grads_of(loss, inputs)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def train_steps(composed, options, steps=3):
    mr.manual_seed(0)
    model = models.resnext_small(cardinality=2, base_width=2, planes=(8, 8, 8),
                                 stem_width=8).double()
    opt = optim.SGD(model.parameters(), lr=0.1, **options)
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((6, 1, 8, 8)))
    y = mr.tensor(rng.integers(0, 10, 6))
    with fusion.composed() if composed else contextlib.nullcontext():
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y, label_smoothing=0.1).backward()
            opt.step()
    return model.state_dict(), opt


@pytest.mark.parametrize("options", [
    {"momentum": 0.9, "weight_decay": 5e-4},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1},
    {"weight_decay": 1e-2},
], ids=str)
def test_training_steps_match_the_composition(options):
    got, opt = train_steps(False, options)
    want, _ = train_steps(True, options)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)
    assert opt._plans  # the fused update ran


def test_sgd_falls_back_where_only_some_parameters_have_buffers():
    a = mr.tensor([1.0, -2.0], requires_grad=True)
    b = mr.tensor([3.0], requires_grad=True)
    opt = optim.SGD([a, b], lr=0.1, momentum=0.5)
    a.grad = mr.tensor([1.0, 1.0])
    opt.step()  # b has no gradient: only a gets a buffer
    a.grad, b.grad = mr.tensor([1.0, 1.0]), mr.tensor([2.0])
    opt.step()
    np.testing.assert_allclose(a.numpy(), [1.0 - 0.1 - 0.15, -2.0 - 0.1 - 0.15], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [3.0 - 0.2], rtol=1e-6)
