"""Checkpoint files: exact round trip without pickle, clear errors, atomic replacement."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import checkpoint
from minitorch_resnext.checkpoint import CheckpointError
from minitorch_resnext.tensor import get_rng_state


def sample():
    return {
        "model": {"conv1.weight": np.random.default_rng(0).standard_normal((4, 3, 3, 3)),
                  "bn1.num_batches_tracked": np.array(7, dtype=np.int64)},
        "optimizer": {"state": {0: {"momentum_buffer": mr.ones(2, 2)}},
                      "param_groups": [{"lr": 0.1 + 0.2, "nesterov": False, "params": [0]}]},
        "scheduler": {"milestones": [3, 5], "_last_lr": [1e-300], "name": None},
        "rng": get_rng_state(),
        "position": {"epoch": np.int64(3), "tuple": (1, "two")},
    }


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.save(sample(), path)
    back = checkpoint.load(path)
    want = sample()
    np.testing.assert_array_equal(back["model"]["conv1.weight"], want["model"]["conv1.weight"])
    assert back["model"]["conv1.weight"].dtype == np.float64
    assert back["model"]["bn1.num_batches_tracked"].dtype == np.int64
    assert list(back["optimizer"]["state"]) == [0]  # integer keys survive
    np.testing.assert_array_equal(back["optimizer"]["state"][0]["momentum_buffer"], np.ones((2, 2)))
    assert back["optimizer"]["param_groups"][0]["lr"] == 0.1 + 0.2
    assert back["scheduler"] == want["scheduler"]
    assert back["rng"] == want["rng"]  # 128-bit integers
    assert back["position"] == {"epoch": 3, "tuple": [1, "two"]}
    # arrays are plain .npy members, readable without pickle
    with np.load(path, allow_pickle=False) as z:
        assert "model/conv1.weight" in z.files


def test_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        checkpoint.save({"f": lambda: 0}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="object array"):
        checkpoint.save({"a": np.array([{}], dtype=object)}, tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())


def test_missing_truncated_and_corrupted_files_raise_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "absent.npz")
    path = tmp_path / "ck.npz"
    checkpoint.save(sample(), path)
    raw = path.read_bytes()
    for name, content in [("truncated", raw[: len(raw) // 2]), ("empty", b""),
                          ("garbage", b"not a zip at all" * 10)]:
        bad = tmp_path / f"{name}.npz"
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            checkpoint.load(bad)
    # flip bytes inside the first array's data: the zip's CRC-32 catches it
    flipped = bytearray(raw)
    at = raw.index(b"NUMPY") + 200
    flipped[at:at + 8] = bytes(b ^ 0xFF for b in flipped[at:at + 8])
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        checkpoint.load(bad)


def test_other_npz_files_are_not_checkpoints(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a minitorch-resnext checkpoint"):
        checkpoint.load(path)


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    checkpoint.save({"epoch": 1, "w": np.zeros(1000)}, path)
    before = path.read_bytes()

    real_savez = np.savez

    def savez_then_interrupt(file, **arrays):
        real_savez(file, **arrays)
        file.truncate(100)  # half-written ...
        raise KeyboardInterrupt  # ... when Ctrl-C arrives

    monkeypatch.setattr(np, "savez", savez_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"epoch": 2, "w": np.ones(1000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]  # no temporary left behind
    assert checkpoint.load(path)["epoch"] == 1


@pytest.mark.skipif(os.name != "posix", reason="finding dead writers needs POSIX signal 0")
def test_a_killed_writers_temporary_is_removed_by_the_next_save(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    path = tmp_path / "last.npz"
    stale = tmp_path / f".last.npz.{dead.pid}.tmp"
    live = tmp_path / f".last.npz.{os.getppid()}.tmp"  # a process that is still running
    other = tmp_path / ".other.npz.1.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"half a checkpoint")
    checkpoint.save({"epoch": 1}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name, other.name])
    assert checkpoint.load(path)["epoch"] == 1
