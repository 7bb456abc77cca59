"""minitorch-resnext: a from-scratch autograd engine for learning and measuring ResNeXt."""

from . import functional
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
__version__ = "0.1.0"

__all__ = [
    "F", "Function", "Tensor", "arange", "bool_", "cuda_is_available", "enable_grad", "float32",
    "float64", "full", "functional", "get_backend", "int64", "is_grad_enabled", "manual_seed",
    "no_grad", "ones", "ones_like", "rand", "randint", "randn", "tensor", "zeros", "zeros_like",
]
