"""Every public module, class and function of the package says what it is for.

Public means importable without a leading underscore anywhere in its name, defined in the module
that is checked (not imported into it); Numba-compiled functions are checked through the Python
function they compile. The API reference pages are generated from these docstrings.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import minitorch_resnext
import minitorch_resnext.kernels


def public_modules() -> list[str]:
    names = {minitorch_resnext.__name__, minitorch_resnext.kernels.__name__}
    for package in (minitorch_resnext, minitorch_resnext.kernels):
        names |= {m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")}
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))


def defined_here(module: ModuleType) -> dict[str, object]:
    """Public classes and functions defined in `module` (the Python function behind a Numba one)."""
    found = {}
    for name, obj in vars(module).items():
        obj = getattr(obj, "py_func", obj)
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if obj.__module__ == module.__name__:
            found[name] = obj
    return found


@pytest.mark.parametrize("name", public_modules())
def test_public_names_have_docstrings(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # an optional dependency (CuPy, mpi4py) that is not installed
        pytest.skip(f"{name} does not import here: {e}")
    missing = [] if (module.__doc__ or "").strip() else ["(the module)"]
    missing += [attr for attr, obj in defined_here(module).items() if not (obj.__doc__ or "").strip()]
    assert not missing, f"{name}: no docstring on {', '.join(missing)}"
