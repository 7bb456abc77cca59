"""minitorch-resnext: a from-scratch autograd engine for learning and measuring ResNeXt."""

import os

# Both thread pools wait passively. NumPy's OpenBLAS threads spin for about 0.1 s after each
# BLAS call (2^28 cycles), holding the cores that the Numba kernels between a training step's
# GEMMs need: on 2 cores that took a quarter of a ResNeXt-29 step. Numba's OpenMP threads spin
# after each parallel kernel too, holding a core that BLAS or the Python thread needs next:
# calling `numba.set_num_threads` before they were told made a 2-thread ResNeXt-50 inference
# slower than a 1-thread one. OpenBLAS reads its setting when NumPy loads and OpenMP when Numba
# starts its threads, so both are set before anything here imports either (a program that
# imports NumPy first sets OPENBLAS_THREAD_TIMEOUT itself); a value the user set is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import data, functional, io, models, nn, optim
from .autograd import Function, enable_grad, is_grad_enabled, no_grad
from .backend import cuda_is_available, get_backend
from .tensor import (
    Tensor,
    arange,
    bool_,
    float32,
    float64,
    full,
    int64,
    manual_seed,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)

F = functional
cat, stack, where, matmul, maximum = F.cat, F.stack, F.where, F.matmul, F.maximum
__version__ = "0.1.0"

__all__ = [
    "F", "Function", "Tensor", "arange", "bool_", "cat", "cuda_is_available", "data",
    "enable_grad", "float32", "float64", "full", "functional", "get_backend", "int64", "io",
    "is_grad_enabled", "manual_seed", "matmul", "maximum", "models", "nn", "no_grad", "ones",
    "ones_like", "optim", "rand", "randint", "randn", "stack", "tensor", "where", "zeros", "zeros_like",
]
