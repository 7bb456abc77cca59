"""The runs in other processes (`elsewhere`): their failures, timeouts and environments reach
the test that owns them."""

from __future__ import annotations

import elsewhere


def _python(code: str, env: dict | None = None, timeout: float = 60) -> elsewhere.RunFor:
    return lambda config: elsewhere.Run(("-c", code), env or {}, timeout)


def test_a_run_reports_its_exit_status_and_output(pytestconfig):
    done = elsewhere.result(_python("import sys; print('out'); sys.exit(3)"), pytestconfig)
    assert (done.returncode, done.stdout) == (3, "out\n")


def test_a_run_sees_variables_set_and_not_those_removed(pytestconfig, monkeypatch):
    monkeypatch.setenv("ELSEWHERE_GONE", "1")
    code = "import os; print(os.environ.get('ELSEWHERE_SET'), os.environ.get('ELSEWHERE_GONE'))"
    done = elsewhere.result(_python(code, {"ELSEWHERE_SET": "x", "ELSEWHERE_GONE": None}),
                            pytestconfig)
    assert done.stdout == "x None\n"


def test_a_run_past_its_time_is_killed_and_fails(pytestconfig):
    done = elsewhere.result(_python("import time; time.sleep(30)", timeout=0.5), pytestconfig)
    assert done.returncode != 0 and "stopped after 0.5 s" in done.stderr


def test_a_run_started_early_is_waited_for(pytestconfig):
    run_for = _python("print('early')")

    class Item:  # what `start` reads of a collected test
        def get_closest_marker(self, name):
            return elsewhere.early(run_for).mark if name == "elsewhere" else None

    elsewhere.start(pytestconfig, [Item()])
    assert run_for in elsewhere._started
    assert elsewhere.result(run_for, pytestconfig).stdout == "early\n"
