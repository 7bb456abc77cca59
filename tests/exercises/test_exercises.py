"""The exercises stay in step with their solutions and their checks."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from attempts import EXERCISES, exercise_file, load

TUTORIALS = [f"t{n}" for n in range(1, 7)]
EXERCISE = re.compile(r"Exercise (\d+)\.(\d+)")


def exercises(path: Path) -> dict[str, str]:
    """Function name -> exercise number ("3.2") of the functions a file asks the learner for."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        doc = ast.get_docstring(node) if isinstance(node, ast.FunctionDef) else None
        if doc and (match := EXERCISE.match(doc)):
            found[node.name] = f"{match[1]}.{match[2]}"
    return found


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_at_least_three_exercises_per_tutorial(tutorial):
    numbers = set(exercises(exercise_file(tutorial, "yours")).values())
    assert len(numbers) >= 3, numbers
    assert all(n.startswith(tutorial[1:] + ".") for n in numbers), numbers


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_solutions_have_the_signatures_of_the_stubs(tutorial):
    stubs, solutions = (load(exercise_file(tutorial, kind)) for kind in ("yours", "solution"))
    for name in exercises(exercise_file(tutorial, "yours")):
        assert inspect.signature(getattr(stubs, name)) == inspect.signature(getattr(solutions, name)), name


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_stubs_are_left_for_the_learner(tutorial):
    """What the repository ships in tutorials/exercises/ is to be written, not solved."""
    tree = ast.parse(exercise_file(tutorial, "yours").read_text(encoding="utf-8"))
    stubs = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name in exercises(exercise_file(tutorial, "yours")):
        last = stubs[name].body[-1]
        assert isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last), name
        assert len(stubs[name].body) == 2, f"{name}: the stub should be its docstring and the raise"


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_every_exercise_is_checked(tutorial):
    (checks,) = Path(__file__).parent.glob(f"test_{tutorial}.py")
    text = checks.read_text(encoding="utf-8")
    unchecked = [name for name in exercises(exercise_file(tutorial, "yours"))
                 if f"{tutorial}.{name}(" not in text]
    assert not unchecked, f"no check calls {unchecked}"


def test_each_tutorial_points_to_its_exercises():
    for tutorial in TUTORIALS:
        path = exercise_file(tutorial, "yours")
        (script,) = EXERCISES.parent.glob(f"0{tutorial[1:]}_*.py")
        assert f"exercises/{path.name}" in script.read_text(encoding="utf-8"), script.name
