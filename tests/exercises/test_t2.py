"""Tutorial 2's exercises, checked against the blocks of `models` and the reference convolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext import models, nn
from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry

ONE, ZERO = (1, 1), (0, 0)


def conv(x: np.ndarray, w: np.ndarray, padding: int = 0) -> np.ndarray:
    return reference.conv2d_forward(x, w, None, Conv2dGeometry.of(x.shape, w.shape, padding=padding))


def randomized(block: models.Bottleneck, seed: int) -> models.Bottleneck:
    """The block in float64 with random BN scales, shifts and statistics, in eval mode."""
    rng = np.random.default_rng(seed)
    block.to(mr.float64).eval()
    state = block.state_dict()
    for key, value in state.items():
        if key.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith(("bias", "running_mean")):
            state[key] = rng.normal(0.0, 0.1, value.shape)
    block.load_state_dict(state)
    return block


@pytest.mark.parametrize("with_downsample", [False, True])
def test_concat_state_is_convert_block(t2, with_downsample):
    mr.manual_seed(0)
    stage = models.resnext_small(cardinality=4, base_width=4).layer1  # 32 -> 64: a projection
    block = randomized(stage[0] if with_downsample else models.Bottleneck(32, 8, groups=4,
                                                                          base_width=32), 1)
    assert (block.downsample is not None) == with_downsample
    state = t2.concat_state(block.state_dict(), block.groups)
    concat = models.convert_block(block, "concat")
    expected = concat.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    concat.load_state_dict(state)
    x = mr.tensor(np.random.default_rng(2).standard_normal((2, block.inplanes, 4, 4)))
    np.testing.assert_allclose(concat(x).numpy(), block(x).numpy(), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 5), st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_split_last_conv_sums_to_the_conv_of_the_concatenation(t2, groups, d, out, seed):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((2, groups * d, 3, 3))
    w3 = rng.standard_normal((out, groups * d, 1, 1))
    parts = t2.split_last_conv(w3, groups)
    assert len(parts) == groups and all(p.shape == (out, d, 1, 1) for p in parts)
    summed = sum(conv(h[:, i * d:(i + 1) * d], p) for i, p in enumerate(parts))
    np.testing.assert_allclose(summed, conv(h, w3), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_bn_affine_is_batch_norm_in_eval_mode(t2, channels, seed):
    rng = np.random.default_rng(seed)
    bn = nn.BatchNorm2d(channels, eps=rng.uniform(1e-5, 1e-1)).to(mr.float64).eval()
    bn.load_state_dict({**bn.state_dict(), "weight": rng.normal(size=channels),
                        "bias": rng.normal(size=channels), "running_mean": rng.normal(size=channels),
                        "running_var": rng.uniform(0.1, 3.0, channels)})
    x = rng.standard_normal((3, channels, 2, 2))
    scale, shift = t2.bn_affine(bn.weight.numpy(), bn.bias.numpy(), bn.running_mean.numpy(),
                                bn.running_var.numpy(), bn.eps)
    np.testing.assert_allclose(scale[:, None, None] * x + shift[:, None, None],
                               bn(mr.tensor(x)).numpy(), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 4), st.sampled_from([1, 3]),
       st.integers(0, 2**32 - 1))
def test_wide_weights_compute_the_sum_of_the_paths(t2, paths, d, width, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, width, 5, 5))
    w1s = [rng.standard_normal((d, width, k, k)) for _ in range(paths)]
    w2s = [rng.standard_normal((width, d, k, k)) for _ in range(paths)]
    aggregated = sum(conv(np.maximum(conv(x, a, k // 2), 0), b, k // 2) for a, b in zip(w1s, w2s))
    w1, w2 = t2.wide_weights(w1s, w2s)
    assert w1.shape == (paths * d, width, k, k) and w2.shape == (width, paths * d, k, k)
    np.testing.assert_allclose(conv(np.maximum(conv(x, w1, k // 2), 0), w2, k // 2), aggregated,
                               rtol=1e-10, atol=1e-10)
