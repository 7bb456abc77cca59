"""The trainer on a tiny model: outputs, bit-identical resume, Ctrl-C, divergence, the CLI."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import checkpoint, cli, models, nn, optim
from minitorch_resnext import functional as F
from minitorch_resnext.train import (
    TrainConfig,
    TrainingDiverged,
    evaluate_checkpoint,
    make_scheduler,
    train,
)

STEPS_PER_EPOCH = 12  # 1,438 digits in batches of 128


def tiny(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """BN (with running statistics) and a linear layer: trains on the digits in seconds."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.Flatten(),
                         nn.Linear(in_channels * 16 * 16, num_classes))


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch):
    monkeypatch.setitem(models.MODELS, "tiny", tiny)


def config(tmp_path, name="run", **overrides):
    base = dict(model="tiny", epochs=3, batch_size=128, lr=0.05, warmup_epochs=0.5,
                out_dir=str(tmp_path / name))
    return TrainConfig(**(base | overrides))


def quiet(_: str) -> None:
    pass


def weights(out_dir) -> dict[str, np.ndarray]:
    return checkpoint.load(out_dir / "last.npz")["model"]


def interrupt_at_step(monkeypatch, step: int) -> None:
    """Deliver SIGINT (as Ctrl-C does) during the `step`-th optimizer step."""
    real_step, calls = optim.SGD.step, [0]

    def step_then_interrupt(self, closure=None):
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, closure)

    monkeypatch.setattr(optim.SGD, "step", step_then_interrupt)


def test_train_writes_metrics_curves_and_checkpoints(tmp_path):
    result = train(config(tmp_path), progress=False, log=quiet)
    out = tmp_path / "run"
    assert result.epochs_done == 3 and not result.interrupted
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and records == result.history
    assert {"lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s",
            "elapsed_s"} <= set(records[0])
    assert records[-1]["test_acc"] > 0.8 and records[-1]["train_loss"] < records[0]["train_loss"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = checkpoint.load(out / "last.npz")
    assert saved["position"]["epoch"] == 3 and saved["config"]["model"] == "tiny"
    best_epoch = max(records, key=lambda r: r["test_acc"])
    best = evaluate_checkpoint(out / "best.npz")
    assert best["epochs_done"] == best_epoch["epoch"]
    assert best["test_acc"] == pytest.approx(best_epoch["test_acc"])
    assert evaluate_checkpoint(out / "last.npz")["test_loss"] == pytest.approx(
        records[-1]["test_loss"], rel=1e-5)


@pytest.mark.parametrize("stop_step", [STEPS_PER_EPOCH + 5, STEPS_PER_EPOCH],
                         ids=["mid-epoch", "epoch-end"])
def test_resume_after_ctrl_c_is_bit_identical(tmp_path, monkeypatch, stop_step):
    train(config(tmp_path, "straight"), progress=False, log=quiet)

    with monkeypatch.context() as m:
        interrupt_at_step(m, stop_step)
        stopped = train(config(tmp_path, "resumed"), progress=False, log=quiet)
    assert stopped.interrupted
    saved = checkpoint.load(tmp_path / "resumed" / "last.npz")["position"]
    assert saved["epoch"] * STEPS_PER_EPOCH + saved["batch"] == stop_step

    resumed = train(config(tmp_path, "resumed", epochs=99, lr=9.0), resume=True,  # saved recipe wins
                    progress=False, log=quiet)
    assert resumed.epochs_done == 3 and not resumed.interrupted
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    opt_a = checkpoint.load(tmp_path / "straight" / "last.npz")["optimizer"]["state"]
    opt_b = checkpoint.load(tmp_path / "resumed" / "last.npz")["optimizer"]["state"]
    for i in opt_a:
        np.testing.assert_array_equal(opt_a[i]["momentum_buffer"], opt_b[i]["momentum_buffer"])

    def comparable(path):
        lines = (path / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "elapsed_s")}
                for line in lines]

    assert comparable(tmp_path / "straight") == comparable(tmp_path / "resumed")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_loss, calls = F.cross_entropy, [0]

    def loss_turning_nan(logits, target, **kwargs):
        calls[0] += kwargs.get("reduction", "mean") == "mean"  # training steps, not evaluation
        loss = real_loss(logits, target, **kwargs)
        return loss * float("nan") if calls[0] == STEPS_PER_EPOCH + 4 else loss

    def save_spy(obj, path):
        saves.append(path)
        real_save(obj, path)

    saves, real_save = [], checkpoint.save
    monkeypatch.setattr(checkpoint, "save", save_spy)
    monkeypatch.setattr(F, "cross_entropy", loss_turning_nan)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, batch 4.*last good"):
        train(config(tmp_path), progress=False, log=quiet)
    assert [p.name for p in saves] == ["last.npz", "best.npz"]  # epoch 1 only
    assert checkpoint.load(out / "last.npz")["position"]["epoch"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_scheduler_runs_per_iteration_with_warmup(tmp_path):
    p = nn.Parameter(np.zeros(1, dtype=np.float32))
    opt = optim.SGD([p], lr=0.1)
    sched = make_scheduler(config(tmp_path, epochs=4, warmup_epochs=1), opt, steps_per_epoch=10)
    rates = [sched.get_last_lr()[0]]
    for _ in range(40):
        sched.step()
        rates.append(sched.get_last_lr()[0])
    assert rates[0] == pytest.approx(0.01) and rates[10] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(rates[:10], rates[1:11]))  # warm-up rises
    assert all(a > b for a, b in zip(rates[10:40], rates[11:41]))  # cosine falls ...
    assert rates[40] == pytest.approx(0.0, abs=1e-12)  # ... to zero at the end
    steps = make_scheduler(config(tmp_path, schedule="multistep", milestones=[1, 3],
                                  warmup_epochs=0), optim.SGD([p], lr=0.1), 10)
    for _ in range(30):
        steps.step()
    assert steps.get_last_lr()[0] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="step_size"):
        TrainConfig(schedule="step")


