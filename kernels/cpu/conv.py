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


def _run(pass_: Pass, geometry: Conv2dGeometry, algorithm: str | Choice | None,
         out_shape: tuple[int, ...], first: np.ndarray, *others: np.ndarray | None
         ) -> np.ndarray:
    """The pass's output: its kernel run on C-contiguous operands in `first`'s dtype."""
    first = np.ascontiguousarray(first)
    operands = [None if a is None else np.ascontiguousarray(a, first.dtype) for a in others]
    out = np.empty(out_shape, first.dtype)
    choice = _choice(pass_, geometry, algorithm)
    kernel = ALGORITHMS[choice.algorithm].kernels[pass_]
    exact = choice.source == "forced" or pass_ in ALGORITHMS[choice.algorithm].nonfinite_exact
    # NaN or Inf anywhere shows in the weight-shaped array of the pass (the weights, or
    # grad_weight): then a kernel that is not exact with them gives way to im2col + GEMM,
    # whose products are the definition's (checking the small array costs next to nothing)
    if not exact and pass_ != "grad_weight" and not np.isfinite(operands[0]).all():
        kernel, choice = ALGORITHMS["gemm"].kernels[pass_], Choice("gemm", {}, "non-finite")
    kernel(first, *operands, out, geometry, **choice.params)
    if not exact and pass_ == "grad_weight" and not np.isfinite(out).all():
        ALGORITHMS["gemm"].kernels[pass_](first, *operands, out, geometry)
    return out


def conv2d_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                   geometry: Conv2dGeometry, algorithm: str | Choice | None = None) -> np.ndarray:
    """y (N, C_out, H_out, W_out) = grouped conv of x with w, plus bias."""
    return _run("forward", geometry, algorithm, geometry.output_shape, x, w, bias)


def conv2d_grad_input(grad_out: np.ndarray, w: np.ndarray, geometry: Conv2dGeometry,
                      algorithm: str | Choice | None = None) -> np.ndarray:
    """grad_x (N, C_in, H, W) of the convolution, given grad_out (N, C_out, H_out, W_out)."""
    return _run("grad_input", geometry, algorithm, geometry.input_shape, grad_out, w)


def conv2d_grad_weight(x: np.ndarray, grad_out: np.ndarray, geometry: Conv2dGeometry,
                       algorithm: str | Choice | None = None) -> np.ndarray:
    """grad_w (C_out, C_in // groups, kH, kW) of the convolution, deterministic."""
    return _run("grad_weight", geometry, algorithm, geometry.weight_shape, x, grad_out)
