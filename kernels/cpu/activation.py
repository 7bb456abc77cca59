"""ReLU forward and backward as parallel passes, and a convolution's epilogue.

Each is one pass over contiguous memory, split into a few large chunks per thread: NumPy
runs `maximum(x, 0)` on one core, and its backward `g * (y > 0)` as two passes (a boolean
mask, then the product); here each is one pass, over all cores where the array is large
enough to pay for waking them.

The epilogue of an inference convolution, relu(y + residual) (`inference.freeze` fuses a
ResNet block's addition and ReLU into the convolution before them): the pointwise kernel
applies it to each tile row it stores (`intrinsics.finish_row`), the GEMM to each range of
images on that range's thread (`epilogue(..., parallel=False)`); after the others it is one
pass over y in place (`epilogue`), where unfused it would be two passes writing two new arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba import one_thread_below

# Elements per parallel task: large enough that a task's start-up is noise.
_CHUNK = 1 << 15
# Below this many elements a pass runs on the calling thread: waking a second thread cost
# 40-60 us, as long as the whole pass over 2^20 elements takes one (on two threads the forward
# ran at 0.72x there and 1.04x at 2^21, the backward at 0.90x and 1.68x; AMD EPYC, 2 vCPUs).
PARALLEL_MIN_ELEMENTS = 1 << 21

Flat = np.ndarray  # a C-contiguous array viewed as 1-D


@njit(cache=True, parallel=True)
def _relu(x: Flat, y: Flat) -> None:
    zero = y.dtype.type(0)
    for t in prange((x.size + _CHUNK - 1) // _CHUNK):
        # a chunk as views indexed from 0: LLVM vectorises this loop, not one over [lo, hi)
        xs, ys = x[t * _CHUNK:(t + 1) * _CHUNK], y[t * _CHUNK:(t + 1) * _CHUNK]
        for i in range(xs.size):
            ys[i] = zero if xs[i] < zero else xs[i]


@njit(inline="always")
def finish(y: Flat, start: int, count: int, residual: Flat, relu: bool) -> None:
    """y[start:start + count] plus residual[start:start + count] (none where `residual` is
    empty), then max(., 0) where `relu` (NaN stays NaN), in place."""
    zero = y.dtype.type(0)
    ys = y[start:start + count]
    if residual.size:
        rs = residual[start:start + count]
        for i in range(count):
            ys[i] += rs[i]
    if relu:
        for i in range(count):
            ys[i] = zero if ys[i] < zero else ys[i]


@njit(cache=True, parallel=True)
def _epilogue(y: Flat, residual: Flat, relu: bool) -> None:
    for t in prange((y.size + _CHUNK - 1) // _CHUNK):
        finish(y, t * _CHUNK, min(_CHUNK, y.size - t * _CHUNK), residual, relu)


@njit(cache=True)
def _epilogue_here(y: Flat, residual: Flat, relu: bool) -> None:
    finish(y, 0, y.size, residual, relu)


def epilogue(y: np.ndarray, residual: np.ndarray | None, relu: bool,
             parallel: bool = True) -> None:
    """y = relu(y + residual) in place (without the ReLU unless `relu`; no addition where
    `residual` is None): a convolution's fused epilogue after a kernel that has none.

    Args:
        y: C-contiguous float32 or float64 array, written in place.
        residual: y's shape, or None.
        relu: whether negative values become zero.
        parallel: False runs it on the calling thread (a kernel's own worker thread).
    """
    extra = np.empty(0, y.dtype) if residual is None else _flat(residual, y.dtype)
    if extra.size not in (0, y.size):
        raise ValueError(f"epilogue: residual has {extra.size} elements, y {y.size}")
    if not parallel:
        _epilogue_here(y.reshape(-1), extra, relu)
        return
    with one_thread_below(y.size, PARALLEL_MIN_ELEMENTS):
        _epilogue(y.reshape(-1), extra, relu)


@njit(cache=True, parallel=True)
def _relu_backward(g: Flat, y: Flat, dx: Flat) -> None:
    zero = dx.dtype.type(0)
    for t in prange((g.size + _CHUNK - 1) // _CHUNK):
        gs, ys = g[t * _CHUNK:(t + 1) * _CHUNK], y[t * _CHUNK:(t + 1) * _CHUNK]
        ds = dx[t * _CHUNK:(t + 1) * _CHUNK]
        for i in range(gs.size):
            ds[i] = gs[i] if ys[i] > zero else zero


def _flat(a: np.ndarray, dtype: np.dtype) -> Flat:
    return np.ascontiguousarray(a, dtype).reshape(-1)


def relu_forward(x: np.ndarray) -> np.ndarray:
    """max(x, 0) as a new array (NaN stays NaN, like `numpy.maximum`).

    Args:
        x: float32 or float64 array of any shape.
    """
    y = np.empty(x.shape, x.dtype)
    with one_thread_below(x.size, PARALLEL_MIN_ELEMENTS):
        _relu(_flat(x, x.dtype), y.reshape(-1))
    return y


def relu_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """g where the ReLU's output y is positive, else 0, as a new array of y's dtype.

    Args:
        g: gradient with respect to the output, y's shape.
        y: the output of `relu_forward`, float32 or float64.
    """
    dx = np.empty(y.shape, y.dtype)
    with one_thread_below(y.size, PARALLEL_MIN_ELEMENTS):
        _relu_backward(_flat(g, y.dtype), _flat(y, y.dtype), dx.reshape(-1))
    return dx
