"""minitorch-resnext: a from-scratch autograd engine for learning and measuring ResNeXt."""

from . import (
    _threads,  # noqa: F401  (first: the thread pools wait passively)
    data,
    functional,
    inference,
    io,
    models,
    nn,
    optim,
)
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
    "enable_grad", "float32", "float64", "full", "functional", "get_backend", "inference", "int64", "io",
    "is_grad_enabled", "manual_seed", "matmul", "maximum", "models", "nn", "no_grad", "ones",
    "ones_like", "optim", "rand", "randint", "randn", "stack", "tensor", "where", "zeros", "zeros_like",
]
