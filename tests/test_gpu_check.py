"""scripts/gpu_check.py without a GPU: its deadline guard, its output files and its summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import script_loader

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
MAX_FILES = 8


def _script():
    return script_loader.load("gpu_check")


def _files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]


def test_steps_are_most_valuable_first_and_fit_nine_minutes():
    gpu_check = _script()
    names = [s.name for s in gpu_check.STEPS]
    assert names[:4] == ["env", "install", "precompile", "smoke"] and names[-1] == "gpu-tests"
    assert gpu_check.BUDGET_S <= 9 * 60


def test_the_deadline_guard_skips_what_no_longer_fits(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPU_CHECK_OUT", str(tmp_path))
    gpu_check = _script()
    assert gpu_check.main(["--budget", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-len(gpu_check.STEPS) - 2] == "=== gpu_check summary"  # printed last
    for step, line in zip(gpu_check.STEPS, lines[-len(gpu_check.STEPS):], strict=True):
        assert line.split()[:3] == [step.name, "SKIPPED", "(deadline)"]
    assert sorted(p.name for p in _files(tmp_path)) == ["log.txt", "summary.txt"]


def test_a_run_writes_its_files_flat_and_prints_the_summary_last(tmp_path):
    out = tmp_path / "device-out"
    env = {"PATH": "/usr/bin:/bin", "OUT": str(out)}  # $OUT, as on the device machine
    result = subprocess.run([sys.executable, str(SCRIPT), "--steps", "env", "--budget", "120"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = result.stdout.strip().splitlines()
    assert lines[-3] == "=== gpu_check summary" and lines[-1].split()[0] == "env"
    files = _files(out)
    assert len(files) <= MAX_FILES and all(p.parent == out for p in files)
    info = json.loads((out / "env.json").read_text())
    assert info["packages"]["numpy"] and "gpu" in info
    assert (out / "summary.txt").read_text().strip().splitlines() == lines[-3:]


def test_the_summary_reads_the_benchmark_and_the_variants(tmp_path):
    gpu_check = _script()
    (tmp_path / "conv-cuda.json").write_text(json.dumps({"targets": [
        {"shape": "rx50_s1_g32x4", "pass": "forward", "speedup": 3.5, "roofline_fraction": 0.42,
         "target": ">=3x & >=40% roof", "status": "met"}]}))
    (tmp_path / "variants.json").write_text(json.dumps({"rows": [
        {"shape": "rx50_s1_g32x4", "pass": "forward", "variant": "direct kernel=rows",
         "back_to_back_ms": 0.25, "speedup_vs_default": 1.8}]}))
    text = gpu_check._summary([("bench", "ok", 12.0)], tmp_path)
    assert "3.50x" in text and "42.0%" in text and ">=3x & >=40% roof: met" in text
    assert "direct kernel=rows" in text and "0.250" in text and "1.80x" in text


def test_unknown_steps_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CHECK_OUT", str(tmp_path))
    with pytest.raises(SystemExit):
        _script().main(["--steps", "env,warp-speed"])
