"""Grouped convolution on the GPU: hand-written CUDA C kernels, planned and launched via CuPy.

Two families of algorithms, chosen per shape by `conv2d_algorithm`:

- ``direct`` (<= 16 channels per group in and out, depthwise included): memory-bound, so the
  kernels of ``conv_direct.cu`` stage a group's weights and a haloed input tile in shared
  memory and compute several pixels x channels per thread. grad_weight writes one partial per
  block and ``sum_partials`` adds them in a fixed order: deterministic, no float atomics.
- ``gemm`` / ``im2col_gemm`` (more channels per group): compute-bound, so cuBLAS does the
  arithmetic through ``xp.matmul``, on the input itself for 1x1 stride-1 unpadded
  convolutions and otherwise on columns built by ``im2col`` (folded back by ``col2im``, a
  gather), in chunks of images that bound the workspace.

Everything up to the launch is plain Python over the array module ``rt.xp`` of a `Runtime`.
The public functions use the CuPy runtime: CuPy is imported on first use and each template
instantiation is compiled once by NVRTC and cached. tests/test_cuda_compile.py drives the
same code with NumPy arrays and the kernels compiled as host C++ (host_emulation.cuh), which
checks planning, argument types and kernels without a GPU.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..geometry import Conv2dGeometry
from ..selection import Choice, ConvChoices

__all__ = [
    "ALGORITHMS",
    "conv2d_algorithm",
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
]

ALGORITHMS = ("direct", "gemm")
SOURCE_DIR = Path(__file__).resolve().parent
COMPILE_OPTIONS = ("-std=c++17",)
MAX_THREADS = 256  # threads per block: 256 x 255 registers fit any kernel's register use
SHARED_BYTES = 48 * 1024  # dynamic shared memory a block gets without opting in
DIRECT_MAX_CHANNELS = 16  # channels per group, in and out, up to which "direct" is used
DIRECT_MAX_TAPS = 49  # kernel taps kh * kw up to which "direct" is used
MIN_BLOCKS = 512  # direct launches prefer tiles that give at least this many blocks
GRAD_WEIGHT_BLOCKS = 2048  # direct grad_weight blocks: fixed by shape, so is the result
GRAD_WEIGHT_MAX_ACC = 72  # accumulators per thread in direct grad_weight
GRAD_INPUT_MAX_OFFSETS = 64  # rows x taps per thread in strided / dilated direct grad_input
WORKSPACE_BYTES = 256 << 20  # columns per chunk of images on the GEMM path
GEMM_MIN_PIXELS = 1024  # output pixels per image from which a pointwise GEMM runs per image
ELEMENTWISE_THREADS = 256
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INCLUDE = re.compile(r'^#include "([\w.]+)"$', re.MULTILINE)

Pair = tuple[int, int]


@dataclass(frozen=True)
class Kernel:
    """One template instantiation: a source file of this folder and its C++ name expression."""

    source: str
    name: str


class Runtime(Protocol):
    """An array module and a way to launch a `Kernel` on arrays of it.

    `args` are arrays (passed as pointers) and NumPy scalars whose types match the kernel's
    parameters (np.int32 for int, np.int64 for long long).
    """

    xp: Any

    def launch(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        block: int,
        shared: int,
        args: Sequence[Any],
    ) -> None: ...


@dataclass(frozen=True)
class ConvShape:
    """Sizes of one convolution (PyTorch semantics, NCHW, zero padding)."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int

    @classmethod
    def of(
        cls,
        x_shape: Sequence[int],
        w_shape: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
    ) -> ConvShape:
        n, c_in, h, w = (int(v) for v in x_shape)
        c_out, _, kh, kw = (int(v) for v in w_shape)
        return cls(n, c_in, h, w, c_out, kh, kw, _pair(stride), _pair(padding), _pair(dilation), int(groups))

    @property
    def cg(self) -> int:
        return self.c_in // self.groups

    @property
    def og(self) -> int:
        return self.c_out // self.groups

    @property
    def out_hw(self) -> Pair:
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        return (
            (self.h + 2 * ph - dh * (self.kh - 1) - 1) // sh + 1,
            (self.w + 2 * pw - dw * (self.kw - 1) - 1) // sw + 1,
        )

    @property
    def unit(self) -> bool:
        """Stride 1 and dilation 1: the direct kernels' compile-time fast path."""
        return self.stride == (1, 1) and self.dilation == (1, 1)

    @property
    def pointwise(self) -> bool:
        """A 1x1, stride-1, unpadded convolution: a matmul on the input itself."""
        return (self.kh, self.kw) == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def geometry(self) -> tuple[int, ...]:
        """The int arguments every direct kernel takes after its pointers (and image count)."""
        return (
            self.c_in,
            self.h,
            self.w,
            self.c_out,
            *self.out_hw,
            self.groups,
            *self.stride,
            *self.padding,
            *self.dilation,
        )


