"""Softmax cross-entropy of logits against class indices, with label smoothing, in one pass.

For a row x of C logits with target t and smoothing e, with lse = log(sum_j exp(x_j)):

    loss = -(1 - e) (x_t - lse) - e mean_j (x_j - lse)
    d loss / d x_j = softmax(x)_j - (1 - e) [j = t] - e / C

computed from the max-shifted logits, so large logits do not overflow. The forward keeps lse
per row; the backward recomputes the softmax from it. In the composition (log-softmax, pick,
mean, the smoothing sum and the reduction) these are six graph nodes and as many passes;
here one node and one pass each way, serial (a batch of logits is a few kilobytes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

Logits = np.ndarray  # (N, C) float32 or float64
Targets = np.ndarray  # (N,) integer class indices in [0, C)
Rows = np.ndarray  # (N,) float64, one value per row


@njit(cache=True)
def _forward(x: Logits, target: Targets, smoothing: float, loss: Rows, lse: Rows) -> None:
    n, c = x.shape
    for i in range(n):
        top = x[i, 0] * 1.0
        for j in range(1, c):
            top = max(top, x[i, j] * 1.0)
        total = 0.0
        mean = 0.0
        for j in range(c):
            total += np.exp(x[i, j] - top)
            mean += x[i, j]
        lse[i] = top + np.log(total)
        loss[i] = -(1.0 - smoothing) * (x[i, target[i]] - lse[i]) - smoothing * (
            mean / c - lse[i])


@njit(cache=True)
def _backward(x: Logits, target: Targets, smoothing: float, lse: Rows, g: Rows,
              dx: Logits) -> None:
    n, c = x.shape
    for i in range(n):
        for j in range(c):
            dx[i, j] = g[i] * (np.exp(x[i, j] - lse[i]) - smoothing / c)
        dx[i, target[i]] -= g[i] * (1.0 - smoothing)


def cross_entropy_forward(logits: np.ndarray, target: np.ndarray, label_smoothing: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(per-row losses, per-row log-sum-exp), both float64 (N,).

    Args:
        logits: (N, C) float32 or float64.
        target: (N,) integer class indices in [0, C) (not checked here).
        label_smoothing: e in [0, 1]: the target is (1 - e) one-hot + e / C uniform.
    """
    n = logits.shape[0]
    loss, lse = np.empty(n), np.empty(n)
    _forward(np.ascontiguousarray(logits), np.ascontiguousarray(target), label_smoothing, loss,
             lse)
    return loss, lse


def cross_entropy_backward(logits: np.ndarray, target: np.ndarray, label_smoothing: float,
                           lse: np.ndarray, grad_rows: np.ndarray) -> np.ndarray:
    """d loss / d logits (N, C), logits' dtype, given d total / d loss of each row.

    Args:
        logits: the logits given to `cross_entropy_forward`.
        target: its targets.
        label_smoothing: its label smoothing.
        lse: the log-sum-exp it returned.
        grad_rows: (N,) gradient of the reduced loss with respect to each row's loss.
    """
    dx = np.empty(logits.shape, logits.dtype)
    _backward(np.ascontiguousarray(logits), np.ascontiguousarray(target), label_smoothing, lse,
              np.ascontiguousarray(grad_rows, np.float64), dx)
    return dx