def test_cli_train_resume_and_evaluate(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "--model", "tiny", "--epochs", "1", "--batch-size", "256",
            "--warmup-epochs", "0.5", "--out-dir", str(out), "--no-progress"]
    assert cli.main(args) == 0
    assert "done: final test accuracy" in capsys.readouterr().out
    assert cli.main(["evaluate", str(out / "last.npz")]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert cli.main(["evaluate", str(out / "last.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_done"] == 1
    assert cli.main(["train", "--resume", "--out-dir", str(tmp_path / "nothing")]) == 1
    assert "no checkpoint at" in capsys.readouterr().err
    assert cli.main(["train", "--epochs", "1", "--out-dir", str(tmp_path / "x")]) == 1
    assert "lower --warmup-epochs" in capsys.readouterr().err
    (out / "last.npz").write_bytes(b"PK\x03\x04 truncated")
    assert cli.main(["evaluate", str(out / "last.npz")]) == 1
    assert "truncated or corrupted" in capsys.readouterr().err


def test_bench_train_times_a_step_and_writes_json(tmp_path, capsys):
    args = ["bench", "train", "--models", "resnext_small", "--batch", "2", "--repeats", "1",
            "--warmup", "0", "--threads", "1", "--profile", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "resnext_small" in out and "batch norm alone" in out and "peak RSS MB" in out
    assert "resnext_small, 1 thread(s): mean of 1 training steps" in out  # the profile
    record = json.loads((tmp_path / "train-cpu.json").read_text())
    assert record["machine"]["isa"] and record["threads"] == [1]
    ours = [r for r in record["results"] if r["engine"] == "minitorch"]
    assert len(ours) == 1 and ours[0]["images_per_s"] > 0 and ours[0]["params"] == 137_322
    assert ours[0]["peak_rss_mb"] >= ours[0]["rss_before_steps_mb"] > 0
    norms = [r for r in record["batch_norm"] if r["engine"] == "minitorch"]
    assert len(norms) == 1 and norms[0]["median_ms"] > 0


def test_torch_twin_computes_the_same_function():
    torch = pytest.importorskip("torch")
    from minitorch_resnext.bench.train import torch_twin

    model = models.resnext_small(cardinality=4, base_width=2)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    twin = torch_twin(model, torch)
    for mode in (True, False):
        model.train(mode)
        twin.train(mode)
        ours = model(mr.tensor(x)).numpy()
        theirs = twin(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
