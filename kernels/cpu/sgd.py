"""One SGD update over all the parameters of a group, in one parallel pass.

torch.optim.SGD's rule, for each element of a parameter p with gradient g and momentum
buffer b:

    g = g + weight_decay * p
    b = g                                   (first step)
    b = momentum * b + (1 - dampening) * g  (later steps)
    g = g + momentum * b  if nesterov  else  b
    p = p - lr * g

Done per parameter with NumPy this is four or five passes and as many temporaries, each a
Python call; a model has a hundred small parameters, so the calls cost more than the
arithmetic. Here the gradients arrive concatenated in one flat array (one C-level copy),
the parameters and buffers stay where they are and are reached through a table of their
addresses (as PyTorch's multi-tensor "foreach" kernels do), and one loop updates them all.
It runs on one thread: the update reads and writes each parameter once, a few milliseconds
for millions of parameters, and a parallel loop would cost seconds more to compile on the
first run than it saves in a whole training run of the small models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

Addresses = np.ndarray  # (P,) int64: where each parameter's (or buffer's) data starts
Offsets = np.ndarray  # (P + 1,) int64: where each parameter starts in the concatenation


@intrinsic
def _pointer(typingctx, address):
    """The int64 `address` as a void pointer, for `numba.carray`."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit(cache=True)
def _update(params: Addresses, buffers: Addresses, offsets: Offsets, grads: np.ndarray,
            lr: float, momentum: float, dampening: float, weight_decay: float,
            nesterov: bool, first: bool) -> None:
    for k in range(params.size):
        start, size = offsets[k], offsets[k + 1] - offsets[k]
        p = carray(_pointer(params[k]), size, grads.dtype)
        b = carray(_pointer(buffers[k]), size, grads.dtype)
        for i in range(size):
            g = grads[start + i] + weight_decay * p[i]
            if momentum != 0.0:
                b[i] = g if first else momentum * b[i] + (1.0 - dampening) * g
                g = g + momentum * b[i] if nesterov else b[i]
            p[i] -= lr * g


@dataclass(frozen=True)
class SGDPlan:
    """The address tables of a list of parameters and their momentum buffers; it holds the
    arrays, so the addresses stay valid while the plan lives."""

    params: tuple[np.ndarray, ...]
    buffers: tuple[np.ndarray, ...] | None
    param_addresses: Addresses
    buffer_addresses: Addresses
    offsets: Offsets

    def matches(self, params: list[np.ndarray], buffers: list[np.ndarray] | None) -> bool:
        """Whether the plan is for exactly these arrays (the same objects)."""
        return _same(self.params, params) and (
            buffers is None if self.buffers is None else _same(self.buffers, buffers or ()))


def _same(a: tuple[np.ndarray, ...], b: list[np.ndarray] | tuple[()]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _addresses(arrays: tuple[np.ndarray, ...]) -> Addresses:
    return np.fromiter((a.ctypes.data for a in arrays), np.int64, len(arrays))


def sgd_plan(params: list[np.ndarray], buffers: list[np.ndarray] | None) -> SGDPlan | None:
    """The plan `sgd_update` works from, or None unless all the arrays are C-contiguous,
    float32 or float64, of one dtype (then update them one by one). Getting an address costs
    microseconds, so an optimizer keeps the plan while its arrays stay the same.

    Args:
        params: the parameters' arrays.
        buffers: momentum buffers of the same shapes, or None without momentum.
    """
    dtype = params[0].dtype
    if dtype not in (np.float32, np.float64) or not all(
            a.dtype == dtype and a.flags.c_contiguous for a in params + (buffers or [])):
        return None
    offsets = np.zeros(len(params) + 1, np.int64)
    np.cumsum([p.size for p in params], out=offsets[1:])
    kept = tuple(params)
    extra = None if buffers is None else tuple(buffers)
    addresses = _addresses(kept)
    return SGDPlan(kept, extra, addresses,
                   addresses if extra is None else _addresses(extra), offsets)


def sgd_update(plan: SGDPlan, grads: list[np.ndarray], lr: float, momentum: float,
               dampening: float, weight_decay: float, nesterov: bool, first: bool) -> None:
    """One SGD step, in place, for all the parameters of `plan` (and their buffers).

    Args:
        plan: from `sgd_plan` (with buffers exactly when momentum is not 0).
        grads: the parameters' gradients, same shapes, cast to their dtype.
        lr: learning rate.
        momentum: momentum factor (0: no buffers).
        dampening: dampening of the momentum.
        weight_decay: L2 penalty added to the gradient.
        nesterov: use Nesterov momentum.
        first: the buffers are new: b = g instead of the momentum update.
    """
    flat = np.concatenate([g.reshape(-1) for g in grads], dtype=plan.params[0].dtype)
    _update(plan.param_addresses, plan.buffer_addresses, plan.offsets, flat, lr, momentum,
            dampening, weight_decay, nesterov, first)
