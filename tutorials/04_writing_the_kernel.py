# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Writing the kernel
#
# `F.conv2d` is one autograd `Function` whose forward and backward call three kernels through
# the backend: `conv2d_forward`, `conv2d_grad_input` and `conv2d_grad_weight`. This tutorial
# goes from the definition to a fast CPU kernel: a first Numba translation of the loop, the
# loop order that makes it fast, the two gradients derived and checked (against autograd,
# central differences and hypothesis-drawn shapes), and a roofline of this machine, measured
# here, that says how fast a convolution *can* be.
#
# * **You will learn:** how loop order makes a convolution kernel fast, how `grad_input` and
#   `grad_weight` follow from the forward, how to check kernels against a reference, and how to
#   read a roofline.
# * **Prerequisites:** [tutorial 1](01_grouped_convolution.md); the chain rule; some idea of
#   caches and SIMD helps.
# * **Runtime:** about 1 minute on 2 CPU cores (20 s with `MINITORCH_FAST=1`), plus the
#   compilation of the CPU kernels on a first run (several minutes).

# %%
import os
import time

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter
from numba import njit

import minitorch_resnext as mr
from minitorch_resnext import functional as F
from minitorch_resnext.bench._common import blas_threads, cpu_model, measure_roofline
from minitorch_resnext.figures import FigureWriter
from minitorch_resnext.kernels import cpu, reference
from minitorch_resnext.kernels.cpu import tiled
from minitorch_resnext.kernels.geometry import Conv2dGeometry
from minitorch_resnext.testing import gradcheck

FAST = os.environ.get("MINITORCH_FAST") == "1"
figures = FigureWriter("04_writing_the_kernel.py")
rng = np.random.default_rng(0)


def best_times(calls: dict, repeats: int) -> dict:
    """Seconds per call of each function: the best of `repeats` interleaved rounds after a
    warm-up (other programs on the machine can only ever add time)."""
    for fn in calls.values():
        fn()
    samples = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: min(s) for name, s in samples.items()}


# %% [markdown]
# ## The oracle
#
# `kernels/reference.py` is the ground truth every kernel is tested against: slow, short and
# obviously right. It loops over groups and the `kH x kW` kernel taps; for one tap `(p, q)` the
# input pixels read by all output pixels form one strided window of the zero-padded input, so
# the convolution is a sum over taps of a per-group channel contraction (`einsum`) of that
# window. Its arguments follow PyTorch: stride, padding and dilation as pairs, then groups.
#
# ## A first Numba kernel
#
# Translating the definition loop for loop (stride 1, no padding, to keep it short) and
# compiling it with Numba gives a kernel that is correct but spends its time badly:

# %%
@njit(cache=True)
def conv2d_naive(x, w, groups):
    n_img, _, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    oh, ow = h - kh + 1, wd - kw + 1
    y = np.zeros((n_img, c_out, oh, ow), dtype=x.dtype)
    for n in range(n_img):
        for o in range(c_out):
            g = o // og
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0
                    for c in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                acc += w[o, c, p, q] * x[n, g * cg + c, i + p, j + q]
                    y[n, o, i, j] = acc
    return y


# %% [markdown]
# Each output pixel is a dot product of `C_in/G * 9` numbers gathered from `C_in/G * 3` rows:
# the innermost loop is three iterations long, so nothing is vectorised, and every input
# value is loaded again for each output channel and each of the 9 taps that read it.
#
# ## The loop order that makes it fast
#
# The project's kernel (`kernels/cpu/direct.py`) turns the loops inside out. One parallel task
# owns **one output row of one group**; for each input channel `c` and kernel row `i` of the
# group it reads the input row once, and with it updates the output rows of *all* of the
# group's output channels, one kernel column at a time. The innermost loop runs along the
# output row, which is contiguous in memory, so LLVM vectorises it; the weight is a scalar in
# a register; and the group's few output rows stay in the L1 cache while they accumulate.
# The project's kernel runs the tasks in parallel (`numba.prange`); stripped of that and of
# stride, padding and dilation, it is:

