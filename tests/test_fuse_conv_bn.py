"""Batch norms folded into their convolutions for inference (`nn.utils`): the folded module
computes what the convolution followed by the eval-mode batch norm computes (float64, on
hypothesis-drawn convolutions), a whole model keeps its outputs and loses its batch norms, and
bad input is refused before anything is changed."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext import models, nn


def randomize_statistics(model: nn.Module, seed: int) -> nn.Module:
    """Batch norms with running statistics and affine parameters far from the identity."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data[...] = rng.standard_normal(c)
            m.running_var.data[...] = rng.uniform(0.2, 3.0, c)
            if m.affine:
                m.weight.data[...] = rng.standard_normal(c)
                m.bias.data[...] = rng.standard_normal(c)
    return model


@st.composite
def conv_bn_pairs(draw):
    groups = draw(st.integers(1, 3))
    conv = nn.Conv2d(groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3)),
                     draw(st.sampled_from([1, 3, (3, 1)])), stride=draw(st.integers(1, 2)),
                     padding=draw(st.integers(0, 2)), dilation=draw(st.integers(1, 2)),
                     groups=groups, bias=draw(st.booleans()))
    bn = nn.BatchNorm2d(conv.out_channels, eps=draw(st.sampled_from([1e-5, 0.1])),
                        affine=draw(st.booleans()))
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal(
        (draw(st.integers(1, 3)), conv.in_channels, draw(st.integers(5, 8)), 6))
    return conv, randomize_statistics(bn, seed), x


@settings(deadline=None, max_examples=40)
@given(conv_bn_pairs())
def test_a_folded_convolution_computes_the_batch_norm_of_the_convolution(pair):
    conv, bn, x = pair
    conv, bn = conv.double().eval(), bn.double().eval()
    fused = nn.utils.fuse_conv_bn_eval(conv, bn)
    with mr.no_grad():
        want = bn(conv(mr.tensor(x))).numpy()
        got = fused(mr.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert fused is not conv and conv.bias is None or fused.bias is not conv.bias


def test_fold_weights_by_the_formula():
    w, b = np.array([[[[2.0]]], [[[-1.0]]]]), np.array([1.0, 0.5])
    mean, var, gamma, beta = (np.array(v) for v in ([0.5, 1.5], [3.0, 0.0], [2.0, 1.0],
                                                     [0.25, -1.0]))
    fw, fb = nn.utils.fuse_conv_bn_weights(w, b, mean, var, 1.0, gamma, beta)
    # s = gamma / sqrt(var + eps) = [1, 1]: w unchanged, b' = (b - mean) * s + beta
    np.testing.assert_allclose(fw.numpy().ravel(), [2.0, -1.0])
    np.testing.assert_allclose(fb.numpy(), [0.75, -2.0])
    fw, fb = nn.utils.fuse_conv_bn_weights(w, None, mean, var, 1.0, None, None)
    np.testing.assert_allclose(fw.numpy().ravel(), [1.0, -1.0])
    np.testing.assert_allclose(fb.numpy(), [-0.25, -1.5])


@pytest.mark.parametrize("block", ["grouped", "split", "concat"])
def test_a_folded_model_keeps_its_outputs_and_loses_its_batch_norms(block):
    model = models.resnext_small(cardinality=2, base_width=2, planes=(4, 8, 8), stem_width=4,
                                 block=block)
    model = randomize_statistics(model, seed=1).double().eval()
    before = copy.deepcopy(model.state_dict())
    fused = nn.utils.fuse_conv_bn(model)
    x = mr.tensor(np.random.default_rng(2).standard_normal((3, 1, 16, 16)))
    with mr.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), model(x).numpy(), rtol=1e-9, atol=1e-9)
    left = [name for name, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # only the split form's bn3, after the sum of the paths, follows no single convolution
    assert left == ([f"layer{i}.0.bn3" for i in (1, 2, 3)] if block == "split" else [])
    assert all(np.array_equal(v, before[k])
               for k, v in model.state_dict().items())  # the original is untouched
    assert list(fused.layer1[0].downsample._modules) == ["0", "1"]  # order kept
    assert isinstance(fused.layer1[0].downsample[1], nn.Identity)


def test_in_place_folding_changes_the_model_itself():
    model = randomize_statistics(models.resnext_small(), seed=3).eval()
    assert nn.utils.fuse_conv_bn(model, inplace=True) is model
    assert isinstance(model.bn1, nn.Identity) and model.conv1.bias is not None


def test_bad_input_is_refused_before_anything_changes():
    model = models.resnext_small()
    with pytest.raises(ValueError, match="eval mode"):
        nn.utils.fuse_conv_bn(model)
    conv, bn = nn.Conv2d(2, 3, 1).eval(), nn.BatchNorm2d(3).eval()
    with pytest.raises(ValueError, match="eval mode"):
        nn.utils.fuse_conv_bn_eval(conv, bn.train())
    with pytest.raises(ValueError, match="running statistics"):
        nn.utils.fuse_conv_bn_eval(conv, nn.BatchNorm2d(3, track_running_stats=False).eval())
    with pytest.raises(ValueError, match="4 features, conv 3 output channels"):
        nn.utils.fuse_conv_bn_eval(conv, nn.BatchNorm2d(4).eval())
    assert isinstance(model.bn1, nn.BatchNorm2d)


def test_a_leaf_tensor_deep_copies_and_a_result_does_not():
    t = mr.tensor([1.0, 2.0], requires_grad=True)
    (t * t).sum().backward()
    c = copy.deepcopy(t)
    c.data[0] = 5.0
    assert t.data[0] == 1.0 and c.requires_grad and np.array_equal(c.grad.numpy(), [2.0, 4.0])
    assert type(copy.deepcopy(nn.Parameter(np.zeros(2)))) is nn.Parameter
    with pytest.raises(RuntimeError, match="leaf"):
        copy.deepcopy(t * 2)
