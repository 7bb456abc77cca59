"""Both thread pools wait passively, set before anything in the package imports NumPy or Numba.

NumPy's OpenBLAS threads spin for about 0.1 s after each BLAS call (2^28 cycles), holding the
cores that the Numba kernels between a training step's GEMMs need: on 2 cores that took a
quarter of a ResNeXt-29 step. Numba's OpenMP threads spin after each parallel kernel too,
holding a core that BLAS or the Python thread needs next. OpenBLAS reads its setting when
NumPy loads and OpenMP when Numba starts its threads, so both are set on importing the package
(a program that imports NumPy first sets OPENBLAS_THREAD_TIMEOUT itself); a value the user set
is kept. Where Numba's threads already run, spinning, a warning says so.
"""

import os
import sys
import warnings

SPINNING = "OMP_WAIT_POLICY" not in os.environ  # Numba's OpenMP threads spin unless told
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _warn_if_threads_spin() -> None:
    """Say so when Numba's OpenMP threads started before the package was imported (the program
    called `numba.set_num_threads` or ran a parallel kernel first): they spin between kernels,
    which made a 2-thread ResNeXt-50 inference five times slower than with passive threads."""
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if not (SPINNING and parallel is not None and parallel._is_initialized):
        return
    import numba

    if numba.threading_layer() == "omp":
        warnings.warn(
            "Numba's OpenMP threads started before minitorch_resnext was imported, without "
            "OMP_WAIT_POLICY: they spin between kernels and can make multi-threaded runs "
            "several times slower. Import minitorch_resnext before numba.set_num_threads "
            "(or any parallel Numba code), or set OMP_WAIT_POLICY=PASSIVE.",
            RuntimeWarning, stacklevel=4)  # the program's import line


_warn_if_threads_spin()
