"""The command line: help, version, and the learner-facing gradcheck."""

from __future__ import annotations

import subprocess
import sys

import pytest

import minitorch_resnext as mr
from minitorch_resnext.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert mr.__version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "gradcheck" in capsys.readouterr().out


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "minitorch_resnext", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "COMMAND" in out


def test_gradcheck_command_prints_a_table(capsys):
    assert main(["gradcheck", "mul", "log_softmax", "--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert "mul" in out and "log_softmax" in out and "2 of 2 ops passed" in out


def test_gradcheck_command_reports_a_broken_op(capsys, monkeypatch):
    from minitorch_resnext.functional import elementwise

    real = elementwise.Exp.backward
    monkeypatch.setattr(elementwise.Exp, "backward", staticmethod(lambda ctx, g: 1.01 * real(ctx, g)))
    assert main(["gradcheck", "exp", "--examples", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "analytic" in out


def test_gradcheck_command_rejects_unknown_op(capsys):
    assert main(["gradcheck", "nope"]) == 1
    assert capsys.readouterr().err.startswith("minitorch-resnext gradcheck: error: unknown op(s) nope")
