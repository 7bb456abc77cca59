"""Differentiable ops (`import minitorch_resnext.functional as F`), one module per op family."""

from .activation import log_softmax, softmax
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
    "abs", "add", "amax", "argmax", "cast", "cat", "clamp", "clip", "concatenate", "div", "eq",
    "exp", "expand", "flatten", "ge", "gt", "index", "le", "linear", "log", "log_softmax", "lt",
    "matmul", "max", "maximum", "mean", "mul", "ne", "neg", "pad", "permute", "pow", "relu",
    "reshape", "softmax", "sqrt", "squeeze", "stack", "sub", "sum", "to_device", "transpose",
    "unsqueeze", "var", "where",
]
