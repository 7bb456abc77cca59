"""`SyncBatchNorm`: batch norm whose statistics cover the whole global batch, on all ranks.

Forward (training), per channel: each rank sums x and x^2 over its values (in float64) and one
allreduce of [sum, sum of squares, count] gives the global M, mean and biased variance
var = sumsq / M - mean^2, so every rank normalises with the same statistics and updates the
running ones exactly as `BatchNorm2d` would for the whole batch (unbiased M / (M - 1)).

Backward: with xc = x - mean, r = 1 / sqrt(var + eps), s = w * r,

    dx = s * (g - sum(g) / M - xc * r^2 * sum(g * xc) / M)

needs the two sums over the global batch: one allreduce of [sum(g), sum(g * xc)]. The weight
and bias gradients are this rank's own sums; `DistributedDataParallel` averages them with the
other parameters', which gives the gradient of the mean loss over the global batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Context, Function
from ..functional.normalization import (
    _channel_dot,
    _channel_sum,
    _channel_view,
    _per_channel,
    bump_versions,
    training_grad_input,
    update_running_stats,
)
from ..nn import BatchNorm2d, Module
from ..tensor import Tensor
from .comm import Communicator, get_communicator


class SyncBatchNormFunction(Function):
    """Training-mode batch norm over all ranks' values (see the module docstring)."""

    @staticmethod
    def forward(ctx: Context, x: Any, weight: Any, bias: Any, *, comm: Communicator,
                running_mean: Any = None, running_var: Any = None, momentum: float = 0.1,
                eps: float = 1e-5) -> Any:
        xp = ctx.xp
        c = x.shape[1]
        view = _channel_view(x)
        stats = xp.empty(2 * c + 1, dtype=np.float64)
        stats[:c] = view.sum(axis=(0, 2), dtype=np.float64)
        stats[c:2 * c] = (view * view).sum(axis=(0, 2), dtype=np.float64)
        stats[2 * c] = x.size // c
        comm.allreduce(stats)
        m = int(stats[2 * c])
        if m <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all "
                             f"ranks when training, got {m}")
        mean = stats[:c] / m
        var = xp.maximum(stats[c:2 * c] / m - mean * mean, 0.0)
        update_running_stats(running_mean, running_var, mean, var, m, momentum)
        invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        scale = invstd if weight is None else weight * invstd
        xc = x - _per_channel(mean.astype(x.dtype), x.ndim)
        y = xc * _per_channel(scale, x.ndim)
        if bias is not None:
            y += _per_channel(bias, x.ndim)
        ctx.save_for_backward(xc, invstd, scale)
        ctx.comm, ctx.m = comm, m
        return y

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple[Any, Any, Any]:
        xc, invstd, scale = ctx.saved_tensors
        xp, need = ctx.xp, ctx.needs_input_grad
        db = _channel_sum(xp, g)
        dot = _channel_dot(xp, g, xc)
        dx = None
        if need[0]:
            c = db.shape[0]
            sums = xp.concatenate([db, dot])
            ctx.comm.allreduce(sums)
            dx = training_grad_input(g, xc, invstd, scale, sums[:c], sums[c:] * invstd, ctx.m)
        return dx, dot * invstd if need[1] else None, db if need[2] else None


class SyncBatchNorm(BatchNorm2d):
    """`BatchNorm2d` whose training statistics are those of the global batch over all ranks.

    In eval mode, or alone (world size 1), it is `BatchNorm2d`. `comm` defaults to the
    communicator of `mr.distributed.init()`, looked up at each forward.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 comm: Communicator | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.comm = comm

    def forward(self, x: Tensor) -> Tensor:
        comm = self.comm if self.comm is not None else get_communicator()
        if not self.training or comm.world_size == 1:
            return super().forward(x)
        self._check_input(x)
        if x.dtype.kind != "f":
            raise TypeError(f"SyncBatchNorm: needs a floating-point input, got dtype {x.dtype}")
        out = SyncBatchNormFunction.apply(
            x, self.weight, self.bias, comm=comm,
            running_mean=None if self.running_mean is None else self.running_mean.data,
            running_var=None if self.running_var is None else self.running_var.data,
            momentum=self._momentum_factor(), eps=self.eps)
        bump_versions(self.running_mean, self.running_var)
        return out

    @classmethod
    def from_batchnorm(cls, bn: BatchNorm2d, comm: Communicator | None = None) -> SyncBatchNorm:
        """A SyncBatchNorm that shares `bn`'s parameters and buffers (same tensors)."""
        sync = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                   comm)
        for table in ("_parameters", "_buffers"):
            getattr(sync, table).update(getattr(bn, table))
        sync.train(bn.training)
        return sync


def convert_sync_batchnorm(module: Module, comm: Communicator | None = None) -> Module:
    """Replace every `BatchNorm2d` in `module` by a `SyncBatchNorm` sharing its tensors.

    Returns the module (a new one only when `module` itself is a `BatchNorm2d`).
    """
    if isinstance(module, BatchNorm2d) and not isinstance(module, SyncBatchNorm):
        return SyncBatchNorm.from_batchnorm(module, comm)
    for _, parent in list(module.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BatchNorm2d) and not isinstance(child, SyncBatchNorm):
                parent._modules[name] = SyncBatchNorm.from_batchnorm(child, comm)  # keeps order
    return module
