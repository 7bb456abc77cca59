"""Classification losses: `nll_loss`, `cross_entropy` (log-softmax + NLL, label smoothing)
and `accuracy`."""

from __future__ import annotations

from typing import Any

from .. import fusion
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


class CrossEntropy(Function):
    """Softmax cross-entropy with label smoothing and its reduction as one node, on the
    device's fused kernel (`cross_entropy_forward`); `cross_entropy` composes the same from
    `log_softmax` and `PickNegative` where there is none."""

    @staticmethod
    def forward(ctx: Context, logits: Any, target: Any = None, label_smoothing: float = 0.0,
                reduction: str = "mean") -> Any:
        losses, lse = ctx.backend.cross_entropy_forward(logits, target, label_smoothing)
        ctx.save_for_backward(logits, lse)
        ctx.target, ctx.label_smoothing, ctx.reduction = target, label_smoothing, reduction
        out = losses.mean() if reduction == "mean" else losses.sum() if reduction == "sum" \
            else losses
        return ctx.xp.asarray(out, dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        logits, lse = ctx.saved_tensors
        n = logits.shape[0]
        rows = g if ctx.reduction == "none" else ctx.xp.full(
            n, g / n if ctx.reduction == "mean" else g)
        return ctx.backend.cross_entropy_backward(logits, ctx.target, ctx.label_smoothing, lse,
                                                  rows)


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

    Computed from max-shifted logits, so large logits do not overflow (one fused node on
    devices with the kernel, else `log_softmax` and a pick). With
    label smoothing e the target is (1 - e) one-hot + e / C uniform. The options are
    keyword-only (PyTorch's third positional argument is a class weight, not supported).
    """
    _check_target("cross_entropy", input, target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got "
                         f"{reduction!r}")
    if fusion.kernel(input.backend, "cross_entropy_forward", input.dtype) is not None:
        return CrossEntropy.apply(input, target=target.data, label_smoothing=label_smoothing,
                                  reduction=reduction)
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
