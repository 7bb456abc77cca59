"""scripts/phase_floor.py: a strided depthwise forward beside the stride-1 forward of the one
stride phase its taps read, which must agree, and beside one read of the input."""

from __future__ import annotations

import json
import sys

import pytest
import script_loader

script = script_loader.load("phase_floor")


@pytest.mark.parametrize("stride, dilation, size", [(2, 2, 12), (2, 4, 13), (3, 3, 9)])
def test_the_phase_forward_agrees_and_every_candidate_is_timed(
        tmp_path, monkeypatch, capsys, stride, dilation, size):
    out = tmp_path / "floor.json"
    monkeypatch.setattr(sys, "argv", [
        "phase_floor.py", "--channels", "5", "--size", str(size), "--stride", str(stride),
        "--dilation", str(dilation), "--batch", "2", "--repeats", "2", "--threads", "1",
        "--out", str(out)])
    assert script.main() == 0
    data = json.loads(out.read_text())
    assert data["geometry"] == {"batch": 2, "channels": 5, "size": size, "stride": stride,
                                "dilation": dilation}
    assert data["max_rel_diff"] < 1e-5
    assert set(data["timings"]) == {"forward, full input", "stride 1 on the phase",
                                     "phase copy (NumPy)", "read the input"}
    assert all(len(t["samples_ms"]) == 2 and t["median_ms"] > 0
               for t in data["timings"].values())
    assert set(data["forward"]) == {"full input", "phase"}
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"stride {stride}, dilation {dilation}" in lines[0] and len(lines) == 7


def test_a_dilation_that_is_not_a_multiple_of_the_stride_is_refused(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["phase_floor.py", "--stride", "2", "--dilation", "3"])
    with pytest.raises(SystemExit, match="--dilation .3. must be a positive multiple"):
        script.main()
