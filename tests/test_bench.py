"""`bench conv` and `bench infer`: the smoke runs' outputs, the FLOP/byte counting, and the timing
helpers (no timing assertions: the numbers depend on the machine)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from minitorch_resnext.bench import _common as common
from minitorch_resnext.bench import conv
from minitorch_resnext.cli import main
from minitorch_resnext.kernels.cpu import tune


def test_flops_and_bytes_of_a_hand_computed_shape():
    # N=2, C=8 -> 8, 6x6 -> 3x3 (stride 2, padding 1), groups 4 (2 ch/group), 3x3 kernel
    g = conv.BenchShape("t", channels=8, hw=6, groups=4, stride=2).geometry(batch=2)
    assert (g.input_shape, g.weight_shape, g.output_shape) == (
        (2, 8, 6, 6), (8, 2, 3, 3), (2, 8, 3, 3))
    # 2 FLOP x 144 outputs x 18 taps; 4 bytes x (576 + 144 + 144) elements
    assert conv.conv_flops(g) == 2 * (2 * 8 * 3 * 3) * (2 * 3 * 3) == 5184
    assert conv.conv_min_bytes(g) == 4 * (576 + 144 + 144) == 3456
    assert conv.conv_min_bytes(g, itemsize=8) == 6912


def test_the_stage1_shape_is_memory_bound_at_about_9_flop_per_byte():
    shape = next(s for s in conv.SHAPES if s.name == "rx50_s1_g32x4")
    g = shape.geometry(32)
    assert 8.5 < conv.conv_flops(g) / conv.conv_min_bytes(g) < 9.5
    dw = next(s for s in conv.SHAPES if s.name == "dw_96_s2_d2")
    assert dw.geometry(1).output_shape == (1, 96, 56, 56)


def test_roofline_is_the_lower_of_peak_and_bandwidth_times_intensity():
    roof = common.Roofline(peak_flops=100e9, bandwidth=10e9, method={})
    assert roof.balance == 10
    assert roof.attainable(flops=40, nbytes=10) == 40e9  # AI 4: memory-bound
    assert roof.attainable(flops=400, nbytes=10) == 100e9  # AI 40: compute-bound


def test_targets_by_channels_per_group():
    assert conv.target_for("cpu", 4, "forward") == conv.Target(3, 0.15)
    assert conv.target_for("cpu", 1, "grad_weight") == conv.Target(2, 0.15)
    assert conv.target_for("cpu", 16, "grad_input").min_speedup == 1
    assert conv.target_for("cpu", 64, "grad_input").min_speedup == 0.8
    assert conv.target_for("cuda", 128, "forward").min_speedup == 0.5
    # the forward pass at small batches has its own targets
    assert conv.target_for("cpu", 4, "forward", batch=8) == conv.Target(2)
    assert conv.target_for("cpu", 32, "forward", batch=1) == conv.Target(1)
    assert conv.target_for("cpu", 4, "grad_input", batch=8) == conv.Target(3, 0.15)
    assert conv.target_for("cpu", 64, "forward", batch=8) == conv.Target(0.8)
    assert conv.target_for("cuda", 4, "forward", batch=8) == conv.Target(3, 0.40)
    t = conv.Target(3, 0.10)
    assert t.status(3.5, 0.2) == "met"
    assert t.status(2.9, 0.2) == "missed"
    assert t.status(None, 0.05) == "missed"
    assert t.status(None, 0.2) == "n/a"


def test_interleaved_timing_runs_rounds_abab_after_warmup():
    calls: list[str] = []
    clock = iter(range(100))
    a = common.Candidate("a", lambda: calls.append("a") or "A", repeats=3)
    b = common.Candidate("b", lambda: calls.append("b"), repeats=1)
    stats = common.time_interleaved([a, b], timer=lambda fn: (fn(), next(clock))[1])
    assert calls == ["a", "b", "a", "b", "a", "a"]
    assert a.result == "A" and stats["a"].samples == (0, 2, 3) and stats["b"].samples == (1,)


def test_back_to_back_times_many_calls_per_measurement():
    calls: list[int] = []
    measured: list[int] = []

    def timer(fn):  # one measurement of 8.0 s, whatever it ran
        before = len(calls)
        fn()
        measured.append(len(calls) - before)
        return 8.0

    assert common.back_to_back(timer, 4)(lambda: calls.append(1)) == 2.0
    assert measured == [4]


def test_package_versions_names_what_provides_an_import_package():
    from importlib import metadata

    # scikit-learn (a dependency) is imported as sklearn, as cupy-cuda13x is as cupy
    assert common.package_versions(["sklearn"]) == {"scikit-learn": metadata.version("scikit-learn")}
    assert common.package_versions(["no-such-package-here"]) == {}


def test_gpu_table_shows_back_to_back_beside_latency():
    rows = [{"shape": "s", "pass": "forward", "implementation": impl, "median_ms": ms,
             "q1_ms": ms, "q3_ms": ms, "gflops": 1.0, "roofline_fraction": 0.5,
             "speedup_vs_torch": 2.0 / ms, "speedup_vs_onnxruntime": None, "back_to_back_ms": ms / 2,
             "back_to_back_roofline_fraction": 0.5, "speedup_back_to_back": 1.0 / (ms / 2)}
            for impl, ms in ((conv.PROJECT, 1.0), (conv.TORCH, 2.0))]
    targets = conv._targets("cuda", [{"name": "s", "channels_per_group": 4}], rows)
    assert targets[0]["basis"] == "back-to-back" and targets[0]["speedup"] == 2.0
    header, _, project, _ = conv._table(rows, targets).splitlines()
    assert "b2b ms" in header and "b2b vs torch" in header
    cells = project.split()  # vs torch, vs onnxrt (none on a GPU), back-to-back ms and speedup
    assert cells[cells.index("0.500") - 2 : cells.index("0.500") + 2] == ["2.00x", "-", "0.500",
                                                                          "2.00x"]


def test_stats_median_quartiles_and_min():
    s = common.Stats.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.q1, s.q3, s.min) == (3.0, 2.0, 4.0, 1.0)
    assert common.Stats.of([2.0]).to_json()["q3_ms"] == 2000.0


def test_format_table_aligns_columns():
    text = common.format_table(["name", "ms"], [["a", "1.5"], ["long", "10.25"]], right=[False, True])
    lines = text.splitlines()
    assert lines[0] == "name     ms" and lines[2] == "a       1.5" and lines[3] == "long  10.25"


def test_bench_conv_quick_writes_json_png_and_prints_the_table(tmp_path, capsys, monkeypatch):
    # the comparisons must skip cleanly without PyTorch and ONNX Runtime
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["bench", "conv", "--quick", "--shapes", "tiny_g4x4", "tiny_g2x32",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PyTorch is not installed" in out and "onnxruntime is not installed" in out
    assert "compiling kernels" in out
    assert "tiny_g4x4" in out and "grad_weight" in out and "GFLOP/s" in out and "% roof" in out

    data = json.loads((tmp_path / "conv-cpu-quick.json").read_text())
    assert (tmp_path / "conv-cpu-quick.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind
    assert {"machine", "threads", "versions", "roofline", "shapes", "results", "targets"} <= data.keys()
    assert data["torch"]["available"] is False and data["roofline"]["peak_gflops"] > 0
    assert [s["name"] for s in data["shapes"]] == ["tiny_g4x4", "tiny_g2x32"]
    assert data["shapes"][0]["flops"] == 2 * 2 * 16 * 10 * 10 * 4 * 9
    results = {(r["shape"], r["pass"], r["implementation"]): r for r in data["results"]}
    assert len(results) == 2 * 3 * 2  # shapes x passes x (minitorch, numpy-ref)
    r = results[("tiny_g4x4", "grad_input", "minitorch")]
    assert len(r["samples_ms"]) == 2 and r["median_ms"] > 0 and r["gflops"] > 0
    assert r["max_rel_err"] < 1e-4 and r["speedup_vs_torch"] is None
    assert {t["status"] for t in data["targets"]} <= {"n/a", "missed"}
    assert {t["baseline"] for t in data["targets"]} == {None}
    assert data["machine"]["tuning"] is tune.is_enabled() and data["machine"]["cpu"] in out
    assert data["machine"]["cpu_target"] in out and data["machine"]["blas"] in out
    shape = data["shapes"][0]
    assert set(shape["algorithm_source"].values()) <= {"rule", "tuned"}
    assert set(shape["algorithm_measured"]) == {"forward", "grad_input", "grad_weight"}


def test_bench_conv_times_onnxruntime_on_the_forward_pass(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["bench", "conv", "--quick", "--shapes", "tiny_dw_s2_d2", "--out", str(tmp_path)]) == 0
    assert "vs onnxrt" in capsys.readouterr().out
    data = json.loads((tmp_path / "conv-cpu-quick.json").read_text())
    assert data["onnxruntime"]["available"] and data["onnxruntime"]["threads"] == data["threads"]
    results = {(r["pass"], r["implementation"]): r for r in data["results"]}
    assert {p for p, i in results if i == "onnxruntime"} == {"forward"}
    ort, ours = results[("forward", "onnxruntime")], results[("forward", "minitorch")]
    assert ort["max_rel_err"] < 1e-5  # checked against the NumPy reference
    # the JSON's times are rounded to the nanosecond, a 1e-4 part of a 10-microsecond call
    assert ours["speedup_vs_onnxruntime"] == pytest.approx(ort["median_ms"] / ours["median_ms"], rel=1e-3)
    targets = {t["pass"]: t for t in data["targets"]}
    assert targets["forward"]["baseline"] == "onnxruntime" and targets["grad_input"]["baseline"] is None
    assert targets["forward"]["speedup"] == ours["speedup_vs_onnxruntime"]


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--threads", "999"]])
def test_bench_conv_rejects_bad_settings(argv, tmp_path):
    with pytest.raises(SystemExit, match="bench conv"):
        main(["bench", "conv", "--quick", "--out", str(tmp_path), *argv])


def test_bench_infer_quick_checks_then_times_each_engine(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["bench", "infer", "--quick", "--batch", "2", "--repeats", "1", "--op-by-op",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PyTorch is not installed" in out and "resnext_small" in out and "img/s" in out
    data = json.loads((tmp_path / "infer-cpu-quick.json").read_text())
    assert not list(tmp_path.glob(".*tmp"))
    rows = {r["engine"]: r for r in data["results"]}
    ours = rows["minitorch"]
    # resnext_small: 137,322 parameters, 6,466,048 multiply-adds per 16x16 image
    assert (ours["model"], ours["batch"], ours["params"], ours["macs"]) == ("resnext_small", 2, 137_322,
                                                                           2 * 6_466_048)
    assert len(ours["samples_ms"]) == 1 and ours["images_per_s"] == pytest.approx(2e3 / ours["median_ms"])
    onnx_present = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
    assert set(rows) - {"onnxruntime"} == {"minitorch", "minitorch-op-by-op"}
    assert ("onnxruntime" in rows) == onnx_present
    # the frozen plan's logits are the op-by-op forward's, bit for bit
    assert rows["minitorch-op-by-op"]["max_rel_err"] == 0.0
    if onnx_present:  # its logits were compared with ours before timing
        assert rows["onnxruntime"]["max_rel_err"] < 1e-5
        assert ours["speedup_vs_onnxruntime"] == pytest.approx(
            rows["onnxruntime"]["median_ms"] / ours["median_ms"], rel=1e-5)
    else:
        assert "onnxruntime is not installed" in out


@pytest.mark.parametrize("argv", [["nonet"], ["--repeats", "0"], ["--batch", "0"]])
def test_bench_infer_rejects_bad_settings(argv, tmp_path):
    with pytest.raises(SystemExit, match="bench infer"):
        main(["bench", "infer", "--quick", "--out", str(tmp_path), *argv])
