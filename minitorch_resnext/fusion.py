"""Fused kernels and fused graph nodes: the switch, the kernel lookup, and who is told.

Ops that have a fused kernel on a device (batch norm, ReLU, pooling, cross-entropy, the SGD
update on the CPU) ask `kernel(backend, name)` for it and fall back to their array-generic
composition (`ctx.xp`) when it returns None: on devices without the kernel, or inside
`composed()`, which the tests use to compare the two.

A fusion across ops is announced where it happens: `F.relu` of a batch norm's output becomes
one node whose backward is the batch norm's with the ReLU mask applied in the same pass
(the mask is recomputed from the batch norm's input, so the ReLU saves nothing), and it calls
`announce("batch_norm+relu", source, fused)`. Listeners (the profiler) record the sites.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .backend import Backend

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_composed = False
# listener(kind, source, fused): the Context of the op whose output was fused into, and the
# fused node's
_listeners: list[Callable[[str, Any, Any], None]] = []


def kernel(backend: Backend, name: str, dtype: Any) -> Callable[..., Any] | None:
    """The device's fused kernel `name` for arrays of `dtype`, or None: no such kernel, a
    dtype other than float32 and float64, or inside `composed()`."""
    if _composed or dtype not in _FLOATS:
        return None
    return getattr(backend.kernels, name, None)


def fused() -> bool:
    """Whether ops may use fused kernels and fused nodes (False inside `composed()`)."""
    return not _composed


@contextlib.contextmanager
def composed() -> Iterator[None]:
    """Run every op as its array-generic composition: no fused kernel, no fused node."""
    global _composed
    previous, _composed = _composed, True
    try:
        yield
    finally:
        _composed = previous


def announce(kind: str, source: Any, fused: Any) -> None:
    """Tell the listeners that a fusion of `kind` (e.g. 'batch_norm+relu') happened: the
    output of the op with Context `source` became part of the node with Context `fused`."""
    for listener in _listeners:
        listener(kind, source, fused)


@contextlib.contextmanager
def listening(listener: Callable[[str, Any, Any], None]) -> Iterator[None]:
    """Call `listener(kind, source, fused)` for every fusion announced inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
