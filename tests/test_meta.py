"""The "meta" device: shapes and dtypes without data, and the forward hooks that count on it."""

from __future__ import annotations

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import models, nn
from minitorch_resnext.models.summary import shape_and_macs


def test_meta_tensors_have_shapes_but_no_data():
    x = mr.zeros(64, 3, 224, 224, device="meta")
    assert x.shape == (64, 3, 224, 224) and x.dtype == mr.float32 and x.device == "meta"
    assert x.data.strides == (0, 0, 0, 0)  # one zero, broadcast: no memory per element
    assert repr(x) == "tensor(..., device='meta', size=(64, 3, 224, 224))"
    with pytest.raises(RuntimeError, match="'meta' device has a shape and a dtype but no data"):
        x.numpy()


def test_ops_on_meta_give_the_shapes_of_the_cpu_results():
    rng = np.random.default_rng(0)
    w = mr.tensor(rng.standard_normal((8, 2, 3, 3)))
    x_cpu = mr.tensor(rng.standard_normal((2, 4, 9, 7)))
    want = mr.F.conv2d(x_cpu, w, stride=2, padding=1, groups=2).relu().mean(dim=(2, 3))
    got = mr.F.conv2d(x_cpu.to("meta"), w, stride=2, padding=1, groups=2).relu().mean(dim=(2, 3))
    assert got.device == "meta" and got.shape == want.shape == (2, 8)
    assert got.data.strides == (0, 0)
    with pytest.raises(ValueError, match="output would be empty"):
        mr.F.conv2d(mr.zeros(1, 4, 2, 2, dtype=mr.float64, device="meta"), w, groups=2)


def test_a_cpu_tensor_meeting_a_meta_tensor_gives_a_meta_result():
    assert (mr.ones(2) + mr.ones(2, device="meta")).device == "meta"
    assert (mr.ones(2, device="meta") * mr.ones(3, 1)).shape == (3, 2)


def test_forward_hooks_see_every_call_and_can_be_removed():
    layer, seen = nn.Linear(3, 2), []
    handle = layer.register_forward_hook(lambda m, args, out: seen.append((m, args[0].shape, out.shape)))
    layer(mr.randn(4, 3))
    handle.remove()
    layer(mr.randn(5, 3))
    assert seen == [(layer, (4, 3), (4, 2))]
    doubled = layer.register_forward_hook(lambda m, args, out: out * 2)
    x = mr.randn(1, 3)
    np.testing.assert_allclose(layer(x).numpy(), 2 * mr.F.linear(x, layer.weight, layer.bias).numpy())
    doubled.remove()


def test_counting_on_meta_leaves_the_model_as_it_was():
    model = models.resnext_small()
    model.layer1.train()
    model.layer2.eval()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    shape, macs = shape_and_macs(model, (2, 1, 16, 16))
    assert shape == (2, 10) and macs == 2 * shape_and_macs(model, (1, 1, 16, 16))[1]
    assert model.training and model.layer1.training and not model.layer2.training
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert all(not m._forward_hooks for m in model.modules())


def test_hand_counted_multiply_adds():
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
    # output 16 x 5 x 5 per image, each a sum over 2 input channels x 9 taps
    assert shape_and_macs(conv, (3, 8, 9, 9)) == ((3, 16, 5, 5), 3 * 16 * 25 * 2 * 9)
    block = nn.Sequential(conv, nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(16, 10))
    assert shape_and_macs(block, (3, 8, 9, 9)) == ((3, 10), 3 * 16 * 25 * 18 + 3 * 10 * 16)
