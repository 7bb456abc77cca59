"""Module: registration, traversal, modes, state dicts, device and dtype moves."""

from __future__ import annotations

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.bn = nn.BatchNorm2d(4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2, bias=False)])
        self.scale = nn.Parameter(np.ones(2, dtype=np.float32))
        self.register_buffer("steps", mr.tensor(np.zeros(3, dtype=np.float32)))
        self.register_buffer("scratch", mr.tensor(np.zeros(1, dtype=np.float32)),
                             persistent=False)
        self.note = "plain attribute"

    def forward(self, x: mr.Tensor) -> mr.Tensor:
        x = self.fc1(x).relu()
        for b in self.blocks:
            x = b(x)
        return x * self.scale


def test_registration_and_traversal_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
        "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
    ]
    assert [n for n, _ in net.named_children()] == ["fc1", "bn", "blocks"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "bn", "blocks", "blocks.0",
                                                   "blocks.1"]
    assert [n for n, _ in net.named_buffers()] == [
        "steps", "scratch", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.note == "plain attribute" and "note" not in net._parameters
    assert net.blocks[1].bias is None


def test_shared_parameters_are_listed_once():
    seq = nn.Sequential()
    lin = nn.Linear(2, 2)
    seq.append(lin).append(lin)
    assert len(list(seq.parameters())) == 2
    assert len(seq) == 2 and seq[0] is seq[1] is lin


def test_reassigning_changes_kind_and_errors_are_clear():
    net = Net()
    net.fc1 = nn.Identity()
    assert "fc1.weight" not in dict(net.named_parameters())
    with pytest.raises(TypeError, match="wrap it in nn.Parameter"):
        net.scale = np.ones(2)
    net.scale = None
    assert "scale" not in net.state_dict()
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = net.missing

    class Forgot(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Forgot()


def test_train_eval_propagate_and_zero_grad():
    net = Net()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    out = net(mr.randn(5, 3)).sum()
    out.backward()
    assert net.fc1.weight.grad is not None
    net.zero_grad(set_to_none=False)
    assert np.all(net.fc1.weight.grad.numpy() == 0)
    net.zero_grad()
    assert net.fc1.weight.grad is None


def test_state_dict_is_a_copy_with_torch_keys():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == [
        "scale", "steps", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean",
        "bn.running_var", "bn.num_batches_tracked", "blocks.0.weight", "blocks.0.bias",
        "blocks.1.weight",
    ]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert sd["bn.num_batches_tracked"].shape == () and sd["bn.num_batches_tracked"].dtype == np.int64
    sd["fc1.weight"][...] = 7.0
    assert not np.any(net.fc1.weight.numpy() == 7.0)


def test_load_state_dict_round_trip_in_place():
    mr.manual_seed(1)
    a, b = Net(), Net()
    weight = b.fc1.weight
    b.load_state_dict(a.state_dict())
    assert b.fc1.weight is weight  # copied into, not replaced
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    b.load_state_dict({k: mr.tensor(v) for k, v in a.state_dict().items()})  # Tensors too


def test_load_state_dict_errors_name_every_problem():
    net = Net()
    sd = net.state_dict()
    bad = dict(sd)
    bad["fc1.weight"] = np.zeros((5, 3), np.float32)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1.weight: checkpoint has shape "
                                           r"\(5, 3\), the model has \(4, 3\)"):
        net.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "bn.running_var"}
    with pytest.raises(RuntimeError, match="missing keys: bn.running_var"):
        net.load_state_dict(missing)
    extra = dict(sd, **{"fc9.weight": np.zeros(1)})
    with pytest.raises(RuntimeError, match="unexpected keys: fc9.weight"):
        net.load_state_dict(extra)
    result = net.load_state_dict({**missing, "fc9.weight": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["bn.running_var"] and result.unexpected_keys == ["fc9.weight"]
    with pytest.raises(RuntimeError, match="size mismatch"):  # shapes are checked even then
        net.load_state_dict(bad, strict=False)


def test_failed_load_changes_nothing():
    net = Net()
    before = net.state_dict()
    bad = {k: np.full_like(v, 3) for k, v in before.items()}
    bad["blocks.1.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(RuntimeError):
        net.load_state_dict(bad)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_to_dtype_casts_floats_only():
    net = Net().double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.bn.running_mean.dtype == np.float64
    assert net.bn.num_batches_tracked.dtype == np.int64
    out = net(mr.randn(2, 3, dtype=mr.float64))
    assert out.dtype == np.float64
    with pytest.raises(TypeError, match="floating dtype"):
        net.to(np.int32)


def test_to_device_moves_parameters_and_buffers_in_place(device):
    net = Net()
    weight = net.fc1.weight
    net(mr.randn(2, 3)).sum().backward()
    net.to(device)
    assert net.fc1.weight is weight and weight.device == device
    assert weight.grad.device == device and net.bn.running_var.device == device
    out = net(mr.randn(2, 3).to(device))
    assert out.device == device
    np.testing.assert_allclose(net.cpu().state_dict()["fc1.weight"], weight.numpy())


def test_parameter_from_tensor_keeps_values_and_repr():
    t = mr.tensor([1.0, 2.0])
    p = nn.Parameter(t)
    assert p.requires_grad and p.is_leaf
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])
    assert repr(p).startswith("Parameter containing:")
    frozen = nn.Parameter(t, requires_grad=False)
    assert not frozen.requires_grad


def test_repr_nests_children():
    text = repr(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    assert "(0): Linear(in_features=2, out_features=3, bias=True)" in text
    assert "(1): ReLU()" in text


def test_get_submodule_and_apply():
    net = Net()
    assert net.get_submodule("blocks.1") is net.blocks[1]
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        net.get_submodule("blocks.nope")
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 3
