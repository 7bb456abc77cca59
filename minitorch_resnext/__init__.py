"""minitorch-resnext: a from-scratch autograd engine for learning and measuring ResNeXt."""

import os

# NumPy's OpenBLAS threads spin for about 0.1 s after each BLAS call (2^28 cycles), holding the
# cores that the Numba kernels between a training step's GEMMs need: on 2 cores that took a
# quarter of a ResNeXt-29 step. With this they sleep at once. OpenBLAS reads it when NumPy
# loads, so it is set before anything here imports NumPy (a program that imports NumPy first
# sets it itself); a value the user set is kept. Numba's threads: see `kernels.cpu`.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

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