@dataclass(frozen=True)
class Launch:
    """A planned direct-kernel launch; `params` are the int arguments after the geometry."""

    kernel: Kernel
    grid: tuple[int, int, int]
    block: int
    shared: int
    params: tuple[int, ...]


def _pair(v: Sequence[int]) -> Pair:
    return (int(v[0]), int(v[1]))


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(a: int, b: int) -> int:
    return _ceil(a, b) * b


def _i32(*values: int) -> list[np.int32]:
    return [np.int32(v) for v in values]


def _ctype(dtype: Any) -> str:
    try:
        return _CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"CUDA conv2d supports float32 and float64, not {dtype}") from None


def _width(channels: int, taps: int = 1, max_acc: int = 8) -> int:
    """Channels per thread: the largest of 8, 4, 2, 1 that divides `channels` and keeps
    taps * width accumulators within `max_acc` (1 always qualifies)."""
    return next(v for v in (8, 4, 2, 1) if channels % v == 0 and (v * taps <= max_acc or v == 1))


def _template(name: str, *args: object) -> str:
    return f"{name}<{', '.join(str(a).lower() if isinstance(a, bool) else str(a) for a in args)}>"


def _tiling(
    s: ConvShape,
    rows: int,
    cols: int,
    slices: int,
    py: int,
    chunk: Callable[[int, int], tuple[int, ...] | None],
) -> tuple[int, int, int, tuple[int, ...]] | None:
    """(tile_w, tiles_w, row_groups, chunk(tile_w, tile_h)) of a direct forward/grad_input.

    A block is tile_w columns x row_groups rows of py pixels x `slices` channel slices of
    threads. Of the row counts whose window fits shared memory (chunk(...) is not None), take
    the one with the fewest rows computed plus halo rows loaded, summed over the tiles of a
    column, then the fewest rows computed, then the tallest, preferring launches of at least
    MIN_BLOCKS blocks; try narrower tiles when nothing fits.
    """
    need = _ceil(rows, py)
    halo = (s.kh - 1) * s.dilation[0] / s.stride[0]  # in rows of the tile
    for max_w in (64, 32, 16, 8, 4, 2, 1):
        tiles_w = _ceil(cols, min(max_w, MAX_THREADS // slices))
        tile_w = _ceil(cols, tiles_w)
        options = []
        for rg in range(1, min(need, MAX_THREADS // (tile_w * slices)) + 1):
            c = chunk(tile_w, rg * py)
            if c is not None:
                tiles_h = _ceil(need, rg)
                few = s.n * s.groups * tiles_w * tiles_h < MIN_BLOCKS
                options.append(((few, tiles_h * (rg * py + halo), tiles_h * rg, -rg), rg, c))
        if options:
            _, rg, c = min(options)
            return tile_w, tiles_w, rg, c
    return None


@cache
def _plan_forward(s: ConvShape, ctype: str) -> Launch | None:
    """conv2d_forward_direct: weights [cg][kh][kw][og], then input windows of chunk_c channels."""
    (oh, ow), (sh, sw), (dh, dw) = s.out_hw, s.stride, s.dilation
    itemsize = 4 if ctype == "float" else 8
    opt = _width(s.og)
    py = 4 if oh >= 4 else 2 if oh >= 2 else 1
    w_elems = _round_up(s.og * s.cg * s.kh * s.kw, 4)
    budget = SHARED_BYTES // itemsize - w_elems

    def chunk(tile_w: int, tile_h: int) -> tuple[int, ...] | None:
        tih, tiw = (tile_h - 1) * sh + (s.kh - 1) * dh + 1, (tile_w - 1) * sw + (s.kw - 1) * dw + 1
        c = min(s.cg, budget // (tih * tiw))
        return (c, tih, tiw) if c >= 1 else None

    tiling = _tiling(s, oh, ow, s.og // opt, py, chunk)
    if tiling is None:
        return None
    tile_w, tiles_w, rg, (chunk_c, tih, tiw) = tiling
    kernel = Kernel("conv_direct.cu", _template("conv2d_forward_direct", ctype, s.kh, s.kw, opt, py, s.unit))
    return Launch(
        kernel,
        (tiles_w * _ceil(oh, rg * py), s.groups, s.n),
        tile_w * rg * (s.og // opt),
        (w_elems + chunk_c * tih * tiw) * itemsize,
        (tile_w, rg, tiles_w, chunk_c, tih, tiw, tiw, w_elems),
    )


@cache
def _plan_grad_input(s: ConvShape, ctype: str) -> Launch | None:
    """conv2d_grad_input_direct: weights [og][kh][kw][cg], then grad_y windows of chunk_o
    channels, tgh x tgw = the output positions a tile's pixels reach."""
    (sh, sw), (dh, dw) = s.stride, s.dilation
    itemsize = 4 if ctype == "float" else 8
    cpt = _width(s.cg)
    py = 4 if s.h >= 4 else 2 if s.h >= 2 else 1
    if not s.unit:  # a tap offset per (row, tap) stays in registers: keep them few
        py = min(py, max(1, GRAD_INPUT_MAX_OFFSETS // (s.kh * s.kw)))
    w_elems = _round_up(s.og * s.cg * s.kh * s.kw, 4)
    budget = SHARED_BYTES // itemsize - w_elems

    def chunk(tile_w: int, tile_h: int) -> tuple[int, ...] | None:
        tgh = (tile_h - 1 + (s.kh - 1) * dh) // sh + 1
        tgw = (tile_w - 1 + (s.kw - 1) * dw) // sw + 1
        c = min(s.og, budget // (tgh * tgw))
        return (c, tgh, tgw) if c >= 1 else None

    tiling = _tiling(s, s.h, s.w, s.cg // cpt, py, chunk)
    if tiling is None:
        return None
    tile_w, tiles_w, rg, (chunk_o, tgh, tgw) = tiling
    kernel = Kernel(
        "conv_direct.cu", _template("conv2d_grad_input_direct", ctype, s.kh, s.kw, cpt, py, s.unit)
    )
    return Launch(
        kernel,
        (tiles_w * _ceil(s.h, rg * py), s.groups, s.n),
        tile_w * rg * (s.cg // cpt),
        (w_elems + chunk_o * tgh * tgw) * itemsize,
        (tile_w, rg, tiles_w, chunk_o, tgh, tgw, tgw, w_elems),
    )


@cache
def _plan_grad_weight(s: ConvShape, ctype: str) -> Launch | None:
    """conv2d_grad_weight_direct: grid (chunks, groups); the partials' chunk count is grid[0].

    Threads are `pairs` (output slice, input channel) x npt pixel lanes, npt a power of two;
    with npt < 32 the pairs are padded to whole warps. Tiles are as tall as shared memory
    allows; the input window's channel pitch is offset by npt banks so that the pairs of
    one warp read different banks.
    """
    (oh, ow), (sh, sw), (dh, dw) = s.out_hw, s.stride, s.dilation
    itemsize = 4 if ctype == "float" else 8
    opt = _width(s.og, s.kh * s.kw, GRAD_WEIGHT_MAX_ACC)
    acc = opt * s.kh * s.kw
    pairs = s.og // opt * s.cg
    if pairs > MAX_THREADS:
        return None
    npt = 1
    while pairs * npt * 2 <= MAX_THREADS:
        npt *= 2
    threads = pairs * npt if npt >= 32 else _round_up(pairs, 32 // npt) * npt
    reduce_elems = pairs * max(1, npt // 32) * acc
    for max_w in (64, 32, 16, 8, 4, 2, 1):
        tiles_w = _ceil(ow, max_w)
        tile_w = _ceil(ow, tiles_w)
        tiw = (tile_w - 1) * sw + (s.kw - 1) * dw + 1
        for tiles_h in range(1, oh + 1):
            tile_h = _ceil(oh, tiles_h)
            tih = (tile_h - 1) * sh + (s.kh - 1) * dh + 1
            x_cpitch = _round_up(tih * tiw, 32) + npt % 32
            gy_off = _round_up(s.cg * x_cpitch, 4)
            elems = max(gy_off + s.og * tile_h * tile_w, reduce_elems)
            if elems * itemsize > SHARED_BYTES:
                continue
            tiles_h = _ceil(oh, tile_h)
            chunks = max(1, min(s.n * tiles_h * tiles_w, _ceil(GRAD_WEIGHT_BLOCKS, s.groups)))
            kernel = Kernel(
                "conv_direct.cu", _template("conv2d_grad_weight_direct", ctype, s.kh, s.kw, opt, s.unit)
            )
            return Launch(
                kernel,
                (chunks, s.groups, 1),
                threads,
                elems * itemsize,
                (
                    tile_h,
                    tile_w,
                    tiles_h,
                    tiles_w,
                    pairs,
                    npt,
                    tih,
                    tiw,
                    tiw,
                    x_cpitch,
                    tile_h * tile_w,
                    gy_off,
                ),
            )
    return None


@cache
def _direct_plans(s: ConvShape, ctype: str) -> tuple[Launch, Launch, Launch] | None:
    """The three direct launches, or None when the shape is outside what they handle."""
    if not (
        s.cg <= DIRECT_MAX_CHANNELS
        and s.og <= DIRECT_MAX_CHANNELS
        and s.kh * s.kw <= DIRECT_MAX_TAPS
        and s.groups <= 65535
        and s.n <= 65535
    ):
        return None
    plans = (_plan_forward(s, ctype), _plan_grad_input(s, ctype), _plan_grad_weight(s, ctype))
    return None if None in plans else plans  # type: ignore[return-value]


def _image_major(s: ConvShape) -> bool:
    """GEMM per image on the input itself: pointwise with enough pixels per image that each
    product is large; otherwise one product per group over im2col columns of many images."""
    oh, ow = s.out_hw
    return s.pointwise and oh * ow >= GEMM_MIN_PIXELS


@cache
def _algorithm(s: ConvShape) -> tuple[str, str]:
    per_group = f"{s.cg} input / {s.og} output channels per group"
    # decided for float64 so that both dtypes run the same algorithm
    if _direct_plans(s, "double") is not None:
        return "direct", (
            f"{per_group} (<= {DIRECT_MAX_CHANNELS}): memory-bound, direct "
            "kernels keep the group's weights and an input tile in shared memory"
        )
    how = (
        "per-image cuBLAS matmul on the input itself"
        if _image_major(s)
        else "im2col columns of many images, one cuBLAS matmul per group"
    )
    return "gemm", f"{per_group}: compute-bound, {how}"


def conv2d_algorithm(geometry: Conv2dGeometry) -> ConvChoices:
    """What each pass of this convolution runs on the GPU (one algorithm for all three), and
    why."""
    name, reason = _algorithm(_shape(geometry))
    return ConvChoices(*(Choice(name, {}, reason) for _ in range(3)))


def _shape(g: Conv2dGeometry) -> ConvShape:
    return ConvShape.of(g.input_shape, g.weight_shape, g.stride, g.padding, g.dilation, g.groups)


def _select(s: ConvShape, ctype: str, algorithm: str | None) -> tuple[Launch, Launch, Launch] | None:
    """The direct plans when the direct algorithm runs, else None (gemm)."""
    if algorithm is None:
        algorithm = _algorithm(s)[0]
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS} or None, got {algorithm!r}")
    if algorithm == "gemm":
        return None
    plans = _direct_plans(s, ctype)
    if plans is None:
        raise ValueError(f"the direct CUDA kernels do not handle {s}")
    return plans


def _elementwise_grid(total: int) -> tuple[int, int, int]:
    return (max(1, min(_ceil(total, ELEMENTWISE_THREADS), 1 << 16)), 1, 1)


def _chunks(s: ConvShape, itemsize: int) -> Iterator[tuple[int, int]]:
    """Image ranges whose im2col columns fit WORKSPACE_BYTES (at least one image each)."""
    oh, ow = s.out_hw
    step = max(1, WORKSPACE_BYTES // (s.c_in * s.kh * s.kw * oh * ow * itemsize))
    for n0 in range(0, s.n, step):
        yield n0, min(s.n, n0 + step)


def _layout(rt: Runtime, name: str, src: Any, dst: Any, s: ConvShape, m: int) -> None:
    """im2col (x -> columns) or col2im (columns -> grad_x) over a chunk of m images."""
    rt.launch(
        Kernel("conv_im2col.cu", _template(name, _ctype(dst.dtype))),
        _elementwise_grid(dst.size),
        ELEMENTWISE_THREADS,
        0,
        [
            src,
            dst,
            np.int64(dst.size),
            *_i32(s.c_in, m, s.h, s.w, s.kh, s.kw, *s.out_hw, *s.stride, *s.padding, *s.dilation),
        ],
    )


def _by_group(a: Any, m: int, groups: int) -> Any:
    """(m, groups * c, oh, ow) -> (groups, c, m * oh * ow), a copy."""
    return (
        a.reshape(m, groups, -1, a.shape[2] * a.shape[3])
        .transpose(1, 2, 0, 3)
        .reshape(groups, -1, m * a.shape[2] * a.shape[3])
    )


def _prepare(rt: Runtime, a: Any, b: Any) -> tuple[Any, Any, str]:
    """Both operands C-contiguous in a's float dtype, and that dtype's C type."""
    a = rt.xp.ascontiguousarray(a)
    ctype = _ctype(a.dtype)
    return a, rt.xp.ascontiguousarray(b, dtype=a.dtype), ctype


def _check_out(grad_out: Any, s: ConvShape) -> None:
    expected = (s.n, s.c_out, *s.out_hw)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"grad_out has shape {tuple(grad_out.shape)}, expected {expected}")


def _forward(
    rt: Runtime,
    x: Any,
    w: Any,
    bias: Any | None,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    algorithm: str | None = None,
) -> Any:
    xp = rt.xp
    x, w, ctype = _prepare(rt, x, w)
    s = ConvShape.of(x.shape, w.shape, stride, padding, dilation, groups)
    oh, ow = s.out_hw
    y = xp.empty((s.n, s.c_out, oh, ow), dtype=x.dtype)
    if y.size == 0:
        return y
    plans = _select(s, ctype, algorithm)
    if plans is not None:
        plan = plans[0]
        b = y if bias is None else xp.ascontiguousarray(bias, dtype=x.dtype)
        rt.launch(
            plan.kernel,
            plan.grid,
            plan.block,
            plan.shared,
            [x, w, b, y, *_i32(*s.geometry(), bias is not None, *plan.params)],
        )
        return y
    wg = w.reshape(s.groups, s.og, s.cg * s.kh * s.kw)
    if _image_major(s):
        xp.matmul(wg, x.reshape(s.n, s.groups, s.cg, oh * ow), out=y.reshape(s.n, s.groups, s.og, oh * ow))
    else:
        for n0, n1 in _chunks(s, x.itemsize):
            m = n1 - n0
            cols = xp.empty((s.groups, s.cg * s.kh * s.kw, m * oh * ow), dtype=x.dtype)
            _layout(rt, "im2col", x[n0:n1], cols, s, m)
            y[n0:n1] = (
                xp.matmul(wg, cols)
                .reshape(s.groups, s.og, m, oh, ow)
                .transpose(2, 0, 1, 3, 4)
                .reshape(m, s.c_out, oh, ow)
            )
    if bias is not None:
        y += xp.asarray(bias, dtype=x.dtype).reshape(1, -1, 1, 1)
    return y


def _grad_input(
    rt: Runtime,
    grad_out: Any,
    w: Any,
    input_hw: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    algorithm: str | None = None,
) -> Any:
    xp = rt.xp
    gy, w, ctype = _prepare(rt, grad_out, w)
    n, c_in, (h, wd) = gy.shape[0], w.shape[1] * groups, input_hw
    s = ConvShape.of((n, c_in, h, wd), w.shape, stride, padding, dilation, groups)
    _check_out(gy, s)
    gx = xp.empty((n, c_in, h, wd), dtype=gy.dtype)
    if gx.size == 0:
        return gx
    plans = _select(s, ctype, algorithm)
    if plans is not None:
        plan = plans[1]
        rt.launch(
            plan.kernel, plan.grid, plan.block, plan.shared, [gy, w, gx, *_i32(*s.geometry(), *plan.params)]
        )
        return gx
    wt = w.reshape(s.groups, s.og, s.cg * s.kh * s.kw).transpose(0, 2, 1)
    if _image_major(s):
        xp.matmul(wt, gy.reshape(n, s.groups, s.og, h * wd), out=gx.reshape(n, s.groups, s.cg, h * wd))
        return gx
    for n0, n1 in _chunks(s, gy.itemsize):
        cols = xp.matmul(wt, _by_group(gy[n0:n1], n1 - n0, s.groups))
        _layout(rt, "col2im", cols, gx[n0:n1], s, n1 - n0)
    return gx


def _grad_weight(
    rt: Runtime,
    x: Any,
    grad_out: Any,
    kernel_hw: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    algorithm: str | None = None,
) -> Any:
    xp = rt.xp
    x, gy, ctype = _prepare(rt, x, grad_out)
    w_shape = (gy.shape[1], x.shape[1] // groups, *kernel_hw)
    s = ConvShape.of(x.shape, w_shape, stride, padding, dilation, groups)
    _check_out(gy, s)
    if gy.size == 0:
        return xp.zeros(w_shape, dtype=x.dtype)
    plans = _select(s, ctype, algorithm)
    if plans is not None:
        plan = plans[2]
        chunks = plan.grid[0]
        gw = xp.empty(w_shape, dtype=x.dtype)
        partial = gw if chunks == 1 else xp.empty((chunks, *w_shape), dtype=x.dtype)
        rt.launch(
            plan.kernel,
            plan.grid,
            plan.block,
            plan.shared,
            [x, gy, partial, *_i32(s.n, *s.geometry(), *plan.params)],
        )
        if chunks > 1:
            rt.launch(
                Kernel("conv_im2col.cu", _template("sum_partials", ctype)),
                _elementwise_grid(gw.size),
                ELEMENTWISE_THREADS,
                0,
                [partial, gw, *_i32(chunks, gw.size)],
            )
        return gw
    oh, ow = s.out_hw
    k = s.cg * s.kh * s.kw
    gw = xp.zeros((s.groups, s.og, k), dtype=x.dtype)
    if _image_major(s):  # a sum over images of per-image products, in chunks
        step = max(1, WORKSPACE_BYTES // (s.c_out * k * x.itemsize))
        for n0 in range(0, s.n, step):
            m = min(s.n, n0 + step) - n0
            gw += xp.matmul(
                gy[n0 : n0 + m].reshape(m, s.groups, s.og, oh * ow),
                x[n0 : n0 + m].reshape(m, s.groups, k, oh * ow).transpose(0, 1, 3, 2),
            ).sum(axis=0)
        return gw.reshape(w_shape)
    for n0, n1 in _chunks(s, x.itemsize):
        m = n1 - n0
        cols = xp.empty((s.groups, k, m * oh * ow), dtype=x.dtype)
        _layout(rt, "im2col", x[n0:n1], cols, s, m)
        gw += xp.matmul(_by_group(gy[n0:n1], m, s.groups), cols.transpose(0, 2, 1))
    return gw.reshape(w_shape)


class _CupyRuntime:
    """CuPy arrays; each kernel compiled by NVRTC on its first launch (and cached by CuPy)."""

    def __init__(self) -> None:
        import cupy

        self.xp = cupy
        self._functions: dict[Kernel, Any] = {}

    def launch(
        self,
        kernel: Kernel,
        grid: tuple[int, int, int],
        block: int,
        shared: int,
        args: Sequence[Any],
    ) -> None:
        function = self._functions.get(kernel)
        if function is None:
            module = self.xp.RawModule(
                code=kernel_source(kernel.source), options=COMPILE_OPTIONS, name_expressions=(kernel.name,)
            )
            function = self._functions[kernel] = module.get_function(kernel.name)
        function(grid, (block, 1, 1), tuple(args), shared_mem=shared)


@cache
def kernel_source(name: str) -> str:
    """The text of a .cu file of this folder with its local #includes inlined, so NVRTC needs
    no include path and CuPy's cache key covers every line that is compiled."""

    def inline(match: re.Match[str]) -> str:
        return (SOURCE_DIR / match.group(1)).read_text().replace("#pragma once\n", "")

    return _INCLUDE.sub(inline, (SOURCE_DIR / name).read_text())


def nvrtc_compile(source: str, names: Sequence[str], arch: str = "sm_90") -> dict[str, str]:
    """Compile `source` with NVRTC through CuPy for `arch`, with the options cupy.RawModule
    uses, instantiating `names`; needs CuPy's NVRTC library but no GPU. Returns each name's
    lowered (mangled) symbol; raises RuntimeError with NVRTC's log on failure."""
    from cupy_backends.cuda.libs import nvrtc

    # cupy.RawModule adds these to the caller's options (cupy/cuda/compiler.py)
    options = [*COMPILE_OPTIONS, f"-arch={arch}", "--device-as-default-execution-space", "-ftz=true"]
    program = nvrtc.createProgram(source, "kernel.cu", [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(program, name)
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as e:
            raise RuntimeError(f"{e}\n{nvrtc.getProgramLog(program)}") from None
        return {name: nvrtc.getLoweredName(program, name) for name in names}
    finally:
        nvrtc.destroyProgram(program)


@cache
def _cupy() -> _CupyRuntime:
    return _CupyRuntime()


def conv2d_forward(
    x: Any, w: Any, bias: Any | None, geometry: Conv2dGeometry, algorithm: str | None = None
) -> Any:
    """y (N, C_out, H_out, W_out) = grouped conv of CuPy x with w, plus bias."""
    g = geometry
    return _forward(_cupy(), x, w, bias, g.stride, g.padding, g.dilation, g.groups, algorithm)


def conv2d_grad_input(
    grad_out: Any, w: Any, geometry: Conv2dGeometry, algorithm: str | None = None
) -> Any:
    """grad_x (N, C_in, H, W): the adjoint of the forward in x."""
    g = geometry
    return _grad_input(_cupy(), grad_out, w, g.input_hw, g.stride, g.padding, g.dilation,
                       g.groups, algorithm)


def conv2d_grad_weight(
    x: Any, grad_out: Any, geometry: Conv2dGeometry, algorithm: str | None = None
) -> Any:
    """grad_w (C_out, C_in // groups, kH, kW): the adjoint of the forward in w."""
    g = geometry
    return _grad_weight(_cupy(), x, grad_out, g.kernel_hw, g.stride, g.padding, g.dilation,
                        g.groups, algorithm)


def kernels_for(s: ConvShape, ctype: str, algorithm: str | None = None) -> list[Kernel]:
    """Every kernel the three passes launch for this shape, C type and algorithm."""
    plans = _select(s, ctype, algorithm)
    if plans is not None:
        kernels = [plan.kernel for plan in plans]
        if plans[2].grid[0] > 1:
            kernels.append(Kernel("conv_im2col.cu", _template("sum_partials", ctype)))
        return kernels
    if _image_major(s):
        return []
    return [Kernel("conv_im2col.cu", _template(name, ctype)) for name in ("im2col", "col2im")]
