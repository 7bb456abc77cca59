"""CPU grouped convolution: the algorithms, the choice among them, and the three entry points.

The entry points follow the contract shared with `kernels.reference` and the CUDA kernels:
plain arrays and a `Conv2dGeometry` in, a new array out, NCHW, PyTorch semantics. Each pass
runs what `conv2d_algorithm` reports for it (the rule tables of `rules.py`), or the algorithm
a caller forces with ``algorithm=`` (a name, or a `Choice` with parameters; for tests,
benchmarks and tuning).
"""

from __future__ import annotations

import functools

import numpy as np

from ..geometry import Conv2dGeometry
from ..selection import Choice, ConvAlgorithm, ConvChoices, Pass, choose, forced
from . import direct, gemm, implicit, rules, tiled

ALGORITHMS: dict[str, ConvAlgorithm] = {
    a.name: a for a in (direct.ALGORITHM, gemm.ALGORITHM, implicit.ALGORITHM, tiled.ALGORITHM)
}


@functools.lru_cache(maxsize=1024)
def conv2d_algorithm(geometry: Conv2dGeometry) -> ConvChoices:
    """What each pass of this convolution runs on the CPU, and why."""
    return ConvChoices(*(choose(rules.TABLES[p], ALGORITHMS, p, geometry)
                         for p in ("forward", "grad_input", "grad_weight")))


def _choice(pass_: Pass, geometry: Conv2dGeometry, algorithm: str | Choice | None) -> Choice:
    if algorithm is None:
        return conv2d_algorithm(geometry)[pass_]
    name, params = (algorithm.algorithm, algorithm.params) if isinstance(algorithm, Choice) else (
        algorithm, None)
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {tuple(ALGORITHMS)} or None, got {name!r}")
    return forced(ALGORITHMS[name], pass_, geometry, params)


def _run(pass_: Pass, geometry: Conv2dGeometry, algorithm: str | Choice | None, *arrays
         ) -> None:
    choice = _choice(pass_, geometry, algorithm)
    ALGORITHMS[choice.algorithm].kernels[pass_](*arrays, geometry, **choice.params)


def conv2d_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                   geometry: Conv2dGeometry, algorithm: str | Choice | None = None) -> np.ndarray:
    """y (N, C_out, H_out, W_out) = grouped conv of x with w, plus bias."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    y = np.empty(geometry.output_shape, x.dtype)
    _run("forward", geometry, algorithm, x, w, b, y)
    return y


def conv2d_grad_input(grad_out: np.ndarray, w: np.ndarray, geometry: Conv2dGeometry,
                      algorithm: str | Choice | None = None) -> np.ndarray:
    """grad_x (N, C_in, H, W) of the convolution, given grad_out (N, C_out, H_out, W_out)."""
    gy = np.ascontiguousarray(grad_out)
    w = np.ascontiguousarray(w, dtype=gy.dtype)
    gx = np.empty(geometry.input_shape, gy.dtype)
    _run("grad_input", geometry, algorithm, gy, w, gx)
    return gx


def conv2d_grad_weight(x: np.ndarray, grad_out: np.ndarray, geometry: Conv2dGeometry,
                       algorithm: str | Choice | None = None) -> np.ndarray:
    """grad_w (C_out, C_in // groups, kH, kW) of the convolution, deterministic."""
    x = np.ascontiguousarray(x)
    gy = np.ascontiguousarray(grad_out, dtype=x.dtype)
    gw = np.empty(geometry.weight_shape, x.dtype)
    _run("grad_weight", geometry, algorithm, x, gy, gw)
    return gw
