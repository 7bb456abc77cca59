"""im2col + BLAS grouped convolution for many channels per group.

With tens of channels per group a convolution is compute-bound and BLAS (through
``numpy.matmul``) is the fastest matrix multiply on the machine. Each group's convolution
over a chunk of m images is one GEMM, ``y_g (og, m*P) = w_g (og, K) @ col_g (K, m*P)`` with
``K = cg*kH*kW`` and ``P = H_out*W_out``, batched over the groups. A chunk is one image when
an image has enough pixels for an efficient GEMM; then the GEMM reads and writes NCHW
directly. Smaller images are batched, which needs a transposing copy between NCHW and the
GEMM layout. A 1x1 unpadded convolution needs no im2col at all: its forward and grad_input
are one batched GEMM over (image, group) on the NCHW arrays (strided: on every stride-th
pixel), and its grad_weight sums one such product per image, whatever the image size.

The threads are Python threads, each with a range of whole images (or chunks) and BLAS on one
thread (`blas_threads`): BLAS's own threads split each GEMM, which on small images costs more
than it gains. The Numba helpers that move data (im2col, col2im, layout copies) release the
GIL and run inside those threads. grad_weight's sum over the batch is split into partial sums
by the shape alone and each is summed in order, so the result does not depend on the number
of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..geometry import Conv2dGeometry, ConvArgs
from ..selection import ConvAlgorithm
from . import activation
from ._numba import fill, transfer, u, valid_cols
from .blas_threads import split_images

# images per GEMM: enough for about this many columns (images x output pixels)
_GEMM_COLUMNS = 1024
# pointwise grad_weight: images whose products (groups x og x K each) are summed at once
_PRODUCT_BYTES = 1 << 20
# grad_weight's sum over the batch: this many partial sums, over ranges fixed by the shape
_SUM_PARTS = 4


@njit(cache=True, nogil=True)
def _im2col(
    x: np.ndarray,
    n0: int,
    col: np.ndarray,
    conv: ConvArgs,
) -> None:
    """col[g, c, i, j, m, r, q] = x[n0 + m, g*cg + c, r*sh - ph + i*dh, q*sw - pw + j*dw], 0
    outside x."""
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    _, _, kh, kw, m_img, out_h, out_w = col.shape
    _, c_in, h, wd = x.shape
    xf, cf = x.reshape(-1), col.reshape(-1)
    for task in range(col.size // (out_h * out_w)):  # one (channel, tap, image) plane each
        m, tap = task % m_img, task // m_img
        j, i, ci = tap % kw, tap // kw % kh, tap // (kw * kh)
        plane = ((n0 + m) * c_in + ci) * h * wd
        lo, hi = valid_cols(j * dw - pw, sw, wd, out_w)
        for r in range(out_h):
            d, ih = (task * out_h + r) * out_w, r * sh - ph + i * dh
            if ih < 0 or ih >= h:
                fill(cf, d, out_w, 0)
                continue
            fill(cf, d, lo, 0)
            fill(cf, d + hi, out_w - hi, 0)
            s = plane + ih * wd + lo * sw + j * dw - pw
            if sw == 1:  # a literal unit step, so that the copy vectorises
                transfer(cf, d + lo, xf, s, 1, hi - lo, True)
            else:
                transfer(cf, d + lo, xf, s, sw, hi - lo, True)


@njit(cache=True, nogil=True)
def _col2im(
    col: np.ndarray,
    gx: np.ndarray,
    n0: int,
    conv: ConvArgs,
) -> None:
    """gx[n0 + m, g*cg + c] = sum over taps (i, j) of col[g, c, i, j, m] added back at the
    input pixels they came from (the adjoint of `_im2col`); one task per input plane."""
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    _, _, kh, kw, m_img, out_h, out_w = col.shape
    _, c_in, h, wd = gx.shape
    gf, cf = gx.reshape(-1), col.reshape(-1)
    for task in range(m_img * c_in):
        m, ci = task // c_in, task % c_in
        plane = ((n0 + m) * c_in + ci) * h * wd
        fill(gf, plane, h * wd, 0)
        for i in range(kh):
            for j in range(kw):
                lo, hi = valid_cols(j * dw - pw, sw, wd, out_w)
                base = ((ci * kh + i) * kw + j) * m_img + m
                for r in range(out_h):
                    ih = r * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    d = plane + ih * wd + lo * sw + j * dw - pw
                    s = (base * out_h + r) * out_w + lo
                    for k in range(hi - lo):
                        gf[u(d + k * sw)] += cf[u(s + k)]


@njit(cache=True, nogil=True)
def _to_gemm_layout(a: np.ndarray, out: np.ndarray) -> None:
    """out[g, o, m, p] = a[m, g*og + o, p] (a: (m, C, P), out: (groups, og, m, P))."""
    groups, og, m_img, _ = out.shape
    for task in range(groups * og * m_img):
        m, go = task % m_img, task // m_img
        out[go // og, go % og, m, :] = a[m, go, :]


@njit(cache=True, nogil=True)
def _from_gemm_layout(out: np.ndarray, a: np.ndarray) -> None:
    """a[m, g*og + o, p] = out[g, o, m, p] (the inverse of `_to_gemm_layout`)."""
    groups, og, m_img, _ = out.shape
    for task in range(groups * og * m_img):
        m, go = task % m_img, task // m_img
        a[m, go, :] = out[go // og, go % og, m, :]


class _Plan:
    """Shapes of one convolution's GEMMs, how images are chunked and how grad_weight's sum is
    split."""

    def __init__(self, geometry: Conv2dGeometry, itemsize: int) -> None:
        self.geometry, self.n_img, self.groups = geometry, geometry.batch, geometry.groups
        self.cg, self.og = geometry.in_per_group, geometry.out_per_group
        (self.kh, self.kw), self.out_hw = geometry.kernel_hw, geometry.output_hw
        self.pixels, self.k = math.prod(self.out_hw), self.cg * geometry.taps
        # a 1x1 unpadded convolution reads every stride-th pixel: a GEMM on those, no im2col
        self.pointwise, self.stride = geometry.pointwise, geometry.stride
        # grad_weight's partial sums: `part` images each, whole chunks of `step` images
        if self.pointwise:  # one product per image, summed a chunk at a time
            self.part = -(-self.n_img // _SUM_PARTS)
            product = self.groups * self.og * self.k * itemsize
            self.step = max(1, min(self.part, _PRODUCT_BYTES // product))
        else:
            self.step = max(1, min(self.n_img, -(-_GEMM_COLUMNS // self.pixels)))
            self.part = -(-self.n_img // (self.step * _SUM_PARTS)) * self.step
        # forward and grad_input: a thread's images start a chunk (pointwise: no chunks)
        self.align = 1 if self.pointwise else self.step

    def columns(self, x: np.ndarray, n0: int, m: int) -> np.ndarray:
        """im2col of images n0 .. n0 + m: (groups, K, m*P)."""
        col = np.empty((self.groups, self.cg, self.kh, self.kw, m, *self.out_hw), x.dtype)
        _im2col(x, n0, col, self.geometry.args)
        return col.reshape(self.groups, self.k, m * self.pixels)

    def subsample(self, x: np.ndarray) -> np.ndarray:
        """The input pixels a pointwise convolution reads (a strided view)."""
        return x if self.stride == (1, 1) else x[:, :, :: self.stride[0], :: self.stride[1]]

    def by_group(self, a: np.ndarray) -> np.ndarray:
        """An (N, C, H, W) array as (N, groups, C / groups, H*W) (a view if a is contiguous)."""
        return a.reshape(a.shape[0], self.groups, -1, a.shape[2] * a.shape[3])

    def gemm_layout(self, a: np.ndarray, n0: int, m: int) -> np.ndarray:
        """Images n0 .. n0 + m of an (N, C, H, W) array as (groups, C / groups, m*P)."""
        c = a.shape[1] // self.groups
        if m == 1:
            return a[n0].reshape(self.groups, c, -1)
        out = np.empty((self.groups, c, m, a.shape[2] * a.shape[3]), a.dtype)
        _to_gemm_layout(a[n0 : n0 + m].reshape(m, a.shape[1], -1), out)
        return out.reshape(self.groups, c, -1)

    def chunks(self, start: int, stop: int) -> list[tuple[int, int]]:
        """(first image, number of images) of each GEMM of images start .. stop, in order."""
        return [(n0, min(self.step, stop - n0)) for n0 in range(start, stop, self.step)]

    def weight_sum(self, x: np.ndarray, gy: np.ndarray, start: int, stop: int) -> np.ndarray:
        """The sum over images start .. stop, chunk by chunk in order, of gy_g @ col_g^T:
        (groups, og, K)."""
        total = np.zeros((self.groups, self.og, self.k), gy.dtype)
        for n0, m in self.chunks(start, stop):
            if self.pointwise:  # one product per image on the NCHW arrays, then their sum
                xs = self.by_group(self.subsample(x[n0 : n0 + m]))
                total += np.matmul(self.by_group(gy[n0 : n0 + m]), xs.transpose(0, 1, 3, 2)
                                   ).sum(axis=0)
            else:
                total += np.matmul(self.gemm_layout(gy, n0, m),
                                   self.columns(x, n0, m).transpose(0, 2, 1))
        return total


def forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    y: np.ndarray,
    geometry: Conv2dGeometry,
    residual: np.ndarray | None = None,
    relu: bool = False,
) -> None:
    """y = conv(x, w) + bias by per-group GEMMs over chunks of images; then plus `residual`
    and through a ReLU where asked, each range of images while it is in the cache."""
    plan = _Plan(geometry, x.itemsize)
    wg = w.reshape(plan.groups, plan.og, plan.k)

    def images(start: int, stop: int) -> None:
        if plan.pointwise:  # one batched GEMM straight on the NCHW arrays
            np.matmul(wg, plan.by_group(plan.subsample(x[start:stop])),
                      out=plan.by_group(y[start:stop]))
        else:
            for n0, m in plan.chunks(start, stop):
                col = plan.columns(x, n0, m)
                if m == 1:
                    np.matmul(wg, col, out=y[n0].reshape(plan.groups, plan.og, plan.pixels))
                else:
                    out = np.matmul(wg, col).reshape(plan.groups, plan.og, m, plan.pixels)
                    _from_gemm_layout(out, y[n0 : n0 + m].reshape(m, y.shape[1], plan.pixels))
        if bias is not None:
            y[start:stop] += bias.reshape(1, -1, 1, 1)
        if residual is not None or relu:  # on this range's thread
            activation.epilogue(y[start:stop], None if residual is None else
                                residual[start:stop], relu, parallel=False)

    split_images(images, plan.n_img, macs=geometry.macs, align=plan.align)


def grad_input(
    gy: np.ndarray,
    w: np.ndarray,
    gx: np.ndarray,
    geometry: Conv2dGeometry,
) -> None:
    """gx = col2im(w_g^T @ gy_g) per group over chunks of images."""
    plan = _Plan(geometry, gy.itemsize)
    wt = w.reshape(plan.groups, plan.og, plan.k).transpose(0, 2, 1)

    def images(start: int, stop: int) -> None:
        if not plan.pointwise:
            for n0, m in plan.chunks(start, stop):
                col = np.matmul(wt, plan.gemm_layout(gy, n0, m))
                _col2im(col.reshape(plan.groups, plan.cg, plan.kh, plan.kw, m, *plan.out_hw),
                        gx, n0, plan.geometry.args)
            return
        gyg, gxs = plan.by_group(gy[start:stop]), gx[start:stop]
        if plan.stride == (1, 1):
            np.matmul(wt, gyg, out=plan.by_group(gxs))
        else:  # only the pixels the convolution read get a gradient
            gxs[...] = 0
            plan.subsample(gxs)[...] = np.matmul(wt, gyg).reshape(stop - start, -1,
                                                                  *plan.out_hw)

    split_images(images, plan.n_img, macs=geometry.macs, align=plan.align)


def grad_weight(
    x: np.ndarray,
    gy: np.ndarray,
    gw: np.ndarray,
    geometry: Conv2dGeometry,
) -> None:
    """gw_g = sum over image chunks of gy_g @ col_g^T, as _SUM_PARTS partial sums over ranges
    of the batch fixed by the shape, added in order: the threads that compute the parts do not
    change the result."""
    plan = _Plan(geometry, x.itemsize)

    def partial_sums(start: int, stop: int) -> list[np.ndarray]:
        return [plan.weight_sum(x, gy, lo, min(lo + plan.part, stop))
                for lo in range(start, stop, plan.part)]

    gw3 = gw.reshape(plan.groups, plan.og, plan.k)
    gw3[...] = 0
    for sums in split_images(partial_sums, plan.n_img, macs=geometry.macs, align=plan.part):
        for s in sums:
            gw3 += s


ALGORITHM = ConvAlgorithm(
    "gemm",
    {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight},
    "im2col + BLAS GEMM per group (a 1x1 unpadded convolution: one batched GEMM, no im2col)",
    epilogue=True,
)
