"""Bad inputs and faults, by area, each with a clear outcome.

API: misuse of the engine raises ValueError/TypeError/RuntimeError naming the argument or key.
Files: corrupt, foreign and malicious files give an error naming the file (and the key).
CLI: every error is one line, `minitorch-resnext COMMAND: error: ...`, exit status 1 (2 for
argparse's own), no traceback; a new run never destroys an earlier run.
Signals: an interrupt at any moment of a new run leaves the earlier run complete.
MPI: a world of one says so; a rank that fails ends the whole job at once.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import checkpoint, cli, data, io, models, nn, optim
from minitorch_resnext import functional as F
from minitorch_resnext.checkpoint import CheckpointError
from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.train import TrainConfig, evaluate_checkpoint, train

SCRIPTS = Path(__file__).parent / "mpi_scripts"


def tiny(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Batch norm and a linear layer: trains on the digits in a second."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.Flatten(),
                         nn.Linear(in_channels * 16 * 16, num_classes))


def tiny_wide(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Another architecture: its state dict does not fit `tiny`'s."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.Flatten(),
                         nn.Linear(in_channels * 16 * 16, 2 * num_classes))


@pytest.fixture(autouse=True)
def tiny_models(monkeypatch):
    monkeypatch.setitem(models.MODELS, "tiny", tiny)
    monkeypatch.setitem(models.MODELS, "tiny_wide", tiny_wide)


RUN = ["--model", "tiny", "--epochs", "1", "--batch-size", "256", "--warmup-epochs", "0",
       "--no-progress"]


def quiet(_: str) -> None:
    pass


def tiny_config(out: Path, **overrides) -> TrainConfig:
    return TrainConfig(**(dict(model="tiny", epochs=1, batch_size=256, warmup_epochs=0,
                               out_dir=str(out)) | overrides))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The output folder of a one-epoch run of the tiny model (copy before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as m:
        m.setitem(models.MODELS, "tiny", tiny)
        train(tiny_config(out), progress=False, log=quiet)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder, by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ===== API ==================================================================================
def _linear() -> nn.Linear:
    mr.manual_seed(0)
    return nn.Linear(3, 2)


@pytest.mark.parametrize("state, error, message", [
    ([1, 2], TypeError, r"expected state_dict to be a dict of names to arrays, got list"),
    ({"weight": np.array([[None] * 3] * 2, dtype=object), "bias": np.zeros(2)}, RuntimeError,
     r"weight: expected numbers, got an array of dtype object"),
    ({"weight": np.zeros((2, 3)), "bias": "ab"}, RuntimeError,
     r"bias: expected numbers, got str 'ab'"),
    ({"weight": [[1.0, 2.0, 3.0], [4.0]], "bias": np.zeros(2)}, RuntimeError,
     r"weight: cannot be read as an array"),
    ({"weight": np.zeros((3, 2)), "bias": np.zeros(2)}, RuntimeError,
     r"size mismatch for weight: checkpoint has shape \(3, 2\), the model has \(2, 3\)"),
], ids=["list", "object-array", "string", "ragged", "shape"])
def test_load_state_dict_names_the_key_and_changes_nothing(state, error, message):
    lin = _linear()
    before = lin.state_dict()
    with pytest.raises(error, match=message):
        lin.load_state_dict(state)
    for key, value in lin.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_load_state_dict_takes_lists_and_tensors_of_numbers():
    lin = _linear()
    lin.load_state_dict({"weight": [[1, 2, 3], [4, 5, 6]], "bias": mr.tensor([0.5, -0.5])})
    np.testing.assert_array_equal(lin.weight.numpy(), [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(lin.bias.numpy(), [0.5, -0.5])


@pytest.mark.parametrize("args, name", [
    ((3, 4, 0), "kernel_size=(0, 0)"), ((3, 4, 3, 0), "stride=(0, 0)"),
    ((3, 4, -1), "kernel_size=(-1, -1)"), ((3, 4, 3, 1, -1), "padding=(-1, -1)"),
    ((3, 4, 3, 1, 0, 0), "dilation=(0, 0)"),
])
def test_conv2d_layer_with_a_non_positive_size(args, name):
    with pytest.raises(ValueError, match=r"Conv2d: kernel_size, stride and dilation must be "
                                         rf"positive and padding non-negative, got .*{re.escape(name)}"):
        nn.Conv2d(*args)


def test_accuracy_counts_nan_logits_as_wrong():
    logits = mr.tensor([[0.1, 0.9], [np.nan, np.nan], [0.9, np.nan], [2.0, 1.0]])
    assert F.accuracy(logits, mr.tensor([1, 0, 0, 0])) == 0.5  # rows 0 and 3


def test_an_optimizer_step_before_backward_names_the_op():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    loss = conv(mr.randn(1, 1, 4, 4)).sum()
    conv.weight.grad = mr.ones(*conv.weight.shape)
    optim.SGD([conv.weight], lr=0.1).step()
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: the value of "
                                           r"shape \(2, 1, 3, 3\) that Conv2d saved"):
        loss.backward()


@pytest.mark.parametrize("field, value, message", [
    ("warmup_epochs", float("nan"), "warmup_epochs must be a finite number >= 0, got nan"),
    ("lr", float("inf"), "lr must be a finite number >= 0, got inf"),
    ("momentum", -0.5, "momentum must be a finite number >= 0"),
    ("label_smoothing", 1.5, r"label_smoothing must be in \[0, 1\]"),
    ("epochs", 0, "epochs must be a positive integer, got 0"),
    ("eval_batch_size", 0, "eval_batch_size must be a positive integer, got 0"),
    ("batch_size", 2.5, "batch_size must be a positive integer, got 2.5"),
    ("cardinality", 0, "cardinality must be a positive integer"),
    ("seed", -1, "seed must be a non-negative integer, got -1"),
    ("milestones", [1.0, float("nan")], "milestones must be finite numbers"),
])
def test_train_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_evaluate_batch_size_zero_is_refused_not_replaced(finished_run):
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        evaluate_checkpoint(finished_run / "last.npz", batch_size=0)


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        train(tiny_config(tmp_path), resume=True, overwrite=True, log=quiet)


@pytest.mark.parametrize("x_shape, w_shape, groups", [
    ((1, 2, 5, 5), (2, 2, 3, 3), 1),     # direct kernel
    ((2, 64, 8, 8), (64, 16, 3, 3), 4),  # tiled kernel
    ((2, 64, 7, 7), (64, 32, 3, 3), 2),  # implicit kernel
    ((1, 4, 6, 6), (4, 1, 3, 3), 4),     # depthwise kernel, writing "stream"
], ids=["direct", "tiled", "implicit", "depthwise"])
def test_conv2d_with_nan_and_inf_matches_the_reference(x_shape, w_shape, groups):
    """Kernels that multiply zero padding (or skip it) must not move NaN and Inf: the outputs
    that are NaN, infinite or finite are those of the definition (and PyTorch)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    x[0, 0, -1, -1] = np.inf  # read through padding-free windows only by some taps
    w[0, 0, 0, 0] = np.nan    # a tap that never reaches the last row or column
    xt, wt = mr.tensor(x, requires_grad=True), mr.tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, padding=1, groups=groups)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(mr.tensor(g))
    geometry = Conv2dGeometry.of(x.shape, w.shape, padding=1, groups=groups)
    wants = (reference.conv2d_forward(x, w, None, geometry),
             reference.conv2d_grad_input(g, w, geometry),
             reference.conv2d_grad_weight(x, g, geometry))
    for got, want in zip((y.numpy(), xt.grad.numpy(), wt.grad.numpy()), wants):
        assert np.isfinite(want).any() and not np.isfinite(want).all()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)


# ===== files ================================================================================
def _safetensors(path: Path, header: dict, body: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p.with_suffix(".npz").write_bytes(os.urandom(500)) and p.with_suffix(".npz"),
     r"x\.npz: not an \.npz file"),
    (lambda p: p.with_suffix(".npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
     and p.with_suffix(".npz"), r"x\.npz: the archive is truncated or corrupted"),
    (lambda p: p.with_suffix(".safetensors").write_bytes(os.urandom(500))
     and p.with_suffix(".safetensors"), r"x\.safetensors: not a safetensors file"),
    (lambda p: _safetensors(p.with_suffix(".safetensors"), {"w": {"dtype": "F32", "shape": [4],
                                                                  "data_offsets": [0, 16]}}, b"\0" * 8),
     r"x\.safetensors: 'w' of shape \(4,\) and dtype F32 does not match its data offsets"),
    (lambda p: _safetensors(p.with_suffix(".safetensors"), {"w": {"dtype": "F8_E4M3", "shape": [2],
                                                                  "data_offsets": [0, 2]}}, b"\0" * 2),
     r"x\.safetensors: 'w' has dtype F8_E4M3, which this engine cannot hold"),
    (lambda p: _safetensors(p.with_suffix(".safetensors"), {"w": {"dtype": "F32"}}, b""),
     r"x\.safetensors: the header entry of 'w' is malformed"),
], ids=["npz-random", "npz-truncated", "safetensors-random", "safetensors-short",
        "safetensors-fp8", "safetensors-header"])
