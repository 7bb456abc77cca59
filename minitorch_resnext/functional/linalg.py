"""Matrix products: `matmul` (NumPy semantics, batched and broadcast) and `linear`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Context, Function
from ..tensor import Tensor
from .elementwise import require_float
from .registry import op


class MatMul(Function):
    """a @ b with NumPy's matmul semantics (batched, 1-D operands promoted)."""
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        require_float("matmul", a, b)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one dimension")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not chain "
                f"({a.shape[-1]} != {b.shape[-2 if b.ndim > 1 else 0]})"
            )
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        xp = ctx.xp
        # treat vectors as matrices, then drop the added axes again
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        g2 = g.reshape(batch + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            if a.ndim == 1:
                ga = ga.reshape(-1, a.shape[0]).sum(0)
        if ctx.needs_input_grad[1]:
            gb = xp.swapaxes(a2, -1, -2) @ g2
            if b.ndim == 1:
                gb = gb.reshape(-1, b.shape[0]).sum(0)
        return ga, gb


@op
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b, like torch.matmul."""
    return MatMul.apply(a, b)


@op
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b, like `torch.nn.functional.linear`."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {weight.shape}")
    if input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input has {input.shape[-1]} features but weight expects {weight.shape[1]}"
        )
    out = matmul(input, weight.T)
    return out if bias is None else out + bias
