"""Differentiable ops (`import minitorch_resnext.functional as F`), one module per op family."""

from .activation import log_softmax, softmax
from .conv import conv2d, conv2d_algorithm
from .dropout import dropout
from .elementwise import (
    abs,
    add,
    cast,
    clamp,
    clip,
    div,
    eq,
    exp,
    ge,
    gt,
    le,
    log,
    lt,
    maximum,
    mul,
    ne,
    neg,
    pow,
    relu,
    sqrt,
    sub,
    to_device,
    where,
)
from .linalg import linear, matmul
from .loss import accuracy, cross_entropy, nll_loss
from .normalization import batch_norm
from .pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .reduce import amax, argmax, max, mean, sum, var
from .shape import (
    cat,
    concatenate,
    expand,
    flatten,
    index,
    pad,
    permute,
    reshape,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)

__all__ = [
    "abs", "accuracy", "adaptive_avg_pool2d", "add", "amax", "argmax", "avg_pool2d",
    "batch_norm", "cast", "cat", "clamp", "clip", "concatenate", "conv2d", "conv2d_algorithm",
    "cross_entropy", "div",
    "dropout", "eq", "exp", "expand", "flatten", "ge", "gt", "index", "le", "linear", "log",
    "log_softmax", "lt", "matmul", "max", "max_pool2d", "maximum", "mean", "mul", "ne", "neg",
    "nll_loss", "pad", "permute", "pow", "relu", "reshape", "softmax", "sqrt", "squeeze",
    "stack", "sub", "sum", "to_device", "transpose", "unsqueeze", "var", "where",
]
