"""Every op in the catalogue: forward against NumPy, backward against central differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext.functional.registry import OPS
from minitorch_resnext.testing.cases import CASES, check


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_op_matches_numpy_and_finite_differences(name, device, data):
    case = CASES[name]
    inputs, kwargs = data.draw(case.strategy(), label="inputs")
    result = check(case, inputs, kwargs, device=device)
    if case.reference is not None:
        assert result.forward_error < 1e-12, f"{name}: forward error {result.forward_error}"
    assert result.gradcheck is not None and result.gradcheck.ok, str(result.gradcheck)


def test_every_differentiable_op_has_a_case_in_the_catalogue():
    ops = {name for name, info in OPS.items() if info.differentiable and info.alias_of is None}
    assert len(ops) > 40  # the registry is filled by importing functional
    assert not ops - set(CASES), f"ops without a catalogue case: {sorted(ops - set(CASES))}"


def test_registered_ops_are_functional_names_and_tensor_methods():
    for name, info in OPS.items():
        assert getattr(mr.F, name) is info.fn
        assert (getattr(mr.Tensor, name, None) is info.fn) == info.method, name
    x = mr.tensor([[1.0, -2.0, 3.0]])
    assert x.relu().tolist() == [[1.0, 0.0, 3.0]]
    assert x.reshape(3, 1).shape == x.view((3, 1)).shape == (3, 1)
    assert x.clamp(-1.0, 1.0).tolist() == [[1.0, -1.0, 1.0]]


def test_float32_default_and_scalar_promotion():
    x = mr.tensor([1.0, 2.0])
    assert (x * 2).dtype == mr.float32
    assert (2.5 - x).dtype == mr.float32
    assert (x / 4).numpy().tolist() == [0.25, 0.5]


def test_comparisons_give_bool_without_grad():
    x = mr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = x > 1.5
    assert m.dtype == mr.bool_ and not m.requires_grad
    assert m.numpy().tolist() == [False, True, True]
    assert (x == 2.0).numpy().tolist() == [False, True, False]
    assert (x <= 2.0).numpy().tolist() == [True, True, False]


def test_max_with_dim_returns_values_and_indices():
    x = mr.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]], requires_grad=True)
    values, indices = x.max(dim=1)
    assert values.numpy().tolist() == [5.0, 7.0]
    assert indices.numpy().tolist() == [1, 0]
    values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


def test_max_splits_gradient_between_ties():
    x = mr.tensor([2.0, 2.0, 1.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.5, 0.5, 0.0])


def test_softmax_is_stable_for_large_inputs():
    x = mr.tensor([1000.0, 1001.0, 1002.0], dtype=mr.float64)
    p = x.softmax(0).numpy()
    e = np.exp([-2.0, -1.0, 0.0])
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-12)


def test_shape_op_errors_name_the_problem():
    x = mr.ones(2, 3)
    with pytest.raises(ValueError, match="cannot reshape"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="permutation"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match="cannot expand"):
        x.expand(4, 3)
    with pytest.raises(ValueError, match="differ outside dim"):
        mr.F.cat([mr.ones(2, 3), mr.ones(3, 2)], dim=0)
    with pytest.raises(ValueError, match="non-negative"):
        mr.F.pad(x, (1, -1))
    with pytest.raises(TypeError, match="bool"):
        mr.F.where(x, x, x)