def test_state_dict_files_that_cannot_be_read(tmp_path, make, message):
    path = make(tmp_path / "x")
    with pytest.raises(ValueError, match=message) as e:
        io.load_state_dict(path)
    assert "allow_pickle" not in str(e.value)


def write_cifar_batch(path: Path, labels, data_array=None) -> None:
    data_array = np.zeros((len(labels), 3072), np.uint8) if data_array is None else data_array
    with open(path, "wb") as f:
        pickle.dump({b"data": data_array, b"labels": labels}, f, protocol=4)


@pytest.fixture
def cifar_folder(tmp_path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(folder / name, [1, 2])
    return folder


class HugeArray:
    """Pickles as numpy's `_reconstruct` asked for an array of 2**40 bytes."""

    def __reduce__(self):
        return (np.zeros(1).__reduce__()[0], (np.ndarray, (2**40,), b"B"))


@pytest.mark.parametrize("labels, data_array, message", [
    ([0.7, 3.9], None, r"'labels' must hold integer class indices, found 0\.7 \(float\)"),
    (np.array([0.0, 1.0]), None, r"'labels' must hold integer class indices, found 0\.0"),
    (["cat", "dog"], None, r"'labels' must hold integer class indices, found 'cat' \(str\)"),
    ([3, 10], None, r"'labels' holds 10, not a class index in \[0, 10\)"),
    ([-1, 0], None, r"'labels' holds -1, not a class index"),
    ([1], HugeArray(), r"refusing to build an empty array of shape \(1099511627776,\)"),
], ids=["floats", "float-array", "strings", "too-large", "negative", "huge-array"])
def test_cifar_batches_with_bad_labels_or_arrays_name_the_file(cifar_folder, labels, data_array,
                                                               message):
    write_cifar_batch(cifar_folder / "test_batch", labels, data_array)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"test_batch: {message}"):
        data.CIFAR10(cifar_folder, train=False)
    assert time.perf_counter() - start < 5


def test_cifar_labels_as_an_integer_array_are_read(cifar_folder):
    write_cifar_batch(cifar_folder / "test_batch", np.array([9, 0], dtype=np.int32))
    assert data.CIFAR10(cifar_folder, train=False).targets.tolist() == [9, 0]


