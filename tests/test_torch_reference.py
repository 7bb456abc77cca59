"""This package against PyTorch without PyTorch: the results that torch 2.x computed once, in
float64, for the cases of torch_cases.py (scripts/make_torch_fixture.py wrote them): a small
ResNeXt's training step, its batch statistics and eval logits, and F.conv2d's output and
gradients with grouped, depthwise, strided, dilated and 'same' arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch_cases as cases

import minitorch_resnext as mr
from minitorch_resnext import functional as F


@pytest.fixture(scope="module")
def torch_results() -> dict[str, np.ndarray]:
    with np.load(Path(__file__).parent / cases.FIXTURE, allow_pickle=False) as data:
        return dict(data)


def assert_agrees(ours: np.ndarray, theirs: np.ndarray, name: str) -> None:
    """Both in float64, summed in different orders: equal to 1e-10 of the array's scale."""
    assert ours.shape == theirs.shape, name
    np.testing.assert_allclose(ours, theirs, rtol=1e-10,
                               atol=1e-10 * max(np.abs(theirs).max(), 1.0), err_msg=name)


def test_a_training_step_matches_pytorch(torch_results):
    net = cases.model()
    x, labels = cases.model_inputs()
    logits = net.train()(mr.tensor(x))
    loss = F.cross_entropy(logits, mr.tensor(labels))
    loss.backward()
    assert_agrees(logits.numpy(), torch_results["model/train_logits"], "train logits")
    assert_agrees(loss.numpy(), torch_results["model/loss"], "loss")
    grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
    assert len(grads) == sum(k.startswith("model/grad/") for k in torch_results)
    for name, grad in grads.items():
        assert_agrees(grad, torch_results[f"model/grad/{name}"], name)
    buffers = dict(net.named_buffers())
    assert len(buffers) == sum(k.startswith("model/after/") for k in torch_results)
    for name, buffer in buffers.items():
        assert_agrees(buffer.numpy(), torch_results[f"model/after/{name}"], name)
    eval_logits = net.eval()(mr.tensor(x)).numpy()
    assert_agrees(eval_logits, torch_results["model/eval_logits"], "eval logits")


@pytest.mark.parametrize("name", cases.CONVS)
def test_conv2d_matches_pytorch(torch_results, name):
    _, _, kwargs = cases.CONVS[name]
    x, w, b = (mr.Tensor(a, requires_grad=True) for a in cases.conv_inputs(name))
    y = F.conv2d(x, w, b, **kwargs)
    y.backward(mr.Tensor(cases.grad_out(y.shape)))
    for key, tensor in (("y", y), ("grad_x", x.grad), ("grad_w", w.grad), ("grad_b", b.grad)):
        assert_agrees(tensor.numpy(), torch_results[f"conv/{name}/{key}"], f"{name} {key}")
