"""Thread pools that wait passively: importing the package makes NumPy's OpenBLAS threads sleep
as soon as a call ends (instead of spinning for about 0.1 s on the cores the Numba kernels
need), and Numba's OpenMP threads after each kernel, unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, os
import minitorch_resnext  # first, as a program or the command line does
from threadpoolctl import threadpool_info
read = {}
for lib in threadpool_info():
    if lib["internal_api"] == "openblas":
        try:
            read[lib["filepath"]] = ctypes.CDLL(lib["filepath"]).openblas_thread_timeout()
        except AttributeError:  # a build that does not export it
            pass
print(json.dumps({"env": os.environ.get("OPENBLAS_THREAD_TIMEOUT"), "read": read,
                  "omp": os.environ.get("OMP_WAIT_POLICY")}))
"""


def probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("user, expected", [(None, 4), ("12", 12)])
def test_openblas_threads_sleep_after_a_call_unless_the_user_says(user, expected):
    result = probe(**({} if user is None else {"OPENBLAS_THREAD_TIMEOUT": user}))
    assert result["env"] == str(expected)
    # where NumPy's BLAS is OpenBLAS, it read the value when it loaded
    assert all(value == expected for value in result["read"].values())


@pytest.mark.parametrize("user, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_numba_openmp_threads_wait_passively_unless_the_user_says(user, expected):
    """Set on importing the package, before a program can start Numba's threads (with
    `numba.set_num_threads`) and before the CPU kernels load."""
    result = probe(**({} if user is None else {"OMP_WAIT_POLICY": user}))
    assert result["omp"] == expected


LATE = """
import warnings
import numba
{before}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minitorch_resnext
print(numba.threading_layer() if numba.np.ufunc.parallel._is_initialized else "-")
print("|".join(str(w.message) for w in caught if w.category is RuntimeWarning))
"""


@pytest.mark.parametrize("before, user, warned", [
    ("numba.set_num_threads(1)", None, True),  # Numba's threads started, spinning
    ("numba.set_num_threads(1)", "PASSIVE", False),  # the user chose their policy
    ("", None, False),  # not started yet: the import sets the policy in time
])
def test_importing_after_numba_threads_started_says_they_spin(before, user, warned):
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env = {**clean, **({} if user is None else {"OMP_WAIT_POLICY": user})}
    layer, message = subprocess.run(
        [sys.executable, "-c", LATE.format(before=before)], env=env, check=True,
        capture_output=True, text=True).stdout.splitlines()[-2:]
    if layer not in ("omp", "-"):
        pytest.skip(f"Numba runs on the {layer} threading layer here, not OpenMP")
    assert ("OMP_WAIT_POLICY=PASSIVE" in message) == warned, message
