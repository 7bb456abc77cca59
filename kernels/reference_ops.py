"""Naive NumPy versions of the kernels around the convolutions: the oracle for their tests.

Batch norm (with ReLU), ReLU, max and average pooling, cross-entropy and the SGD update, each
written the way a textbook states it, one formula per line, in float64 (results are cast
back to the input's dtype), with plain loops where a window or a row is involved. Slow and
obviously correct; `kernels/reference.py` is the same for the convolutions.
"""

from __future__ import annotations

import numpy as np


def batch_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray,
               var: np.ndarray, eps: float, relu: bool = False) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel (axis 1), then ReLU."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xf = x.astype(np.float64)
    y = (xf - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = y * weight.reshape(shape) + bias.reshape(shape)
    return (np.maximum(y, 0.0) if relu else y).astype(x.dtype)


def batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, biased variance) per channel over every axis but 1, two passes in float64."""
    axes = (0,) + tuple(range(2, x.ndim))
    xf = x.astype(np.float64)
    mean = xf.mean(axis=axes)
    var = ((xf - mean.reshape((1, -1) + (1,) * (x.ndim - 2))) ** 2).mean(axis=axes)
    return mean, var


def batch_norm_backward(g: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                        mean: np.ndarray, var: np.ndarray, eps: float, training: bool,
                        relu: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias) of `batch_norm`, statistics of the batch (training) or fixed.

    In training, y = w xhat + b with xhat = (x - mean(x)) / sqrt(var(x) + eps), so
    dx = w / sqrt(var + eps) * (g - mean(g) - xhat * mean(g * xhat)).
    """
    shape = (1, -1) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    gf = g.astype(np.float64)
    if relu:
        gf = gf * (batch_norm(x.astype(np.float64), weight, bias, mean, var, eps) > 0)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x.astype(np.float64) - mean.reshape(shape)) * invstd.reshape(shape)
    dbias = gf.sum(axis=axes)
    dweight = (gf * xhat).sum(axis=axes)
    scale = (weight * invstd).reshape(shape)
    if training:
        dx = scale * (gf - gf.mean(axis=axes, keepdims=True)
                      - xhat * (gf * xhat).mean(axis=axes, keepdims=True))
    else:
        dx = scale * gf
    return dx.astype(x.dtype), dweight, dbias


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0) (NaN stays NaN)."""
    return np.maximum(x, np.zeros_like(x))


def relu_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """g where the ReLU's output is positive, else 0."""
    return np.where(y > 0, g, np.zeros_like(g)).astype(y.dtype)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int]) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """For each output pixel (r, q): the in-bounds input pixels (tap, row, column) of its
    window, taps numbered row-major over the whole window."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    h, w = x.shape[2:]
    out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return [(r, q, [(i * kw + j, r * sh - ph + i, q * sw - pw + j)
                    for i in range(kh) for j in range(kw)
                    if 0 <= r * sh - ph + i < h and 0 <= q * sw - pw + j < w])
            for r in range(out_h) for q in range(out_w)]


def max_pool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(y, dx_of_ones): the window maxima, and where a unit output gradient goes (to the
    first maximal element of each window, row-major; overlapping windows add up)."""
    windows = _windows(x, kernel, stride, padding)
    out_h, out_w = windows[-1][0] + 1, windows[-1][1] + 1
    y = np.empty(x.shape[:2] + (out_h, out_w), x.dtype)
    dx = np.zeros(x.shape, np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for r, q, pixels in windows:
                values = [x[n, c, i, j] for _, i, j in pixels]
                first = int(np.argmax(values))  # the first maximum
                y[n, c, r, q] = values[first]
                dx[n, c, pixels[first][1], pixels[first][2]] += 1.0
    return y, dx


def avg_pool2d(x: np.ndarray, g: np.ndarray, kernel: tuple[int, int],
               stride: tuple[int, int], padding: tuple[int, int], count_include_pad: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """(y, dx): window means (zero padding counted in the divisor unless excluded), and the
    gradient of sum(y * g) with respect to x."""
    windows = _windows(x, kernel, stride, padding)
    y = np.empty(g.shape, np.float64)
    dx = np.zeros(x.shape, np.float64)
    for r, q, pixels in windows:
        count = kernel[0] * kernel[1] if count_include_pad else len(pixels)
        rows = [i for _, i, _ in pixels]
        cols = [j for _, _, j in pixels]
        y[:, :, r, q] = x[:, :, rows, cols].astype(np.float64).sum(axis=2) / count
        for i, j in zip(rows, cols):
            dx[:, :, i, j] += g[:, :, r, q] / count
    return y.astype(x.dtype), dx


def cross_entropy(logits: np.ndarray, target: np.ndarray, label_smoothing: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(per-row losses, d sum(losses) / d logits) of softmax cross-entropy against
    (1 - e) one-hot(target) + e / C."""
    x = logits.astype(np.float64)
    n, c = x.shape
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    want = np.full((n, c), label_smoothing / c)
    want[np.arange(n), target] += 1.0 - label_smoothing
    return -(want * logp).sum(axis=1), np.exp(logp) - want


def sgd_step(p: np.ndarray, g: np.ndarray, buf: np.ndarray | None, lr: float, momentum: float,
             dampening: float, weight_decay: float, nesterov: bool
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """(new p, new momentum buffer) after one step of torch.optim.SGD's documented rule
    (`buf` None: the first step)."""
    g = g + weight_decay * p
    if momentum:
        buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf
