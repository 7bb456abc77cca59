"""Layers: forward against NumPy / the reference kernels, PyTorch's init, shapes and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import nn
from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.models.summary import shape_and_macs


def test_conv2d_matches_the_reference_with_groups_stride_padding_dilation():
    mr.manual_seed(0)
    conv = nn.Conv2d(6, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    assert conv.weight.shape == (4, 3, 3, 2) and conv.bias.shape == (4,)
    x = mr.randn(2, 6, 7, 6)
    g = Conv2dGeometry.of(x.shape, conv.weight.shape, (2, 1), (1, 0), (1, 2), 2)
    want = reference.conv2d_forward(x.numpy(), conv.weight.numpy(), conv.bias.numpy(), g)
    np.testing.assert_allclose(conv(x).numpy(), want, rtol=1e-5, atol=1e-5)
    shape, macs = shape_and_macs(conv, x.shape)
    assert shape == want.shape
    assert macs == math.prod(want.shape) * 3 * 3 * 2


def test_conv2d_errors_are_clear():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(6, 4, 3, groups=4)
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"expects 3 input channels .*, but input has 1"):
        conv(mr.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"output would be empty: input \(1, 3, 2, 2\) with kernel "
                                         r"\(3, 3\)"):
        conv(mr.randn(1, 3, 2, 2))
    with pytest.raises(TypeError, match=r"Conv2d: stride must be an int or a pair of ints, got True"):
        nn.Conv2d(3, 8, 3, stride=True)


def test_conv2d_default_init_is_torchs_uniform():
    mr.manual_seed(0)
    conv = nn.Conv2d(16, 64, 3)
    bound = 1 / math.sqrt(16 * 9)  # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
    w = conv.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert np.abs(conv.bias.numpy()).max() <= bound
    assert nn.Conv2d(2, 2, 1, bias=False).bias is None


def test_kaiming_normal_fan_out_std():
    mr.manual_seed(0)
    w = nn.Parameter(np.empty((256, 64, 3, 3), np.float32))
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.dtype == np.float32
    assert abs(w.numpy().std() / math.sqrt(2 / (256 * 9)) - 1) < 0.02
    with pytest.raises(ValueError, match="mode must be"):
        nn.init.kaiming_normal_(w, mode="fan_avg")


def test_manual_seed_makes_layers_reproducible():
    mr.manual_seed(3)
    a = nn.Linear(5, 4).state_dict()
    mr.manual_seed(3)
    b = nn.Linear(5, 4).state_dict()
    c = nn.Linear(5, 4).state_dict()
    np.testing.assert_array_equal(a["weight"], b["weight"])
    assert not np.array_equal(b["weight"], c["weight"])


def test_linear_matches_numpy_and_checks_features():
    mr.manual_seed(0)
    lin = nn.Linear(5, 3)
    bound = 1 / math.sqrt(5)
    assert np.abs(lin.weight.numpy()).max() <= bound and np.abs(lin.bias.numpy()).max() <= bound
    x = mr.randn(4, 5)
    want = x.numpy() @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(lin(x).numpy(), want, rtol=1e-6)
    assert shape_and_macs(lin, (4, 5)) == ((4, 3), 60)
    with pytest.raises(ValueError, match="expected input with 5 features"):
        lin(mr.randn(4, 6))


def test_flatten_identity_relu():
    x = mr.randn(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 2)(x).shape == (24, 5)
    assert shape_and_macs(nn.Flatten(1, 2), (2, 3, 4, 5)) == ((2, 12, 5), 0)
    assert nn.Identity()(x) is x
    np.testing.assert_array_equal(nn.ReLU()(x).numpy(), np.maximum(x.numpy(), 0))


def test_dropout_train_scales_and_masks_eval_is_identity():
    mr.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = mr.ones(200, 100, requires_grad=True)
    y = drop(x)
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())  # d(x * mask)/dx = mask
    drop.eval()
    assert drop(x) is x
    assert np.all(nn.Dropout(1.0)(x).numpy() == 0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        nn.Dropout(1.5)


def test_pooling_layers_shapes_agree_with_forward():
    x = mr.randn(2, 3, 9, 7)
    for layer in (nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2), nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                  nn.AdaptiveAvgPool2d((1, 1)), nn.AdaptiveAvgPool2d((4, 3))):
        assert shape_and_macs(layer, x.shape) == (layer(x).shape, 0), layer
    with pytest.raises(ValueError, match="too small"):
        shape_and_macs(nn.MaxPool2d(3, 2), (1, 1, 2, 2))


def test_sequential_and_modulelist_indexing():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(seq[-1], nn.Linear) and len(seq[:2]) == 2
    assert seq(mr.randn(4, 2)).shape == (4, 1)
    assert shape_and_macs(seq, (4, 2)) == ((4, 1), 4 * 2 * 3 + 4 * 3)
    ml = nn.ModuleList([nn.ReLU()]).extend([nn.Identity()])
    assert len(ml) == 2 and isinstance(ml[1], nn.Identity)
    assert [n for n, _ in ml.named_children()] == ["0", "1"]
