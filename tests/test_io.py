"""State dicts on disk: npz and safetensors round trips, files from other writers, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import minitorch_resnext as mr
from minitorch_resnext import io, models


def _tiny_resnext() -> models.ResNet:
    """torchvision's ResNet structure (4 stages, ImageNet stem), tiny widths."""
    return models.ResNet((1, 1, 1, 1), num_classes=3, groups=2, width_per_group=16,
                         planes=(4, 8, 16, 32), stem_width=8)


def _trained(model: models.ResNet) -> models.ResNet:
    model(mr.randn(2, 3, 32, 32))  # running statistics and num_batches_tracked move
    return model


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_round_trip_keeps_keys_values_dtypes(tmp_path, suffix):
    mr.manual_seed(0)
    model = _trained(_tiny_resnext())
    path = tmp_path / f"weights{suffix}"
    io.save_state_dict(model, path)
    loaded = io.load_state_dict(path)
    want = model.state_dict()
    assert sorted(loaded) == sorted(want)
    for key, value in want.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    assert loaded["bn1.num_batches_tracked"].shape == () and int(loaded["bn1.num_batches_tracked"]) == 1
    fresh = _tiny_resnext()
    fresh.load_state_dict(loaded)
    fresh.eval()
    model.eval()
    x = mr.randn(2, 3, 32, 32)
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_files_written_elsewhere_in_torchvision_layout_load(tmp_path):
    """A torchvision state dict exported by other tools: keys in another order, torch's
    metadata, a Tensor mapping on save."""
    mr.manual_seed(1)
    state = _trained(_tiny_resnext()).state_dict()
    shuffled = dict(sorted(state.items(), reverse=True))
    save_file(shuffled, str(tmp_path / "tv.safetensors"), metadata={"format": "pt"})
    np.savez(tmp_path / "tv.npz", **shuffled)
    for name in ("tv.safetensors", "tv.npz"):
        model = _tiny_resnext()
        model.load_state_dict(io.load_state_dict(tmp_path / name))
        np.testing.assert_array_equal(model.state_dict()["layer2.0.conv2.weight"],
                                      state["layer2.0.conv2.weight"])
    io.save_state_dict({k: mr.tensor(v) for k, v in state.items()}, tmp_path / "t.npz")
    assert sorted(io.load_state_dict(tmp_path / "t.npz")) == sorted(state)


def test_wrong_model_gives_a_clear_error(tmp_path):
    io.save_state_dict(_tiny_resnext(), tmp_path / "w.npz")
    other = models.ResNet((1, 1, 1, 1), num_classes=5, groups=2, width_per_group=16,
                          planes=(4, 8, 16, 32), stem_width=8)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc.weight: checkpoint has shape "
                                           r"\(3, 128\), the model has \(5, 128\)"):
        other.load_state_dict(io.load_state_dict(tmp_path / "w.npz"))


def test_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    io.save_state_dict({"a": np.arange(3.0)}, path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        io.save_state_dict({"a": np.arange(5.0)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown state-dict format '.pt'"):
        io.save_state_dict({}, tmp_path / "w.pt")
    with pytest.raises(FileNotFoundError, match="no state dict at"):
        io.load_state_dict(tmp_path / "missing.safetensors")
    np.savez(tmp_path / "pickled.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="'a' holds Python objects, which are never loaded") as e:
        io.load_state_dict(tmp_path / "pickled.npz")
    assert "allow_pickle" not in str(e.value)  # never the advice


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int64", "int32", "int16",
                                   "int8", "uint8", "uint16", "uint32", "uint64", "bool"])
def test_safetensors_reader_agrees_with_the_library(tmp_path, dtype):
    from safetensors.numpy import load_file

    rng = np.random.default_rng(0)
    arrays = {"a": (rng.standard_normal((3, 4, 2)) * 50).astype(dtype), "empty": np.zeros((0, 3), dtype),
              "scalar": np.array(7, dtype=dtype)}
    save_file(arrays, str(tmp_path / "x.safetensors"), metadata={"format": "np"})
    ours, theirs = io.load_state_dict(tmp_path / "x.safetensors"), load_file(str(tmp_path / "x.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape
        np.testing.assert_array_equal(ours[key], theirs[key])
        assert ours[key].flags.writeable


def _bfloat16_file(path, values: np.ndarray) -> None:
    """A safetensors file holding `values` (float32 with zero low halves) as BF16, as torch
    writes it: the upper 16 bits of each float32, little-endian."""
    import json
    import struct

    upper = (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"__metadata__": {"format": "pt"}, "w": {
        "dtype": "BF16", "shape": list(values.shape), "data_offsets": [0, upper.nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + upper.tobytes())


def test_bfloat16_loads_exactly_as_float32(tmp_path):
    values = np.array([[0.0, -1.5, 3.140625], [1e30, -np.inf, 2.0**-130]], dtype=np.float32)
    values = ((values.view(np.uint32) >> 16) << 16).view(np.float32)  # exactly representable
    _bfloat16_file(tmp_path / "bf.safetensors", values)
    loaded = io.load_state_dict(tmp_path / "bf.safetensors")["w"]
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, values)
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as torch_save

    torch_save({"w": torch.tensor(values).to(torch.bfloat16)}, str(tmp_path / "t.safetensors"))
    np.testing.assert_array_equal(io.load_state_dict(tmp_path / "t.safetensors")["w"], values)