# %%
@njit(cache=True)
def conv2d_rows(x, w, groups):
    n_img, _, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    oh, ow = h - kh + 1, wd - kw + 1
    y = np.zeros((n_img, c_out, oh, ow), dtype=x.dtype)
    for task in range(n_img * groups * oh):  # one task: one output row of one group
        n = task // (groups * oh)
        g = (task // oh) % groups
        r = task % oh
        for c in range(cg):
            for i in range(kh):
                xrow = x[n, g * cg + c, r + i]  # read once ...
                for j in range(kw):
                    for o in range(og):  # ... used by every output channel of the group
                        wv = w[g * og + o, c, i, j]
                        yrow = y[n, g * og + o, r]
                        for q in range(ow):  # contiguous: vectorised
                            yrow[q] += wv * xrow[q + j]
    return y


# %% [markdown]
# All four implementations agree on the 3x3 grouped convolution of ResNeXt-50's first stage
# (128 channels in 32 groups of 4, 56 x 56), and the timings show what the loop order buys:
# the two Numba kernels are both single-threaded and differ only in loop order. The project's
# kernel also runs in parallel and handles stride, padding and dilation, by clipping the inner
# loop to the valid columns rather than testing each element.

# %%
BATCH = 1 if FAST else 4
x = rng.standard_normal((BATCH, 128, 58, 58)).astype(np.float32)  # 56x56 output, no padding
w = rng.standard_normal((128, 4, 3, 3)).astype(np.float32)
geometry = Conv2dGeometry.of(x.shape, w.shape, groups=32)  # sizes and arguments, checked once
expected = reference.conv2d_forward(x, w, None, geometry)
candidates = {
    "reference (NumPy)": lambda: reference.conv2d_forward(x, w, None, geometry),
    "naive Numba": lambda: conv2d_naive(x, w, 32),
    "row-blocked Numba": lambda: conv2d_rows(x, w, 32),
    "project kernel": lambda: cpu.conv2d_forward(x, w, None, geometry),
}
for name, fn in candidates.items():
    np.testing.assert_allclose(fn(), expected, rtol=1e-4, atol=1e-4, err_msg=name)
seconds = best_times(candidates, repeats=3 if FAST else 7)
flops = 2 * expected.size * 4 * 9
for name, s in seconds.items():
    print(f"{name:18s} {s * 1e3:8.2f} ms  {flops / s / 1e9:6.2f} GFLOP/s")
assert seconds["row-blocked Numba"] < seconds["naive Numba"]
assert seconds["project kernel"] < seconds["reference (NumPy)"]

# %% [markdown]
# ## The gradient with respect to the input: a transposed convolution
#
# Input pixel `x[n, c, h, w]` (in group `g`) contributes to output pixel `(i, j)` of every
# output channel `o` of its group through tap `(p, q) = (h - i*s + pad, ...)`. So by the
# chain rule
#
#     dL/dx[n, c, h, w] = sum over o in group g, taps (p, q) with h = i*s - pad + p of
#                         w[o, c, p, q] * dL/dy[n, o, i, j]
#
# which reads the forward backwards: the same weights, each input channel now gathering from
# the output channels of its group. That is a **transposed convolution**. With stride 1 it is
# an ordinary convolution of `dL/dy` with the weight flipped in space and with input and
# output channels exchanged inside each group, padded by `k - 1 - pad`:


# %%
def transposed_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """(C_out, C_in/G, k, k) -> (C_in, C_out/G, k, k): swap channels within groups, flip taps."""
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    wt = w.reshape(groups, og, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(groups * cg, og, kh, kw)
    return wt[:, :, ::-1, ::-1].copy()


G, PAD = 4, 1
x64 = rng.standard_normal((2, 8, 7, 7))
w64 = rng.standard_normal((12, 8 // G, 3, 3))
gy = rng.standard_normal((2, 12, 7, 7))  # dL/dy for stride 1, padding 1: same size as x

as_transposed_conv = F.conv2d(mr.tensor(gy), mr.tensor(transposed_weight(w64, G)),
                              padding=3 - 1 - PAD, groups=G).numpy()
geometry = Conv2dGeometry.of(x64.shape, w64.shape, padding=PAD, groups=G)
kernel = cpu.conv2d_grad_input(gy, w64, geometry)
xt = mr.tensor(x64, requires_grad=True)
F.conv2d(xt, mr.tensor(w64), padding=PAD, groups=G).backward(mr.tensor(gy))
np.testing.assert_allclose(kernel, as_transposed_conv, rtol=1e-10, atol=1e-10)
np.testing.assert_allclose(xt.grad.numpy(), as_transposed_conv, rtol=1e-10, atol=1e-10)
print("grad_input == convolution of dL/dy with the flipped, group-transposed weight")

# %% [markdown]
# With stride `s > 1` the same holds after spreading `dL/dy` out with `s - 1` zeros between its
# pixels; the kernel does not build that mostly-zero array but scatters each output row into
# the input rows it came from.

# %%
gy2 = rng.standard_normal((2, 12, 4, 4))  # dL/dy of the stride-2 convolution of a 7x7 input
spread = np.zeros((2, 12, 7, 7))
spread[:, :, ::2, ::2] = gy2
as_transposed_conv = F.conv2d(mr.tensor(spread), mr.tensor(transposed_weight(w64, G)),
                              padding=3 - 1 - PAD, groups=G).numpy()
kernel = cpu.conv2d_grad_input(
    gy2, w64, Conv2dGeometry.of(x64.shape, w64.shape, stride=2, padding=PAD, groups=G))
np.testing.assert_allclose(kernel, as_transposed_conv, rtol=1e-10, atol=1e-10)
print("stride 2: grad_input == convolution of the zero-spread dL/dy")

# %% [markdown]
# ## The gradient with respect to the weight: a correlation
#
#     dL/dw[o, c, p, q] = sum over n, i, j of dL/dy[n, o, i, j] * x_padded[n, g*C_in/G + c, i*s + p, j*s + q]
#
# For each tap `(p, q)`, that is the window of the input the tap reads, contracted with
# `dL/dy` over images and pixels: a correlation of the input with the output gradient. With
# NumPy's sliding windows it is one `einsum` per group:

# %%
xp = np.pad(x64, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (N, C, 7, 7, 3, 3)
cg, og = 8 // G, 12 // G
by_windows = np.concatenate([
    np.einsum("nohw,nchwpq->ocpq", gy[:, g * og:(g + 1) * og], windows[:, g * cg:(g + 1) * cg])
    for g in range(G)
])
kernel = cpu.conv2d_grad_weight(x64, gy, geometry)
wt = mr.tensor(w64, requires_grad=True)
F.conv2d(mr.tensor(x64), wt, padding=PAD, groups=G).backward(mr.tensor(gy))
np.testing.assert_allclose(kernel, by_windows, rtol=1e-10, atol=1e-10)
np.testing.assert_allclose(wt.grad.numpy(), by_windows, rtol=1e-10, atol=1e-10)
print("grad_weight == correlation of the input windows with dL/dy")

# %% [markdown]
# The project's `grad_weight` kernel gives each (group, chunk of images) task its own
# accumulator and adds the chunks in a fixed order, so the result is bitwise the same whatever
# the number of threads:

# %%
xb = rng.standard_normal((16, 16, 12, 12)).astype(np.float32)
gyb = rng.standard_normal((16, 16, 12, 12)).astype(np.float32)
threads = numba.get_num_threads()
by_threads = {}
for n_threads in sorted({1, threads}):
    numba.set_num_threads(n_threads)
    by_threads[n_threads] = cpu.conv2d_grad_weight(
        xb, gyb, Conv2dGeometry.of(xb.shape, (16, 4, 3, 3), padding=1, groups=4))
numba.set_num_threads(threads)
assert np.array_equal(by_threads[1], by_threads[threads])
print(f"grad_weight with 1 and {threads} thread(s): bitwise equal")

# %% [markdown]
# ## Checking the gradients: finite differences and hypothesis
#
# `gradcheck` compares the backward with central differences in float64, element by element,
# here with every option at once — stride 2, padding, dilation 2, groups and a bias:

# %%
inputs = [mr.tensor(rng.standard_normal(shape), requires_grad=True)
          for shape in ((2, 4, 7, 6), (6, 2, 3, 2), (6,))]
report = gradcheck(lambda a, b, c: F.conv2d(a, b, c, stride=2, padding=(1, 2), dilation=(2, 1),
                                            groups=2), inputs)
print(report)
assert report.ok

# %% [markdown]
# One configuration proves little. Hypothesis draws many — shapes, strides, paddings,
# dilations and group counts — and checks all three kernels against the reference for each;
# when one fails, it shrinks the failure to the smallest configuration that still fails.


# %%
@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 4))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, kh // 2 + 1)), draw(st.integers(0, kw // 2 + 1)))
    h = draw(st.integers(dilation[0] * (kh - 1) + 1, 9))
    wd = draw(st.integers(dilation[1] * (kw - 1) + 1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    return (draw(st.integers(1, 3)), groups, cg, og, (kh, kw), (h, wd), stride, padding,
            dilation, seed)


@settings(max_examples=15 if FAST else 100, deadline=None, database=None)
@given(conv_configs())
def kernels_match_reference(config):
    n, groups, cg, og, k, hw, stride, padding, dilation, seed = config
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, groups * cg, *hw))
    w = r.standard_normal((groups * og, cg, *k))
    g = Conv2dGeometry.of(x.shape, w.shape, stride, padding, dilation, groups)
    y = reference.conv2d_forward(x, w, None, g)
    gy = r.standard_normal(y.shape)
    passes = {
        "forward": (lambda a: cpu.conv2d_forward(x, w, None, g, a), y),
        "grad_input": (lambda a: cpu.conv2d_grad_input(gy, w, g, a),
                       reference.conv2d_grad_input(gy, w, g)),
        "grad_weight": (lambda a: cpu.conv2d_grad_weight(x, gy, g, a),
                        reference.conv2d_grad_weight(x, gy, g)),
    }
    for name, algorithm in cpu.ALGORITHMS.items():
        for pass_, (run, want) in passes.items():
            if algorithm.computes(pass_, g):  # e.g. tiled: no grad_weight
                np.testing.assert_allclose(run(name), want, atol=1e-10)


kernels_match_reference()
print("hypothesis: every drawn configuration matches the reference, for every CPU algorithm")

# %% [markdown]
# ## How fast can it be? The roofline of this machine
#
# A kernel is limited either by arithmetic — the machine's peak FLOP/s — or by memory — its
# bandwidth times the kernel's arithmetic intensity (FLOP per byte moved). The **roofline**
# is the smaller of the two: `attainable = min(peak, intensity * bandwidth)`. We measure both
# numbers here exactly as `minitorch-resnext bench conv` does, with the same function
# (`measure_roofline`) and the same threads: the peak is the fastest of a float32 matrix
# multiply and an FMA probe (the tiled kernel's micro-kernel on operands that stay in the L1
# cache, `cpu.peak_probe`, introduced below), because a BLAS built without AVX-512 kernels
# reaches only half of an AVX-512 core's peak; the bandwidth is a parallel copy of an array
# much larger than the caches (each byte read once and written once). On a shared machine
# both are lower bounds of what the hardware can do.

# %%
THREADS = numba.get_num_threads()
with blas_threads(THREADS):
    roof = measure_roofline(np, threads=THREADS, settle_s=0.2, repeats=5,
                            copy_bytes=(64 if FAST else 256) * 2**20,
                            probes={"fma probe": cpu.peak_probe(repeats=2000 if FAST else 10_000)})
PEAK, BANDWIDTH, BALANCE = roof.peak_flops, roof.bandwidth, roof.balance
# other programs running at the same time lower both numbers: say how busy the machine was
LOAD = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
rates = ", ".join(f"{name} {rate:.1f}" for name, rate in roof.method["matmul_gflops"].items())
print(f"peak {PEAK / 1e9:.1f} GFLOP/s (best of: {rates}), bandwidth {BANDWIDTH / 1e9:.1f} GB/s, "
      f"balance {BALANCE:.1f} FLOP/byte, {THREADS} thread(s){LOAD}")
assert PEAK > 1e9 and BANDWIDTH > 1e8


def attainable(intensity: float) -> float:
    return min(PEAK, intensity * BANDWIDTH)


# %% [markdown]
# Now place convolutions on it: the grouped 3x3 of ResNeXt-50's first stage (4 channels per
# group), its depthwise and dense relatives, each run by every CPU algorithm of
# `cpu.ALGORITHMS` that computes it (forced with `algorithm=`): the direct kernel and its
# depthwise sibling, im2col + GEMM, the register-tiled kernel and the implicit GEMM (the last
# two are explained below). Intensity
# counts the minimum traffic: input read once, output written once, weights read once,
# float32. A point above the slanted roof means the data stayed in the caches, which are
# faster than the memory the copy measured.

# %%
SHAPES = {"depthwise (G=128)": 128, "ResNeXt 32x4d (G=32)": 32, "dense (G=1)": 1}
HW = 28 if FAST else 56
points, chosen_by_shape = [], {}
for label, groups in SHAPES.items():
    x = rng.standard_normal((BATCH, 128, HW, HW)).astype(np.float32)
    w = rng.standard_normal((128, 128 // groups, 3, 3)).astype(np.float32)
    flops = 2 * BATCH * HW * HW * w.size
    intensity = flops / (4 * (2 * x.size + w.size))
    g = Conv2dGeometry.of(x.shape, w.shape, padding=1, groups=groups)
    calls = {algo: (lambda x=x, w=w, g=g, algo=algo: cpu.conv2d_forward(x, w, None, g, algo))
             for algo, kernels in cpu.ALGORITHMS.items() if kernels.computes("forward", g)}
    seconds = best_times(calls, repeats=3 if FAST else 5)
    choice = cpu.conv2d_algorithm(g).forward
    chosen, why = choice.algorithm, choice.reason
    chosen_by_shape[label] = chosen
    for algo, s in seconds.items():
        rate = flops / s
        points.append((label, algo, intensity, rate))
        print(f"{label:22s} {algo:8s} {intensity:6.1f} FLOP/byte {rate / 1e9:7.2f} GFLOP/s "
              f"= {rate / attainable(intensity):4.0%} of the roofline")
    bound = "memory" if intensity < BALANCE else "compute"
    print(f"  -> {bound}-bound on this measurement; the kernel picks {chosen}: {why}")
    if groups > 1:  # low intensity: one pass over the input beats building 9x its size
        one_pass = "depthwise" if groups == 128 else "direct"
        assert chosen == one_pass and seconds[one_pass] < seconds["gemm"], (label, seconds)

# %% [markdown]
# The depthwise and grouped convolutions do about 2 and 9 FLOP per byte, the dense one over
# 100 (the `assert` below checks it). Whether a point is limited by memory or by arithmetic
# depends on where it falls against the machine's balance, printed above for this
# measurement. With the FMA peak, the balance of an AVX-512 server core is above 10 FLOP per
# byte ([the benchmarks](../docs/benchmarks.md) record this machine's), so ResNeXt's grouped
# 3x3 sits left of the ridge, memory-bound, as tutorial 1 said; a BLAS matmul alone would
# have put the peak, and the ridge, at half and called it compute-bound. The dense convolution
# is far to the right of any processor's balance: arithmetic decides, and
# a GEMM runs near peak once the problem is large enough to amortise im2col, which is why the
# selection rule `cpu.conv2d_algorithm` sends convolutions with 96 or more channels per group
# to it, and most of those with 8 to 95 to the register-tiled kernel, which keeps the
# FMA units busy without building im2col columns. (At this tutorial's sizes any of them may
# win the dense case; `minitorch-resnext bench conv` compares them at full size.) The grouped
# and depthwise convolutions are at the low
# end, where every byte beyond the minimum costs time: the direct kernel, which reads each
# input row once and never materialises the 9x larger im2col matrix, beats GEMM on them, and
# so does the depthwise kernel (`kernels/cpu/depthwise.py`), the same idea for one channel
# per group that also sums all nine taps of an output before storing it —
# the `assert` above checks both.

# %%
intensities = {label: i for label, _, i, _ in points}
assert intensities["depthwise (G=128)"] < 3 and intensities["ResNeXt 32x4d (G=32)"] < 10
assert intensities["dense (G=1)"] > 100
fig = Figure(figsize=(9, 5.5), layout="constrained")
ax = fig.subplots()
grid_i = np.logspace(-1, 3, 200)
roof_line, = ax.loglog(grid_i, [attainable(i) / 1e9 for i in grid_i], "k-")
ridge = ax.axvline(BALANCE, color="gray", linestyle=":")
markers = dict(zip(cpu.ALGORITHMS, "osD^v<>"))  # a marker per algorithm, and spares
drawn = [algo for algo in markers if any(algo == a for _, a, _, _ in points)]
colors = dict(zip(SHAPES, ("tab:green", "tab:blue", "tab:red")))
for label, algo, intensity, rate in points:
    ax.loglog(intensity, rate / 1e9, markers[algo], color=colors[label], markersize=9,
              markerfacecolor="none" if algo != chosen_by_shape[label] else colors[label])
shapes_legend = ax.legend(
    [roof_line, ridge, *(Line2D([], [], color=c, marker="o", ls="") for c in colors.values())],
    [f"roofline (peak {PEAK / 1e9:.0f} GFLOP/s, {BANDWIDTH / 1e9:.0f} GB/s, measured here)",
     f"machine balance {BALANCE:.1f} FLOP/byte", *colors], fontsize=8, loc="upper left")
ax.add_artist(shapes_legend)
ax.legend([Line2D([], [], color="gray", marker=markers[algo], ls="") for algo in drawn],
          drawn, title="algorithm (filled: the one chosen)",
          fontsize=8, title_fontsize=8, loc="lower right")
low, high = ax.get_ylim()
ax.set_yticks([v for v in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if low <= v <= high])
for axis in (ax.xaxis, ax.yaxis):
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
ax.set_xlabel("arithmetic intensity (FLOP per byte of minimum traffic)")
ax.set_ylabel("GFLOP/s (float32, forward)")
ax.set_title(f"3x3 convolutions, 128 channels, {BATCH} x {HW}x{HW}, float32, {THREADS} thread(s)\n"
             f"{cpu_model()}{LOAD}", fontsize=10)
ax.grid(True, which="both", alpha=0.3)
figures.save(fig, "04_roofline.png")

# %% [markdown]
# ## Past the loads: a register-tiled micro-kernel
#
# With 16 or more channels per group a convolution does 30-70 FLOP per byte and is
# compute-bound, so what limits the direct kernel is its inner loop itself: every few
# multiply-adds it loads and stores a row of outputs. The register-tiled kernel
# (`kernels/cpu/tiled.py`) keeps a block of 8 output channels x 32 pixels in registers for a
# whole reduction over input channels and taps: per step it loads 32 input values (two
# AVX-512 vectors) and 8 weights, and does 16 vector multiply-adds, with no store at all.
# Numba has no vector types, so the block is written out as scalar statements, which
# LLVM's SLP vectoriser packs into vector registers. Here is the generated source for a tiny
# 2 x 4 tile (the real one is 8 x 32):

# %%
print(tiled.tile_source(2, 4))

# %% [markdown]
# On operands that stay in the L1 cache this micro-kernel runs close to the cores' vector
# FMA peak: it is the "fma probe" the roofline above took its peak from, beside the BLAS
# matmul. Then the same convolution with 16 channels per group, by the direct kernel and by the
# tiled one:

# %%
print("GFLOP/s measured for the peak above:", roof.method["matmul_gflops"])


def race(n: int, channels: int, hw: int, groups: int, algorithms: tuple[str, ...]) -> None:
    """Time a 3x3 grouped convolution's forward pass with each algorithm, check the last one
    against the reference and print what the selection rule would run."""
    x = rng.standard_normal((n, channels, hw, hw)).astype(np.float32)
    w = rng.standard_normal((channels, channels // groups, 3, 3)).astype(np.float32)
    flops = 2 * n * hw * hw * w.size
    g = Conv2dGeometry.of(x.shape, w.shape, padding=1, groups=groups)
    calls = {algo: (lambda algo=algo: cpu.conv2d_forward(x, w, None, g, algo))
             for algo in algorithms}
    for algo, s in best_times(calls, repeats=3 if FAST else 10).items():
        print(f"{channels // groups} channels per group, {hw}x{hw}, {algo:8s}: "
              f"{flops / s / 1e9:6.1f} GFLOP/s")
    np.testing.assert_allclose(calls[algorithms[-1]](),
                               reference.conv2d_forward(x, w, None, g),
                               rtol=1e-4, atol=1e-3)
    print("chosen:", cpu.conv2d_algorithm(g).forward)


race(2 if FAST else 16, 256, 14, 16, ("direct", "tiled"))  # like ResNeXt-50's third stage

# %% [markdown]
# The tiled kernel's vector lanes hold 32 consecutive pixels of a zero-padded copy of the
# input, so on small images part of its work is on padding: on 7x7 images (ResNeXt-50's last
# stage) a row of 7 pixels is stored in 8 columns and an image in 8 rows, and 18 % of the
# taps of a 3x3 kernel fall outside the image. From 32 channels per group the lanes can hold
# output channels instead: the implicit-GEMM kernel (`kernels/cpu/implicit.py`) puts 8 output
# pixels on the rows of the tile, each reading the input in place, and groups the pixels by
# which taps fall inside the image (interior, edges, corners), so that a tile multiplies only
# by those. No copy, no junk pixel, no padding:

# %%
race(2 if FAST else 32, 1024, 7, 32, ("tiled", "implicit"))  # like its fourth stage

# %% [markdown]
# With 16 output channels per group one vector register holds them all, and a tile of 8
# pixel rows would need a broadcast for every multiply-add: this core issues about 1.4
# broadcasts per cycle against 2 multiply-adds, so such a tile stays well below the peak. For
# 3x3 convolutions (stride 1, padding 1) on 7- and 14-wide images the implicit kernel has a
# row tile instead: its rows are all the output pixels of one image row, and each input
# value, broadcast once, feeds the three outputs whose taps read it. The third stage again,
# tiled against row tiles:

# %%
race(2 if FAST else 16, 256, 14, 16, ("tiled", "implicit"))

# %% [markdown]
# ## Summary
#
# * The definition, compiled as it stands, is slow: short inner loops and repeated loads.
# * Blocking by output row and group, with the row as the vectorised inner loop, reads each
#   input row once for all the group's output channels.
# * `grad_input` is a transposed convolution (flipped, group-transposed weights);
#   `grad_weight` is a correlation of the input with `dL/dy`. Both are checked against
#   autograd, finite differences and the reference on hypothesis-drawn configurations.
# * Grouped convolutions do little arithmetic per byte, dense ones much; the kernel choice
#   follows the arithmetic intensity.
# * Where the arithmetic dominates, keeping a block of outputs in registers for the whole
#   reduction (a micro-kernel) is what reaches the FMA peak; on small images, which
#   dimension goes on the vector lanes decides how much of that work is on padding.
#
# ## Exercises
#
# Fill in the stubs in `tutorials/exercises/t4_writing_the_kernel.py` and check them with
# `pytest tests/exercises -k "t4 and yours"` (solutions in `tutorials/exercises/solutions/`).
#
# 1. `grad_input` with dilation: send each output gradient back along the dilated taps.
# 2. `im2col`: the matrix whose product with the reshaped weight is the convolution.
# 3. `im2col_bytes`: what that matrix costs in memory, and why it is 9x the input for a 3x3.
# 4. `grad_weight`: the correlation of the padded input with `dL/dy`, for any kernel and padding.
