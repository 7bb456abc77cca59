"""Frozen inference plans (`minitorch_resnext.inference`): a plan computes the folded model's
forward bit for bit at any batch size, with the ReLUs and shortcut additions after its
convolutions fused into them; what cannot be fused or traced is left alone or refused."""

from __future__ import annotations

import numpy as np
import pytest
from test_fuse_conv_bn import randomize_statistics

import minitorch_resnext as mr
import minitorch_resnext.functional as F
from minitorch_resnext import inference, models, nn
from minitorch_resnext.functional.elementwise import Add, ReLU


def small_model(block: str, dtype: str) -> nn.Module:
    model = models.resnext_small(cardinality=2, base_width=2, planes=(4, 8, 8), stem_width=4,
                                 block=block)
    model = randomize_statistics(model, seed=1).eval()
    return model.double() if dtype == "float64" else model


def batch(n: int, dtype: str, seed: int = 0) -> mr.Tensor:
    return mr.tensor(np.random.default_rng(seed).standard_normal((n, 1, 16, 16)).astype(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("block", ["grouped", "split", "concat"])
def test_a_plan_computes_the_folded_forward_bit_for_bit(block, dtype):
    model = small_model(block, dtype)
    plan = inference.freeze(model, batch(2, dtype))
    folded = nn.utils.fuse_conv_bn(model)
    for n in (2, 3, 2):  # batch 3 is traced on first use; batch 2 again reuses its trace
        x = batch(n, dtype, seed=n)
        with mr.no_grad():
            want, unfolded = folded(x).numpy(), model(x).numpy()
        got = plan(x).numpy()
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, want)
        np.testing.assert_allclose(got, unfolded, rtol=1e-4 if dtype == "float32" else 1e-10,
                                   atol=1e-4 if dtype == "float32" else 1e-10)
    assert sorted(plan._traces) == [(2, 1, 16, 16), (3, 1, 16, 16)]
    kinds = [step.fn for step in plan._traces[(3, 1, 16, 16)].steps]
    # every ReLU follows a convolution or an addition to one: only the classifier's bias is
    # added apart
    assert ReLU not in kinds and kinds.count(Add) == 1
    # per block: conv1 and conv2 (per path in the split and concatenated forms; the split
    # form's second path also takes the sum of the paths), and conv3 or the downsample taking
    # the shortcut addition
    per_block = {"grouped": 3, "concat": 2 * 2 + 1, "split": 2 * 2 + 1 + 1}[block]
    assert plan.fusions == 1 + 3 * per_block


class ReadTwice(nn.Module):
    """relu(conv(x)) + conv(x) + b: the convolution's output has two readers, the addition's
    other operand is broadcast (not of the output's shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.other = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Parameter(np.ones((1, 4, 1, 1), np.float32))

    def forward(self, x: mr.Tensor) -> mr.Tensor:
        y = self.conv(x)
        return F.relu(F.relu(y) + y) + F.relu(self.other(x) + self.b)


def test_an_output_read_twice_or_a_broadcast_addition_is_not_fused():
    model = ReadTwice().eval()
    x = mr.tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32))
    plan = inference.freeze(model, x)
    with mr.no_grad():
        assert np.array_equal(plan(x).numpy(), model(x).numpy())
    assert plan.fusions == 0


class OutsideTheOps(nn.Module):
    def forward(self, x: mr.Tensor) -> mr.Tensor:
        return F.relu(mr.tensor(x.numpy() * 2.0))  # computed from the input outside an op


def test_freeze_refuses_what_it_cannot_freeze():
    model = small_model("grouped", "float32")
    with pytest.raises(ValueError, match="eval mode"):
        inference.freeze(model.train(), batch(1, "float32"))
    with pytest.raises(TypeError, match="model must be a Module"):
        inference.freeze(lambda x: x, batch(1, "float32"))
    plan = inference.freeze(model.eval(), batch(1, "float32"))
    with pytest.raises(ValueError, match=r"input must be \(batch, 1, 16, 16\) of float32"):
        plan(batch(1, "float64"))
    with pytest.raises(ValueError, match="input must be"):
        plan(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(RuntimeError, match="does not reproduce the model's forward"):
        inference.freeze(OutsideTheOps().eval(), batch(1, "float32"))
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # left unchanged