def _altered_copy(finished_run: Path, tmp_path: Path, change) -> Path:
    saved = checkpoint.load(finished_run / "last.npz")
    change(saved)
    path = tmp_path / "altered.npz"
    checkpoint.save(saved, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("config"), r"altered\.npz is not a checkpoint written by train: it has no "
                                r"config"),
    (lambda s: s["config"].update(warmup_epochs=float("nan")),
     r"altered\.npz: its training recipe \('config'\) is not valid: warmup_epochs"),
    (lambda s: s["config"].update(colour="red"), r"altered\.npz: its training recipe"),
    (lambda s: s["model"]["2.weight"].__setitem__((0, 0), np.nan),
     r"altered\.npz: the weights are not finite \(NaN or Inf in 2\.weight\)"),
    (lambda s: s["config"].update(model="tiny_wide"),
     r"(?s)altered\.npz: its model \(tiny_wide\) does not fit: .*size mismatch for 2\.weight"),
], ids=["no-config", "bad-recipe", "unknown-field", "nan-weights", "other-architecture"])
def test_evaluate_refuses_a_checkpoint_naming_the_file_and_key(finished_run, tmp_path, change,
                                                               message):
    path = _altered_copy(finished_run, tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        evaluate_checkpoint(path)


def test_resume_drops_a_half_written_last_metrics_line(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    good = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(good + '{"epoch": 2, "lr": 0.0')
    notes = []
    result = train(tiny_config(out), resume=True, progress=False, log=notes.append)
    assert any(f"dropped the half-written last line of {out / 'metrics.jsonl'} (line 2)" in n
               for n in notes)
    assert [r["epoch"] for r in result.history] == [1]
    assert (out / "metrics.jsonl").read_text() == good  # repaired


def test_resume_names_a_broken_metrics_line_that_is_not_the_last(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    good = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text("garbage\n" + good)
    with pytest.raises(ValueError, match=r"metrics\.jsonl, line 1: not a JSON record"):
        train(tiny_config(out), resume=True, progress=False, log=quiet)


# ===== CLI ==================================================================================
def cli_error(capsys, args: list[str], status: int = 1) -> str:
    """Run the command line, expecting an error: its one line of stderr."""
    if status == 2:  # argparse's own errors
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        assert e.value.code == 2
    else:
        assert cli.main(args) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    command = args[0]
    assert last.startswith(f"minitorch-resnext {command}: error: "), err
    return last


@pytest.mark.parametrize("args, message", [
    (["train", "--warmup-epochs", "nan"], "argument --warmup-epochs: must be a finite number, "
                                          "got 'nan'"),
    (["train", "--lr", "inf"], "argument --lr: must be a finite number, got 'inf'"),
    (["train", "--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
    (["train", "--resume", "--overwrite"], "argument --overwrite: not allowed with argument "
                                           "--resume"),
    (["evaluate", "x.npz", "--batch-size", "0"], "argument --batch-size: must be a positive "
                                                 "integer, got '0'"),
    (["summary", "resnext_small", "--num-classes", "-1"], "argument --num-classes: must be a "
                                                          "positive integer, got '-1'"),
    (["gradcheck", "--examples", "0"], "argument --examples: must be a positive integer, got '0'"),
])
def test_cli_flags_that_argparse_refuses(capsys, args, message):
    assert cli_error(capsys, args, status=2).endswith(message)


@pytest.mark.skipif(mr.cuda_is_available(), reason="a GPU is present")
@pytest.mark.parametrize("command", [["train"], ["evaluate", "x.npz"], ["gradcheck", "mul"]])
def test_cli_device_cuda_without_a_gpu(capsys, command):
    line = cli_error(capsys, [*command, "--device", "cuda"])
    assert "--device cuda: device 'cuda'" in line


def test_cli_out_dir_that_is_a_file_or_inside_one(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    line = cli_error(capsys, ["train", *RUN, "--out-dir", str(tmp_path / "file")])
    assert line.endswith(f"the output folder {tmp_path / 'file'} is a file; choose another "
                         "--out-dir")
    line = cli_error(capsys, ["train", *RUN, "--out-dir", str(tmp_path / "file" / "run")])
    assert str(tmp_path / "file") in line and "Not a directory" in line
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions that bind this user (root writes anywhere)")
def test_cli_out_dir_that_is_not_writable(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = cli_error(capsys, ["train", *RUN, "--out-dir", str(locked / "run")])
    finally:
        locked.chmod(0o700)
    assert str(locked / "run") in line and "Permission denied" in line


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("config"), "it has no config"),
    (lambda s: s["model"]["2.weight"].__setitem__((0, 0), np.inf), "the weights are not finite"),
    (lambda s: s["config"].update(model="tiny_wide"), "its model (tiny_wide) does not fit: "
     "Error(s) in loading state_dict for Sequential: size mismatch for 2.weight"),
], ids=["no-config", "inf-weights", "other-architecture"])
def test_cli_evaluate_a_checkpoint_it_cannot_use(capsys, finished_run, tmp_path, change, message):
    path = _altered_copy(finished_run, tmp_path, change)
    assert message in cli_error(capsys, ["evaluate", str(path)])


def test_cli_a_huge_cifar_array_is_one_line(capsys, cifar_folder, tmp_path):
    write_cifar_batch(cifar_folder / "data_batch_2", [1], HugeArray())
    line = cli_error(capsys, ["train", "--dataset", "cifar10", "--data-dir", str(cifar_folder),
                              "--out-dir", str(tmp_path / "run")])
    assert "data_batch_2: refusing to build an empty array" in line


def test_cli_debug_shows_the_traceback(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        cli.main(["train", *RUN, "--out-dir", str(tmp_path / "file"), "--debug"])


def test_cli_a_checkpoint_write_that_fails_keeps_the_previous_one(capsys, monkeypatch, tmp_path):
    out, real_save, calls = tmp_path / "run", checkpoint.save, [0]

    def full_disk_at_epoch_2(obj, path):  # epoch 1 writes last.npz and best.npz
        calls[0] += 1
        if calls[0] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(obj, path)

    monkeypatch.setattr(checkpoint, "save", full_disk_at_epoch_2)
    line = cli_error(capsys, ["train", *RUN, "--epochs", "2", "--out-dir", str(out)])
    assert line.endswith(f"cannot write the checkpoint {out / 'last.npz'} (No space left on "
                         "device); the previous last.npz is left as it was")
    assert checkpoint.load(out / "last.npz")["position"]["epoch"] == 1


def test_running_the_same_command_twice_moves_the_earlier_run_aside(capsys, tmp_path):
    out = tmp_path / "runs" / "train"
    runs = []
    for _ in range(3):
        assert cli.main(["train", *RUN, "--out-dir", str(out)]) == 0
        runs.append(snapshot(out))
    printed = capsys.readouterr().out
    assert f"moved the earlier run in {out} to {out}.1" in printed
    assert f"moved the earlier run in {out} to {out}.2" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["train", "train.1", "train.2"]
    assert snapshot(out.parent / "train.1") == runs[0]  # the first run, byte for byte
    assert snapshot(out.parent / "train.2") == runs[1]
    assert set(runs[2]) == {"last.npz", "best.npz", "metrics.jsonl", "curves.png", "config.json"}


def test_a_folder_with_other_files_is_refused_unless_overwrite(capsys, finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    line = cli_error(capsys, ["train", *RUN, "--out-dir", str(out)])
    assert line.endswith(f"{out} holds an earlier run and also notes.txt, so it is not moved "
                         "aside: continue the run with --resume, replace its files with "
                         "--overwrite, or choose another --out-dir")
    assert snapshot(out) == before
    assert cli.main(["train", *RUN, "--out-dir", str(out), "--overwrite"]) == 0
    assert "--overwrite: removed the earlier run's last.npz, best.npz" in capsys.readouterr().out
    after = snapshot(out)
    assert after["notes.txt"] == b"mine" and after["last.npz"] != before["last.npz"]
    assert not (tmp_path / "run.1").exists()


def test_a_failed_run_without_results_is_not_moved_aside(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "metrics.jsonl").write_text("")  # what a run that failed before its first epoch leaves
    train(tiny_config(out), progress=False, log=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert json.loads((out / "config.json").read_text())["model"] == "tiny"


# ===== signals ==============================================================================
def test_ctrl_c_early_in_a_new_run_keeps_the_earlier_run(finished_run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = snapshot(out)
    real_step, calls = optim.SGD.step, [0]

    def step_then_interrupt(self, closure=None):
        calls[0] += 1
        if calls[0] == 2:  # a few steps into the first epoch
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, closure)

    monkeypatch.setattr(optim.SGD, "step", step_then_interrupt)
    result = train(tiny_config(out, batch_size=64), progress=False, log=quiet)
    assert result.interrupted
    assert snapshot(tmp_path / "run.1") == before
    position = checkpoint.load(out / "last.npz")["position"]
    assert (position["epoch"], position["batch"]) == (0, 2)


# the atomic writes of a two-epoch run: config, metrics; then per epoch metrics, last, best
@pytest.mark.parametrize("interrupt_at", ["move", "mkdir", *range(1, 7)])
def test_an_interrupt_at_any_moment_of_a_new_run_keeps_the_earlier_run(finished_run, tmp_path,
                                                                       monkeypatch, interrupt_at):
    """A KeyboardInterrupt (a second Ctrl-C, which does not wait for the step to end) during
    the move aside or during any file the new run writes."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = snapshot(out)
    calls = [0]
    real_write, real_rename, real_mkdir = checkpoint.atomic_write, Path.rename, Path.mkdir

    def write(path, fn):
        calls[0] += 1
        if calls[0] == interrupt_at:
            raise KeyboardInterrupt
        real_write(path, fn)

    def rename(self, target):
        if interrupt_at == "move":
            raise KeyboardInterrupt
        return real_rename(self, target)

    def mkdir(self, *args, **kwargs):
        if interrupt_at == "mkdir" and self == out:
            raise KeyboardInterrupt
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "atomic_write", write)
    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(out, epochs=2), progress=False, log=quiet)
    kept = out if interrupt_at == "move" else tmp_path / "run.1"
    assert snapshot(kept) == before


# ===== MPI ==================================================================================
MPIEXEC = (str(Path(sys.executable).parent / "mpiexec")
           if (Path(sys.executable).parent / "mpiexec").exists() else shutil.which("mpiexec"))
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and an mpiexec (pip install -e '.[mpi]' brings both)")


def _run(command: list[str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - start


@needs_mpi
def test_distributed_without_mpiexec_says_it_is_a_world_of_one(tmp_path):
    done, _ = _run([sys.executable, str(SCRIPTS / "tiny_train.py"), "--distributed",
                    "--out-dir", str(tmp_path / "run")])
    assert done.returncode == 0, done.stderr
    assert ("train: note: --distributed, but MPI connects this process alone (it was not "
            "started by mpiexec -n 2 or more): it trains as a world of one rank. To train on N "
            "ranks: mpiexec -n N python -m mpi4py -m minitorch_resnext train --distributed") \
        in done.stderr
    assert (tmp_path / "run" / "last.npz").exists()


@needs_mpi
@pytest.mark.parametrize("runner", [["-m", "mpi4py"], []], ids=["python-m-mpi4py", "plain-python"])
def test_rank_0_failing_to_write_a_checkpoint_ends_the_job_in_one_line(tmp_path, runner):
    out = tmp_path / "run"
    done, seconds = _run([MPIEXEC, "-n", "2", sys.executable, *runner,
                          str(SCRIPTS / "tiny_train.py"), "--full-disk", "--distributed",
                          "--out-dir", str(out)])
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert seconds < 60, f"the job took {seconds:.0f} s to end"
    assert "Traceback" not in output
    assert (f"minitorch-resnext train: error: cannot write the checkpoint {out / 'last.npz'} "
            "(No space left on device); nothing was written") in output
    assert "rank 0 of 2 failed: ending every rank" in output
    assert not (out / "last.npz").exists()
