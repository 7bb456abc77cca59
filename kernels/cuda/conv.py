"""CUDA grouped convolution: the algorithms, the choice among them, and the three entry points.

The entry points follow the contract shared with `kernels.reference` and the CPU kernels:
arrays and a `Conv2dGeometry` in, a new array out, NCHW, PyTorch semantics. Each pass runs
what `conv2d_algorithm` reports for it (the rule tables of `rules.py`), or the algorithm a
caller forces with ``algorithm=`` (a name, or a `Choice` with parameters). The algorithms'
kernels take, besides the shared kernel contract, the `Runtime` that launches them:
CuPy's by default, the host emulator in the tests.
"""

from __future__ import annotations

import functools
from typing import Any

from ..geometry import Conv2dGeometry
from ..selection import PASSES, Choice, ConvAlgorithm, ConvChoices, Pass, choose, requested
from . import direct, gemm, rules
from .occupancy import HOPPER, Device
from .runtime import Kernel, Runtime, ctype, cupy_runtime

_MODULES = {m.ALGORITHM.name: m for m in (direct, gemm)}
ALGORITHMS: dict[str, ConvAlgorithm] = {name: m.ALGORITHM for name, m in _MODULES.items()}

Algorithm = str | Choice | None


@functools.lru_cache(maxsize=1024)
def conv2d_algorithm(geometry: Conv2dGeometry, dtype: Any = None) -> ConvChoices:
    """What each pass of this convolution runs on the GPU (the same for every dtype), and
    why."""
    return ConvChoices(*(choose(rules.TABLES[p], ALGORITHMS, p, geometry) for p in PASSES))


def _choice(pass_: Pass, geometry: Conv2dGeometry, algorithm: Algorithm) -> Choice:
    if algorithm is None:
        return conv2d_algorithm(geometry)[pass_]
    return requested(ALGORITHMS, pass_, geometry, algorithm)


def planned_kernels(geometry: Conv2dGeometry, ctype_: str, device: Device = HOPPER
                    ) -> list[Kernel]:
    """Every kernel that a pass of this geometry may launch on this device (by default an
    sm_90 GPU): with every algorithm that computes the pass and each of its parameter values.
    What a GPU may have to compile for it."""
    found: dict[Kernel, None] = {}
    for pass_ in PASSES:
        for name, algorithm in ALGORITHMS.items():
            for params in algorithm.candidates(pass_, geometry):
                found.update(dict.fromkeys(_MODULES[name].kernels(pass_, geometry, ctype_,
                                                                  device, **params)))
    return list(found)


def _compute(pass_: Pass, geometry: Conv2dGeometry, algorithm: Algorithm,
             runtime: Runtime | None, a: Any, b: Any, *bias: Any) -> Any:
    """Run one pass on its two operands (C-contiguous in a's dtype, float32 or float64; the
    forward's bias after them) into a new array."""
    rt = runtime or cupy_runtime()
    a = rt.xp.ascontiguousarray(a)
    ctype(a.dtype)
    b = rt.xp.ascontiguousarray(b, dtype=a.dtype)
    grad_out = {"grad_input": a, "grad_weight": b}.get(pass_)
    if grad_out is not None and tuple(grad_out.shape) != geometry.output_shape:
        raise ValueError(f"grad_out has shape {tuple(grad_out.shape)}, expected "
                         f"{geometry.output_shape}")
    bias = tuple(None if v is None else rt.xp.ascontiguousarray(v, dtype=a.dtype) for v in bias)
    shape = {"forward": geometry.output_shape, "grad_input": geometry.input_shape,
             "grad_weight": geometry.weight_shape}[pass_]
    out = rt.xp.empty(shape, dtype=a.dtype)
    if out.size == 0:
        return out
    if a.size == 0 or b.size == 0:  # an empty sum: zero (plus the bias)
        out[...] = 0 if not bias or bias[0] is None else bias[0].reshape(-1, 1, 1)
        return out
    choice = _choice(pass_, geometry, algorithm)
    ALGORITHMS[choice.algorithm].kernels[pass_](a, b, *bias, out, geometry, runtime=rt,
                                                **choice.params)
    return out


def conv2d_forward(x: Any, w: Any, bias: Any | None, geometry: Conv2dGeometry,
                   algorithm: Algorithm = None, runtime: Runtime | None = None) -> Any:
    """y (N, C_out, H_out, W_out) = grouped conv of x with w, plus bias."""
    return _compute("forward", geometry, algorithm, runtime, x, w, bias)


def conv2d_grad_input(grad_out: Any, w: Any, geometry: Conv2dGeometry,
                      algorithm: Algorithm = None, runtime: Runtime | None = None) -> Any:
    """grad_x (N, C_in, H, W): the adjoint of the forward in x."""
    return _compute("grad_input", geometry, algorithm, runtime, grad_out, w)


def conv2d_grad_weight(x: Any, grad_out: Any, geometry: Conv2dGeometry,
                       algorithm: Algorithm = None, runtime: Runtime | None = None) -> Any:
    """grad_w (C_out, C_in // groups, kH, kW): the adjoint of the forward in w, deterministic."""
    return _compute("grad_weight", geometry, algorithm, runtime, x, grad_out)
