"""The op registry: each public op is declared once, where it is defined.

`@op` puts a function into `minitorch_resnext.functional` (`F.<name>`, also for ops registered
by a user's own module after import) and, with
``method=True``, makes it a `Tensor` method too (the tensor is its first argument)::

    class ReLU(Function):
        ...forward and backward...

    @op(method=True)
    def relu(a: Tensor) -> Tensor:
        return ReLU.apply(a)

The op catalogue's coverage test (tests/test_ops.py) reads `OPS`: every differentiable op
must have a case in `minitorch_resnext.testing.cases`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..tensor import Tensor

Op = TypeVar("Op", bound=Callable[..., Any])


@dataclass(frozen=True)
class OpInfo:
    """A registered op: `fn` is `F.<name>`; `alias_of` names the op an alias stands for."""

    name: str
    fn: Callable[..., Any]
    method: bool
    differentiable: bool
    alias_of: str | None = None


OPS: dict[str, OpInfo] = {}


def op(fn: Op | None = None, *, method: bool = False, aliases: tuple[str, ...] = (),
       differentiable: bool = True) -> Any:
    """Register `fn` as a public op (used bare, ``@op``, or with options, ``@op(...)``).

    Args:
        method: also a `Tensor` method (``x.relu()`` calls ``relu(x)``).
        aliases: other names for the same op (``clamp`` for ``clip``).
        differentiable: False for ops with no gradient to check (comparisons, argmax).
    """

    def register(f: Op) -> Op:
        if f.__name__ in OPS:
            raise ValueError(f"op {f.__name__!r} is registered twice")
        functional = sys.modules[__package__]  # minitorch_resnext.functional, maybe still loading
        for name in (f.__name__, *aliases):
            OPS[name] = OpInfo(name, f, method, differentiable,
                               None if name == f.__name__ else f.__name__)
            setattr(functional, name, f)
            if method:
                setattr(Tensor, name, f)
        return f

    return register(fn) if fn is not None else register
