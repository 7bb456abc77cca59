"""CPU grouped convolution: the algorithms, the choice among them, and the three entry points.

The entry points follow the contract shared with `kernels.reference` and the CUDA kernels:
plain arrays and a `Conv2dGeometry` in, a new array out, NCHW, PyTorch semantics. Each pass
runs what `conv2d_algorithm` reports for it: the choice measured on this machine (`tune`), or
where tuning is off or not worth it, the rule tables of `rules.py`; or the algorithm a caller
forces with ``algorithm=`` (a name, or a `Choice` with parameters; for tests, benchmarks and
the tuner).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..geometry import Conv2dGeometry
from ..selection import PASSES, Choice, ConvAlgorithm, ConvChoices, Pass, choose, requested
from . import activation, depthwise, direct, gemm, implicit, memory, pointwise, rules, tiled, tune

ALGORITHMS: dict[str, ConvAlgorithm] = {
    a.name: a for a in (depthwise.ALGORITHM, direct.ALGORITHM, gemm.ALGORITHM, implicit.ALGORITHM,
                        pointwise.ALGORITHM, tiled.ALGORITHM)
}
DType = np.dtype | type | str


@functools.lru_cache(maxsize=1024)
def ruled(pass_: Pass, geometry: Conv2dGeometry) -> Choice:
    """What the rule tables choose for this pass."""
    return choose(rules.TABLES[pass_], ALGORITHMS, pass_, geometry)


def conv2d_algorithm(geometry: Conv2dGeometry, dtype: DType = np.float32) -> ConvChoices:
    """What each pass of this convolution runs on the CPU for arrays of `dtype`, and why: a
    choice tuned on this machine (measuring it now if it is the first time) or the rule's."""
    return ConvChoices(*(_chosen(p, geometry, np.dtype(dtype)) for p in PASSES))


def tune_conv2d(geometry: Conv2dGeometry, dtype: DType = np.float32,
                passes: Sequence[Pass] = PASSES) -> dict[Pass, Choice]:
    """The choices of these passes, tuned now if they were not yet, however long this process
    has tuned: ahead of time (`minitorch-resnext tune`, a benchmark's preparation). Where
    tuning is off, or for convolutions below `tune.MIN_MACS`, the rules' choices."""
    return {p: _chosen(p, geometry, np.dtype(dtype), bounded=False) for p in passes}


def _chosen(pass_: Pass, geometry: Conv2dGeometry, dtype: np.dtype, bounded: bool = True
            ) -> Choice:
    return tune.choice(pass_, geometry, dtype, ruled(pass_, geometry), ALGORITHMS, _run, bounded)


def _run(pass_: Pass, geometry: Conv2dGeometry, algorithm: str | Choice | None,
         first: np.ndarray, *others: np.ndarray | None, residual: np.ndarray | None = None,
         relu: bool = False) -> np.ndarray:
    """The pass's output: its kernel run on C-contiguous operands in `first`'s dtype, then the
    forward's epilogue relu(y + residual) where asked (in the kernel where it has one)."""
    first = np.ascontiguousarray(first)
    operands = [None if a is None else np.ascontiguousarray(a, first.dtype) for a in others]
    shape = {"forward": geometry.output_shape, "grad_input": geometry.input_shape,
             "grad_weight": geometry.weight_shape}[pass_]
    out = memory.empty_aligned(shape, first.dtype)
    residual = _operand(residual, out)
    choice = (_chosen(pass_, geometry, first.dtype) if algorithm is None
              else requested(ALGORITHMS, pass_, geometry, algorithm))
    kernel = ALGORITHMS[choice.algorithm].kernels[pass_]
    exact = choice.source == "forced" or pass_ in ALGORITHMS[choice.algorithm].nonfinite_exact
    # NaN or Inf anywhere shows in the weight-shaped array of the pass (the weights, or
    # grad_weight): then a kernel that is not exact with them gives way to im2col + GEMM,
    # whose products are the definition's (checking the small array costs next to nothing)
    if not exact and pass_ != "grad_weight" and not np.isfinite(operands[0]).all():
        kernel, choice = ALGORITHMS["gemm"].kernels[pass_], Choice("gemm", {}, "non-finite")
    fused = residual is not None or relu
    if fused and ALGORITHMS[choice.algorithm].epilogue:
        kernel(first, *operands, out, geometry, residual=residual, relu=relu,
               **choice.params)
        return out
    kernel(first, *operands, out, geometry, **choice.params)
    if not exact and pass_ == "grad_weight" and not np.isfinite(out).all():
        ALGORITHMS["gemm"].kernels[pass_](first, *operands, out, geometry)
    if fused:
        activation.epilogue(out, residual, relu)
    return out


def _operand(residual: np.ndarray | None, out: np.ndarray) -> np.ndarray | None:
    """The residual, checked to have out's shape and dtype, C-contiguous (None stays None)."""
    if residual is None:
        return None
    if residual.shape != out.shape:
        raise ValueError(f"conv2d_forward: residual has shape {residual.shape}, the output "
                         f"{out.shape}")
    if residual.dtype != out.dtype:
        raise TypeError(f"conv2d_forward: residual dtype {residual.dtype} must match the "
                        f"output dtype {out.dtype}")
    return np.ascontiguousarray(residual)


def conv2d_forward(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                   geometry: Conv2dGeometry, algorithm: str | Choice | None = None,
                   residual: np.ndarray | None = None, relu: bool = False) -> np.ndarray:
    """y (N, C_out, H_out, W_out) = grouped conv of x with w, plus bias; then plus `residual`
    (y's shape) and through a ReLU where asked: the epilogue an inference plan fuses into it
    (`minitorch_resnext.inference`), exactly relu(conv + residual) computed op by op."""
    return _run("forward", geometry, algorithm, x, w, bias, residual=residual, relu=relu)


def conv2d_grad_input(grad_out: np.ndarray, w: np.ndarray, geometry: Conv2dGeometry,
                      algorithm: str | Choice | None = None) -> np.ndarray:
    """grad_x (N, C_in, H, W) of the convolution, given grad_out (N, C_out, H_out, W_out)."""
    return _run("grad_input", geometry, algorithm, grad_out, w)


def conv2d_grad_weight(x: np.ndarray, grad_out: np.ndarray, geometry: Conv2dGeometry,
                       algorithm: str | Choice | None = None) -> np.ndarray:
    """grad_w (C_out, C_in // groups, kH, kW) of the convolution, deterministic."""
    return _run("grad_weight", geometry, algorithm, x, grad_out)
