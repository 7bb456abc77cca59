"""Batch normalisation as one Function with the fused analytic backward.

Training, per channel c over the M = N*H*W values: mean, biased variance var, and
y = (x - mean) * w / sqrt(var + eps) + b. With xc = x - mean and s = w / sqrt(var + eps):

    db = sum g,   dw = sum g * xc * r,   dx = s * (g - db / M - xc * r * dw / M),
    with r = 1 / sqrt(var + eps),

so the backward is two channel reductions and one elementwise pass. Running statistics are
updated in place like PyTorch: r = (1 - momentum) r + momentum * batch value, with the
unbiased (M / (M - 1)) variance. Eval mode uses them: y = x * s + (b - running_mean * s).

On a device with the fused kernels (`fusion.kernel`; the CPU's: `kernels/cpu/batchnorm.py`)
the forward is one pass for the statistics and one to normalise, per channel while it is in
cache, and the backward one pass for the two sums and one for dx; the composition of array
ops below runs elsewhere. A ReLU applied to the output joins the node (`fuse_relu`): its
mask is applied inside the batch norm's backward passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fusion
from ..autograd import Context, Function, Node, profiled
from ..tensor import Tensor
from .registry import op


def _channel_view(x: Any) -> Any:
    """x as (N, C, rest) for reductions over all axes but the channel one."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channel_sum(xp: Any, a: Any) -> Any:
    return xp.einsum("nci->c", _channel_view(a))


def _channel_dot(xp: Any, a: Any, b: Any) -> Any:
    return xp.einsum("nci,nci->c", _channel_view(a), _channel_view(b))


def _per_channel(v: Any, ndim: int) -> Any:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def update_running_stats(running_mean: Any, running_var: Any, mean: Any, var: Any, m: int,
                         momentum: float) -> None:
    """PyTorch's in-place update from batch statistics of `m` values per channel (the
    running variance is the unbiased one)."""
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += (momentum * mean).astype(running_mean.dtype)
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += (momentum * m / (m - 1) * var).astype(running_var.dtype)


def training_grad_input(g: Any, xc: Any, invstd: Any, scale: Any, dbias: Any, dweight: Any,
                        m: int) -> Any:
    """d loss / d x of batch norm in training, from the per-channel sums over the `m`
    values the statistics were taken over: dbias = sum(g), dweight = sum(g * xc) * invstd."""
    dx = xc * _per_channel(-(dweight * invstd) / m, g.ndim)
    dx += g
    dx -= _per_channel(dbias / m, g.ndim)
    dx *= _per_channel(scale, g.ndim)
    return dx


