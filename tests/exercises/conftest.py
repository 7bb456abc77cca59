"""Checks of the tutorials' exercises, run on your answers and on the reference solutions.

Each test takes the fixture of its tutorial (`t1` ... `t6`), which is the exercise module twice:
`[yours]` is `tutorials/exercises/tN_*.py`, the file you fill in, and `[solution]` is
`tutorials/exercises/solutions/tN_*.py`. An exercise you have not written yet (it still raises
`NotImplementedError`) is skipped, not failed, so the suite stays green while the solutions keep
the checks honest. Check your work with `pytest tests/exercises -k "t3 and yours"`.
"""

from __future__ import annotations

from typing import Any

import pytest
from attempts import KINDS, Attempt, exercise_file, load


def _fixture(tutorial: str) -> Any:
    @pytest.fixture(scope="module", params=KINDS, name=tutorial)
    def attempt(request: pytest.FixtureRequest) -> Attempt:
        """One tutorial's exercises: yours, then the reference solutions."""
        return Attempt(load(exercise_file(tutorial, request.param)), request.param)

    return attempt


for _number in range(1, 7):  # fixtures t1 ... t6
    globals()[f"t{_number}"] = _fixture(f"t{_number}")
