"""Tutorial 1's exercises, checked against the reference convolution and the layers' counts."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from minitorch_resnext import nn
from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.models.summary import shape_and_macs

ONE, ZERO = (1, 1), (0, 0)



def conv(x: np.ndarray, w: np.ndarray, groups: int = 1) -> np.ndarray:
    """The reference convolution, stride 1, no padding."""
    return reference.conv2d_forward(x, w, None, Conv2dGeometry.of(x.shape, w.shape, groups=groups))

@st.composite
def grouped_weights(draw):
    """(x, w, groups) of a small grouped convolution, float64."""
    groups, cg, og = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k, hw, seed = draw(st.integers(1, 3)), draw(st.integers(3, 6)), draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, groups * cg, hw, hw)),
            rng.standard_normal((groups * og, cg, k, k)), groups)


@given(grouped_weights())
def test_grouped_conv2d_is_the_reference_convolution(t1, case):
    x, w, groups = case
    np.testing.assert_allclose(t1.grouped_conv2d(x, w, groups),
                               conv(x, w, groups),
                               rtol=1e-12, atol=1e-12)


@given(grouped_weights())
def test_block_diagonal_weight_computes_the_grouped_convolution(t1, case):
    x, w, groups = case
    dense = t1.block_diagonal(w, groups)
    assert dense.shape == (w.shape[0], x.shape[1], *w.shape[2:])
    np.testing.assert_allclose(conv(x, dense),
                               conv(x, w, groups),
                               rtol=1e-12, atol=1e-12)
    assert np.count_nonzero(dense) == w.size  # only the groups' own weights


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 8), st.sampled_from([1, 3, 5]),
       st.integers(1, 9))
def test_conv_cost_counts_what_the_layer_holds_and_does(t1, cg, og, groups, k, hw):
    layer = nn.Conv2d(cg * groups, og * groups, k, padding=k // 2, groups=groups, bias=False)
    _, macs = shape_and_macs(layer, (1, cg * groups, hw, hw))
    assert t1.conv_cost(cg * groups, og * groups, k, groups, (hw, hw)) == (layer.weight.numel(),
                                                                             macs)


def test_separable_costs_what_its_two_layers_hold(t1):
    for c, k in ((32, 3), (128, 3), (256, 5)):
        depthwise = nn.Conv2d(c, c, k, groups=c, bias=False)
        pointwise = nn.Conv2d(c, c, 1, bias=False)
        assert t1.separable_params(c, k) == depthwise.weight.numel() + pointwise.weight.numel()


def test_fewest_groups_as_cheap_as_separable(t1):
    for c, k in ((32, 3), (128, 3), (256, 5)):
        budget = nn.Conv2d(c, c, k, groups=c, bias=False).weight.numel() + c * c
        cheap = [g for g in range(1, c + 1)
                 if c % g == 0 and nn.Conv2d(c, c, k, groups=g, bias=False).weight.numel() <= budget]
        assert t1.groups_as_cheap_as_separable(c, k) == cheap[0]