class BatchNorm(Function):
    """Batch normalization over all axes but the channels (axis 1): in training with the batch's
    statistics (updating the running ones), else with the running ones; with a fused kernel
    (`fusion.kernel`) one pass for the statistics and one to normalise, else the composition of
    array ops below."""

    @staticmethod
    def forward(ctx: Context, x: Any, weight: Any, bias: Any, running_mean: Any = None,
                running_var: Any = None, training: bool = False, momentum: float = 0.1,
                eps: float = 1e-5) -> Any:
        xp = ctx.xp
        m = x.size // x.shape[1]
        if training and m <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input of shape {tuple(x.shape)}")
        ctx.training, ctx.m, ctx.eps, ctx.relu = training, m, eps, False
        kernel = fusion.kernel(ctx.backend, "batch_norm_forward", x.dtype)
        ctx.fused = kernel is not None
        if ctx.fused:
            moments = np.empty((x.shape[1], 2))  # float64 (mean, biased variance)
            if not training:
                moments[:, 0], moments[:, 1] = running_mean, running_var
            y = kernel(x, weight, bias, moments, eps, training, False)
            if training:
                update_running_stats(running_mean, running_var, moments[:, 0], moments[:, 1],
                                     m, momentum)
            ctx.save_for_backward(x, weight, bias, moments)
            return y
        if training:
            mean = _channel_sum(xp, x) / m
            xc = x - _per_channel(mean, x.ndim)
            var = _channel_dot(xp, xc, xc) / m
            update_running_stats(running_mean, running_var, mean, var, m, momentum)
        else:
            mean, var, xc = running_mean, running_var, None
        invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        scale = invstd if weight is None else weight * invstd
        if xc is None:  # eval: one fused affine map
            shift = -mean * scale if bias is None else bias - mean * scale
            y = x * _per_channel(scale, x.ndim)
            y += _per_channel(shift.astype(x.dtype), x.ndim)
            if ctx.needs_input_grad[1]:  # dw needs the normalised input
                xc = x - _per_channel(mean.astype(x.dtype), x.ndim)
        else:
            y = xc * _per_channel(scale, x.ndim)
            if bias is not None:
                y += _per_channel(bias, x.ndim)
        ctx.save_for_backward(xc, invstd, scale)
        return y

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any, Any]:
        xp, need = ctx.xp, ctx.needs_input_grad
        if ctx.fused:
            x, weight, bias, moments = ctx.saved_tensors
            dx, dw, db = ctx.backend.batch_norm_backward(g, x, weight, bias, moments, ctx.eps,
                                                         ctx.training, ctx.relu, need[0])
            return (dx, dw.astype(x.dtype) if need[1] else None,
                    db.astype(x.dtype) if need[2] else None)
        xc, invstd, scale = ctx.saved_tensors
        db = _channel_sum(xp, g) if ctx.training or need[2] else None
        dw = _channel_dot(xp, g, xc) * invstd if ctx.training or need[1] else None
        dx = None
        if need[0]:
            if ctx.training:
                dx = training_grad_input(g, xc, invstd, scale, db, dw, ctx.m)
            else:
                dx = g * _per_channel(scale, g.ndim)
        return dx, dw if need[1] else None, db if need[2] else None

    @staticmethod
    def fuse_relu(y: Tensor) -> Tensor | None:
        """relu(y) for y = this op's output, as one node: the backward is the batch norm's
        with the ReLU mask applied in its passes (recomputed from x: nothing more is saved).
        None when the forward ran without the fused kernel."""
        node = y.grad_fn
        if not (node.ctx.fused and fusion.fused()):
            return None
        ctx = Context(node.ctx.backend, node.ctx.needs_input_grad)
        ctx.__dict__.update(node.ctx.__dict__)
        ctx.relu = True
        fusion.announce("batch_norm+relu", node.ctx, ctx)
        z = profiled(BatchNormReLU, ctx, lambda: y.backend.relu_forward(y.data))
        return Tensor._wrap(z, y.backend, grad_fn=Node(BatchNormReLU, ctx, node.parents,
                                                       node.shapes))


class BatchNormReLU(BatchNorm):
    """relu(batch_norm(x)): the node `BatchNorm.fuse_relu` makes (its backward is
    `BatchNorm.backward`, with the mask)."""


@op
def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch norm over every axis but dim 1, like `torch.nn.functional.batch_norm`.

    In training, batch statistics normalise and `running_mean`/`running_var` (when given)
    are updated in place; otherwise the running statistics normalise.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {input.shape}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"batch_norm: input has {c} channels but {name} has shape {t.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are needed when not training")
    if input.dtype.kind != "f":
        raise TypeError(f"batch_norm: needs a floating-point input, got dtype {input.dtype}")
    out = BatchNorm.apply(
        input, weight, bias,
        running_mean=None if running_mean is None else running_mean.data,
        running_var=None if running_var is None else running_var.data,
        training=training, momentum=momentum, eps=eps,
    )
    if training:
        bump_versions(running_mean, running_var)
    return out


def bump_versions(*tensors: Tensor | None) -> None:
    """Record the in-place update of the running statistics (see `Tensor._bump_version`)."""
    for t in tensors:
        if t is not None:
            t._bump_version()
