"""scripts/rule_sweep.py: two algorithms timed side by side on every cell, the ratio recorded."""

from __future__ import annotations

import json
import sys

import pytest
import script_loader

script = script_loader.load("rule_sweep")


def test_each_cell_times_both_algorithms_and_records_their_ratio(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep.json"
    monkeypatch.setattr(sys, "argv", ["rule_sweep.py", "--channels", "12", "--sizes", "8", "9",
                                      "--batch", "1", "--repeats", "1", "--threads", "1",
                                      "--out", str(out)])
    assert script.main() == 0
    data = json.loads(out.read_text())
    assert data["threads"] == 1 and data["algorithms"] == ["direct", "implicit"]
    assert [(c["channels_per_group"], c["groups"], c["size"]) for c in data["cells"]] == [
        (12, 32, 8), (12, 32, 9)]
    for cell in data["cells"]:
        for pass_ in ("forward", "grad_input", "grad_weight"):
            t = cell[pass_]
            assert t["direct_ms"] > 0 and t["implicit_ms"] > 0
            assert t["ratio"] == pytest.approx(t["direct_ms"] / t["implicit_ms"], abs=1e-3)
    table = capsys.readouterr().out
    assert "ratio = direct / implicit" in table and len(table.strip().splitlines()) == 5


def test_1x1_cells_time_the_passes_both_algorithms_compute(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep.json"
    monkeypatch.setattr(sys, "argv", ["rule_sweep.py", "--algorithms", "gemm", "pointwise",
                                      "--kernel", "1", "--groups", "1", "--stride", "1",
                                      "--channels", "16", "--sizes", "7", "--batch", "2",
                                      "--repeats", "1", "--threads", "1", "--out", str(out)])
    assert script.main() == 0
    data = json.loads(out.read_text())
    [cell] = data["cells"]
    assert data["kernel"] == 1 and (cell["channels_per_group"], cell["groups"]) == (16, 1)
    assert set(cell) - {"channels_per_group", "groups", "size"} == {"forward", "grad_input"}
    header = capsys.readouterr().out.splitlines()[1]
    assert "fwd pointwise" in header and "gin gemm" in header and "gw" not in header


def test_an_unknown_algorithm_is_one_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["rule_sweep.py", "--algorithms", "direct", "winograd"])
    with pytest.raises(SystemExit, match=r"--algorithms: 'winograd' is not one of"):
        script.main()


def test_an_algorithm_can_name_its_tuning_parameters(tmp_path, monkeypatch):
    """`direct:read=stream` against `direct:read=buffers`: the forward and grad_input, which
    have that parameter; grad_weight, which has not, is left out."""
    out = tmp_path / "sweep.json"
    monkeypatch.setattr(sys, "argv", ["rule_sweep.py", "--algorithms", "direct:read=buffers",
                                      "direct:read=stream", "--stride", "1", "--channels", "4",
                                      "--sizes", "6", "--batch", "1", "--repeats", "1",
                                      "--threads", "1", "--out", str(out)])
    assert script.main() == 0
    [cell] = json.loads(out.read_text())["cells"]
    assert set(cell) - {"channels_per_group", "groups", "size"} == {"forward", "grad_input"}
    assert cell["forward"]["direct:read=stream_ms"] > 0
    assert script.parse_algorithm("direct:read=stream,x=1") == ("direct", {"read": "stream",
                                                                           "x": "1"})


@pytest.mark.parametrize("spec", ["direct:read", "direct:=stream", "direct:read=stream,"])
def test_a_malformed_parameter_is_one_line(monkeypatch, spec):
    monkeypatch.setattr(sys, "argv", ["rule_sweep.py", "--algorithms", "direct", spec])
    with pytest.raises(SystemExit, match=r"--algorithms: .* parameters are KEY=VALUE"):
        script.main()


def test_parameters_that_no_cell_runs_with_are_one_line(monkeypatch):
    """A value outside the algorithm's space (or a parameter it lacks) leaves nothing to time."""
    monkeypatch.setattr(sys, "argv", ["rule_sweep.py", "--algorithms", "direct:read=stream",
                                      "direct:read=nowhere", "--stride", "1", "--channels", "4",
                                      "--sizes", "6", "--batch", "1", "--repeats", "1",
                                      "--threads", "1"])
    with pytest.raises(SystemExit, match=r"--algorithms: .* compute no pass of any cell"):
        script.main()
