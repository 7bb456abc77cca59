"""Batch normalisation over (N, C, H*W), optionally followed by ReLU: forward and backward.

Per channel c over its M = N*H*W values: the mean, the biased variance var, the inverse
standard deviation r = 1 / sqrt(var + eps), and

    y = (x - mean) * (w r) + b,        with ReLU: max(y, 0).

One parallel task per channel. In training a task first sums its channel in one pass and
then normalises it; for the small ResNeXts at batch 64 a channel holds 64 to 256 KB, still
in the core's L2 cache for the second pass, so memory sees x read once and y written once.
The sums are shifted by the channel's first value (sum of x - k and of (x - k)^2, k = x[0]),
so one pass gives the variance without the cancellation of sum(x^2) - M mean^2 when the
mean is large against the spread; they are accumulated in float64.

Backward, with g the output gradient, masked by y > 0 under ReLU (y recomputed from x exactly
as the forward computed it), and xc = x - mean:

    db = sum g,   dw = r sum g xc,   dx = w r (g - db / M - xc r dw / M)   (training)
                                     dx = w r g                            (eval)

again one task per channel: one pass for the two sums, one for dx. Per-element arithmetic is
float64 (memory, not arithmetic, bounds these loops).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# (N, C, M) activations, (C,) per-channel values, (C, 2) float64 (mean, biased variance)
Activations = np.ndarray
PerChannel = np.ndarray
Moments = np.ndarray


@njit(cache=True, inline="always")
def _affine(mean: float, var: float, weight: float, eps: float) -> tuple[float, float]:
    """(invstd, scale = weight * invstd) of one channel."""
    invstd = 1.0 / np.sqrt(var + eps)
    return invstd, weight * invstd


@njit(cache=True, inline="always")
def _normalised(x: float, mean: float, scale: float, bias: float) -> float:
    """y of one element; forward and backward (for the ReLU mask) both compute it here."""
    return (x - mean) * scale + bias


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def _forward(x: Activations, weight: PerChannel, bias: PerChannel, moments: Moments,
             eps: float, training: bool, relu: bool, y: Activations) -> None:
    """y = batch norm of x (then ReLU), one task per channel; see `batch_norm_forward`."""
    n, c, m = x.shape
    for ch in prange(c):
        if training:
            shift = x[0, ch, 0] * 1.0
            s = 0.0
            ss = 0.0
            for i in range(n):
                for j in range(m):
                    d = x[i, ch, j] - shift
                    s += d
                    ss += d * d
            mean_shifted = s / (n * m)
            var = ss / (n * m) - mean_shifted * mean_shifted
            if var < 0.0:  # rounding; NaN passes through
                var = 0.0
            moments[ch, 0] = shift + mean_shifted
            moments[ch, 1] = var
        mean = moments[ch, 0]
        _, scale = _affine(mean, moments[ch, 1], weight[ch], eps)
        b = bias[ch] * 1.0
        for i in range(n):
            for j in range(m):
                v = _normalised(x[i, ch, j], mean, scale, b)
                if relu and v < 0.0:
                    v = 0.0
                y[i, ch, j] = v


@njit(cache=True, parallel=True, fastmath={"reassoc"})
def _backward(g: Activations, x: Activations, weight: PerChannel, bias: PerChannel,
              moments: Moments, eps: float, training: bool, relu: bool, need_dx: bool,
              dx: Activations, dweight: PerChannel, dbias: PerChannel) -> None:
    """The gradients of `_forward`, one task per channel; see `batch_norm_backward`."""
    n, c, m = g.shape
    count = n * m
    for ch in prange(c):
        mean = moments[ch, 0]
        invstd, scale = _affine(mean, moments[ch, 1], weight[ch], eps)
        b = bias[ch] * 1.0
        s = 0.0
        sx = 0.0
        for i in range(n):
            for j in range(m):
                xv = x[i, ch, j] * 1.0
                gv = g[i, ch, j] * 1.0
                if relu and not _normalised(xv, mean, scale, b) > 0.0:
                    gv = 0.0
                s += gv
                sx += gv * (xv - mean)
        dbias[ch] = s
        dweight[ch] = sx * invstd
        k_mean, k_x = 0.0, 0.0
        if training:
            k_mean = -scale * s / count
            k_x = -scale * invstd * invstd * sx / count
        for i in range(n if need_dx else 0):
            for j in range(m):
                xv = x[i, ch, j] * 1.0
                gv = g[i, ch, j] * 1.0
                if relu and not _normalised(xv, mean, scale, b) > 0.0:
                    gv = 0.0
                dx[i, ch, j] = scale * gv + k_mean + k_x * (xv - mean)


def _channels(a: np.ndarray) -> Activations:
    """a (N, C, ...) as a C-contiguous (N, C, M) array (a view when a is contiguous)."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def _affine_or_default(value: np.ndarray | None, fill: float, c: int, dtype: np.dtype
                       ) -> PerChannel:
    return np.full(c, fill, dtype) if value is None else np.ascontiguousarray(value, dtype)


def batch_norm_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                       moments: Moments, eps: float, training: bool, relu: bool) -> np.ndarray:
    """Batch norm of x over every axis but 1 (then ReLU when `relu`), as a new array.

    Args:
        x: (N, C, ...) input, float32 or float64, at least one value per channel.
        weight: (C,) scale, or None (ones).
        bias: (C,) shift, or None (zeros).
        moments: (C, 2) float64 (mean, biased variance) per channel: written in training
            (the batch's statistics), read otherwise (the running statistics).
        eps: added to the variance.
        training: normalise with the batch's statistics (True) or with `moments` (False).
        relu: apply max(., 0) to the output.
    """
    c = x.shape[1]
    xs = _channels(x)
    y = np.empty_like(xs)
    _forward(xs, _affine_or_default(weight, 1.0, c, x.dtype),
             _affine_or_default(bias, 0.0, c, x.dtype), moments, eps, training, relu, y)
    return y.reshape(x.shape)


def batch_norm_backward(g: np.ndarray, x: np.ndarray, weight: np.ndarray | None,
                        bias: np.ndarray | None, moments: Moments, eps: float, training: bool,
                        relu: bool, need_dx: bool = True
                        ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx or None, dweight, dbias) of `batch_norm_forward` for the output gradient g.

    Args:
        g: (N, C, ...) gradient of the loss with respect to the output.
        x: the input given to `batch_norm_forward`.
        weight: its weight.
        bias: its bias.
        moments: the moments it used (and in training, wrote).
        eps: its eps.
        training: whether it normalised with the batch's statistics.
        relu: whether it applied ReLU (the mask is recomputed from x).
        need_dx: compute dx (else None is returned in its place).
    """
    c = x.shape[1]
    xs = _channels(x)
    dx = np.empty_like(xs) if need_dx else xs  # untouched when not needed
    dweight, dbias = np.empty(c), np.empty(c)
    _backward(_channels(g.astype(x.dtype, copy=False)), xs,
              _affine_or_default(weight, 1.0, c, x.dtype),
              _affine_or_default(bias, 0.0, c, x.dtype), moments, eps, training, relu,
              need_dx, dx, dweight, dbias)
    return (dx.reshape(x.shape) if need_dx else None), dweight, dbias
