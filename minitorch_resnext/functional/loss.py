"""Classification losses: `nll_loss`, `cross_entropy` (log-softmax + NLL, label smoothing)
and `accuracy`."""

from __future__ import annotations

from typing import Any

from ..autograd import Context, Function
from ..tensor import Tensor
from .activation import log_softmax
from .registry import op

_REDUCTIONS = ("mean", "sum", "none")


class PickNegative(Function):
    """-input[i, target[i]] for each row i: the per-sample negative log-likelihood."""

    @staticmethod
    def forward(ctx: Context, logp: Any, target: Any = None) -> Any:
        rows = ctx.xp.arange(logp.shape[0])
        ctx.shape, ctx.index = logp.shape, (rows, target)
        return -logp[rows, target]

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        out = ctx.xp.zeros(ctx.shape, dtype=g.dtype)
        out[ctx.index] = -g
        return out


def _check_target(op: str, input: Tensor, target: Tensor) -> None:
    if input.ndim != 2:
        raise ValueError(f"{op}: expected input of shape (N, C), got {input.shape}")
    if target.ndim != 1 or target.shape[0] != input.shape[0]:
        raise ValueError(f"{op}: target must have shape ({input.shape[0]},) for input "
                         f"{input.shape}, got {target.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape[0]:
        lo, hi = int(target.data.min()), int(target.data.max())
        if lo < 0 or hi >= input.shape[1]:
            raise ValueError(f"{op}: target {lo if lo < 0 else hi} is out of range for "
                             f"{input.shape[1]} classes")


def _reduce(op: str, losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


@op
def nll_loss(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices `target` (N,) under log-probabilities (N, C)."""
    _check_target("nll_loss", input, target)
    return _reduce("nll_loss", PickNegative.apply(input, target=target.data), reduction)


@op
def cross_entropy(input: Tensor, target: Tensor, *, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of logits (N, C) against class indices (N,), like PyTorch.

    Computed through a max-shifted `log_softmax`, so large logits do not overflow. With
    label smoothing e the target is (1 - e) one-hot + e / C uniform. The options are
    keyword-only (PyTorch's third positional argument is a class weight, not supported).
    """
    _check_target("cross_entropy", input, target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    logp = log_softmax(input, dim=1)
    losses = PickNegative.apply(logp, target=target.data)
    if label_smoothing:
        uniform = -logp.mean(dim=1)
        losses = losses * (1.0 - label_smoothing) + uniform * label_smoothing
    return _reduce("cross_entropy", losses, reduction)


@op(differentiable=False)
def accuracy(input: Tensor, target: Tensor, k: int = 1) -> float:
    """Fraction of rows whose target is among the k largest scores (top-k accuracy).

    A row holding a NaN score ranks nothing, so it counts as wrong.
    """
    _check_target("accuracy", input, target)
    if not 1 <= k <= input.shape[1]:
        raise ValueError(f"accuracy: k must be in [1, {input.shape[1]}], got {k}")
    if input.shape[0] == 0:
        raise ValueError("accuracy: empty batch")
    xp, scores, t = input.xp, input.data, target.data
    picked = scores[xp.arange(scores.shape[0]), t][:, None]
    # the target's rank: scores above it, and equal scores at lower indices (so k=1 agrees
    # with argmax, and constant scores do not count as correct)
    earlier = xp.arange(scores.shape[1])[None, :] < t[:, None]
    rank = ((scores > picked) | ((scores == picked) & earlier)).sum(axis=1)
    ranked = ~xp.isnan(scores).any(axis=1)
    return float(((rank < k) & ranked).mean())
