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
# # 1. Grouped convolution from first principles
#
# A convolution layer maps `C_in` input channels to `C_out` output channels. In an ordinary
# (*dense*) convolution every output channel looks at every input channel. A **grouped**
# convolution with `G` groups splits both the input and the output channels into `G` equal,
# consecutive slices and convolves slice `g` of the input only into slice `g` of the output:
# `G` independent small convolutions run side by side. ResNeXt calls the number of these
# parallel paths the block's **cardinality**.
#
# This tutorial builds grouped convolution from a plain Python loop, shows that it is a dense
# convolution whose weight is block-diagonal, counts its parameters and multiply-adds as
# functions of `G`, and looks at the two extremes: `G = 1` (dense) and `G = C` (depthwise).
# Every claim is checked by an `assert`, so running this file is a test of the claims.

# %%
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

import minitorch_resnext as mr
from minitorch_resnext import functional as F
from minitorch_resnext import nn

# this folder, whether run from the repository root or, as a notebook, from tutorials/
TUTORIALS = Path("tutorials") if Path("tutorials").is_dir() else Path()
FIGURES = Path(os.environ.get("MINITORCH_FIGURES", TUTORIALS / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)


def save(fig: Figure, name: str) -> None:
    fig.savefig(FIGURES / name, dpi=110, bbox_inches="tight")
    print(f"figure written: {FIGURES / name}")


def conv(x: np.ndarray, w: np.ndarray, **kwargs) -> np.ndarray:
    """The project's `F.conv2d` on NumPy arrays (float64, so comparisons can be tight)."""
    return F.conv2d(mr.tensor(x), mr.tensor(w), **kwargs).numpy()


# %% [markdown]
# ## The loop
#
# With stride 1, no padding and no dilation, output pixel `(i, j)` of output channel `o` is
#
#     y[n, o, i, j] = sum over c < C_in/G, p < kH, q < kW of
#                     w[o, c, p, q] * x[n, g*C_in/G + c, i + p, j + q],   g = o // (C_out/G)
#
# The weight has shape `(C_out, C_in/G, kH, kW)`: each output channel stores weights only for
# the `C_in/G` input channels of its own group. The loop below is that formula, one
# multiply-add per innermost iteration, and it counts them.


# %%
def conv2d_loop(x: np.ndarray, w: np.ndarray, groups: int) -> tuple[np.ndarray, int]:
    """Grouped convolution by definition (stride 1, no padding); returns (y, multiply-adds)."""
    n_img, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    assert c_in == cg * groups and c_out % groups == 0
    og = c_out // groups  # output channels per group
    oh, ow = h - kh + 1, wd - kw + 1
    y = np.zeros((n_img, c_out, oh, ow))
    macs = 0
    for n in range(n_img):
        for o in range(c_out):
            g = o // og  # the group output channel o belongs to
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0
                    for c in range(cg):  # only the C_in/G input channels of group g
                        for p in range(kh):
                            for q in range(kw):
                                acc += w[o, c, p, q] * x[n, g * cg + c, i + p, j + q]
                                macs += 1
                    y[n, o, i, j] = acc
    return y, macs


# %% [markdown]
# The project's `F.conv2d` (Numba kernels behind the CPU backend) must agree with the loop for
# every number of groups that divides the channel count:

# %%
C, K, HW = 8, 3, 6
x = rng.standard_normal((2, C, HW, HW))
for groups in (1, 2, 4, 8):
    w = rng.standard_normal((C, C // groups, K, K))
    y_loop, macs = conv2d_loop(x, w, groups)
    y_engine = conv(x, w, groups=groups)
    assert y_engine.shape == y_loop.shape == (2, C, HW - K + 1, HW - K + 1)
    np.testing.assert_allclose(y_engine, y_loop, rtol=1e-12, atol=1e-12)
    print(f"groups={groups}: F.conv2d matches the loop, {macs:,} multiply-adds")

# %% [markdown]
# ## A grouped convolution is a dense convolution with a block-diagonal weight
#
# Place each group's weight slice on the diagonal of a dense `(C_out, C_in, kH, kW)` weight and
# fill the rest with zeros: a dense convolution with that weight computes exactly the grouped
# convolution. Off the diagonal blocks the weights are zero, so a fraction `1 - 1/G` of the
# dense weight is never used; grouping is a *structural* sparsity that the kernel skips.


# %%
def block_diagonal(w: np.ndarray, groups: int) -> np.ndarray:
    """The dense weight (C_out, C_in, kH, kW) equivalent to grouped weight `w`."""
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    dense = np.zeros((c_out, cg * groups, kh, kw))
    for g in range(groups):
        dense[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og]
    return dense


C_DRAW = 16
drawn = {}
for groups in (1, 2, 4, 16):
    w = rng.standard_normal((C_DRAW, C_DRAW // groups, K, K))
    dense = block_diagonal(w, groups)
    x16 = rng.standard_normal((1, C_DRAW, 7, 7))
    np.testing.assert_allclose(conv(x16, dense, groups=1), conv(x16, w, groups=groups),
                               rtol=1e-12, atol=1e-12)
    zero_fraction = np.mean(dense == 0)
    assert np.isclose(zero_fraction, 1 - 1 / groups)
    drawn[groups] = dense
    print(f"groups={groups:2d}: dense equivalent is {zero_fraction:.0%} zeros")

# %% [markdown]
# The figure draws the centre tap `w[:, :, 1, 1]` of each dense equivalent: rows are output
# channels, columns input channels, white is a weight that is structurally zero.
#
# ![block-diagonal weights](figures/01_block_diagonal.png)

# %%
fig = Figure(figsize=(14, 4.2), layout="constrained")
axes = fig.subplots(1, len(drawn), sharey=True)
for ax, (groups, dense) in zip(axes, drawn.items()):
    centre = np.ma.masked_equal(dense[:, :, 1, 1], 0.0)
    image = ax.imshow(centre, cmap="coolwarm", vmin=-2.5, vmax=2.5,
                      extent=(-0.5, C_DRAW - 0.5, C_DRAW - 0.5, -0.5))
    label = {1: "dense", C_DRAW: "depthwise"}.get(groups, f"{C_DRAW // groups} channels/group")
    ax.set_title(f"G = {groups} ({label})\n{C_DRAW * C_DRAW // groups} of {C_DRAW**2} weights used",
                 fontsize=10)
    ax.set_xlabel("input channel")
    ax.set_xticks(range(0, C_DRAW, 4))
    ax.set_yticks(range(0, C_DRAW, 4))
axes[0].set_ylabel("output channel")
fig.colorbar(image, ax=axes, label="weight value (centre tap); white = zero", shrink=0.9)
save(fig, "01_block_diagonal.png")

# %% [markdown]
# ## Parameters and multiply-adds as functions of G
#
# Each output channel holds `C_in/G * kH * kW` weights and computes that many multiply-adds
# per output pixel, so for a layer producing an `H_out x W_out` map
#
#     params(G) = C_out * C_in/G * kH * kW
#     MACs(G)   = params(G) * H_out * W_out          (per image)
#
# both fall as `1/G`. The loop's own count and the layer `nn.Conv2d` agree with the formula:

# %%
def conv_params(c_in: int, c_out: int, k: int, groups: int) -> int:
    return c_out * (c_in // groups) * k * k


for groups in (1, 2, 4, 8):
    w = rng.standard_normal((C, C // groups, K, K))
    _, macs = conv2d_loop(x, w, groups)
    out_pixels = x.shape[0] * (HW - K + 1) ** 2
    assert macs == conv_params(C, C, K, groups) * out_pixels
    layer = nn.Conv2d(C, C, K, groups=groups, bias=False)
    assert sum(p.numel() for p in layer.parameters()) == conv_params(C, C, K, groups)
print("multiply-adds and parameters follow params(G) = C_out * C_in/G * k * k")

# %% [markdown]
# What grouping does *not* shrink is the data the layer reads and writes: the input and output
# feature maps are the same size for every `G`. So the work done per byte moved — the
# **arithmetic intensity**, FLOP (2 per multiply-add) over the minimum bytes (input read once,
# output written once, weights read once) — falls with `G` too. Take the 3x3 convolution of
# ResNeXt-50's first stage: 128 channels on a 56 x 56 map, float32, one image.

# %%
C1, HW1 = 128, 56
group_counts = [g for g in range(1, C1 + 1) if C1 % g == 0]


def intensity(c: int, hw: int, k: int, groups: int, itemsize: int = 4) -> float:
    flops = 2 * conv_params(c, c, k, groups) * hw * hw
    moved = (2 * c * hw * hw + conv_params(c, c, k, groups)) * itemsize
    return flops / moved


params = np.array([conv_params(C1, C1, 3, g) for g in group_counts])
gmacs = params * HW1 * HW1 / 1e9
flop_per_byte = np.array([intensity(C1, HW1, 3, g) for g in group_counts])
for g, p, m, ai in zip(group_counts, params, gmacs, flop_per_byte):
    print(f"G={g:4d}: {p:8,d} params, {m:6.3f} GMAC, {ai:6.1f} FLOP/byte")
# ResNeXt-50's 32x4d: about 9 FLOP per byte, against over 200 for the dense layer
assert round(intensity(C1, HW1, 3, 32)) == 9 and intensity(C1, HW1, 3, 1) > 200
assert np.allclose(params * np.array(group_counts), params[0])  # exactly 1/G

# %% [markdown]
# ![cost against groups](figures/01_cost_vs_groups.png)
#
# A processor's *machine balance* is the number of FLOP it can do in the time it moves one
# byte from memory; for today's CPUs and GPUs it is of the order of ten (tutorial 4 measures
# this machine's). A layer far above its balance, like the dense one, is limited by
# arithmetic; a layer near or below it, like ResNeXt's grouped one, by memory traffic. That
# is why kernels for grouped convolution are written differently (tutorial 4).

# %%
fig = Figure(figsize=(13, 4), layout="constrained")
ax_p, ax_m, ax_i = fig.subplots(1, 3)
for ax, values, ylabel in ((ax_p, params / 1e3, "parameters (thousands)"),
                           (ax_m, gmacs * 1e3, "multiply-adds per image (millions)"),
                           (ax_i, flop_per_byte, "arithmetic intensity (FLOP/byte)")):
    ax.loglog(group_counts, values, "o-")
    ax.set_xticks(group_counts, labels=[str(g) for g in group_counts])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("groups G (cardinality)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    for g, name in ((1, "dense"), (32, "ResNeXt 32x4d"), (C1, "depthwise")):
        k = group_counts.index(g)
        ax.annotate(name, (g, values[k]), textcoords="offset points", xytext=(5, 5), fontsize=9)
fig.suptitle("One 3x3 convolution, 128 -> 128 channels on a 56x56 map (ResNeXt-50 stage 1), "
             "as a function of the number of groups")
save(fig, "01_cost_vs_groups.png")

# %% [markdown]
# ## The two extremes: dense and depthwise
#
# `G = 1` is the dense convolution: every output channel depends on every input channel.
# `G = C` is the **depthwise** convolution (MobileNet, Xception): each output channel depends on
# exactly one input channel, and the layer is `C` independent 2-D filters. Everything between
# is a grouped convolution, and ResNeXt-50 sits at 32 groups of 4 channels.
#
# The dependence structure can be read off by perturbing a single input channel and watching
# which output channels change: exactly the channels of that input's group.

# %%
def outputs_touched(groups: int, channel: int) -> list[int]:
    w = rng.standard_normal((C, C // groups, K, K))
    x0 = rng.standard_normal((1, C, HW, HW))
    x1 = x0.copy()
    x1[:, channel] += 1.0
    changed = np.abs(conv(x1, w, groups=groups) - conv(x0, w, groups=groups)).max(axis=(0, 2, 3))
    return [int(o) for o in np.flatnonzero(changed > 1e-12)]


for groups in (1, 2, 4, C):
    touched = outputs_touched(groups, channel=5)
    cg = C // groups
    group = 5 // cg
    assert touched == list(range(group * cg, (group + 1) * cg))
    print(f"groups={groups}: changing input channel 5 changes output channels {touched}")
assert outputs_touched(C, channel=5) == [5]  # depthwise: channel 5 only feeds channel 5

# %% [markdown]
# A depthwise convolution is therefore the same as filtering each channel on its own with a
# 2-D correlation. With NumPy's sliding windows:

# %%
w_dw = rng.standard_normal((C, 1, K, K))
windows = np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(2, 3))  # (N, C, oh, ow, K, K)
per_channel = np.einsum("ncijpq,cpq->ncij", windows, w_dw[:, 0])
np.testing.assert_allclose(conv(x, w_dw, groups=C), per_channel, rtol=1e-12, atol=1e-12)
print("depthwise convolution == one 2-D filter per channel")

# %% [markdown]
# ## Summary
#
# * A grouped convolution is `G` independent convolutions over consecutive channel slices;
#   its weight has shape `(C_out, C_in/G, kH, kW)`.
# * It equals a dense convolution whose weight is block-diagonal with `G` blocks.
# * Parameters and multiply-adds scale as `1/G`; the feature maps do not shrink, so the
#   arithmetic intensity falls: with large `G` memory traffic, not arithmetic, sets the pace.
# * `G = 1` is dense, `G = C` is depthwise; ResNeXt's cardinality lives in between.
#
# Next, [tutorial 2](02_aggregated_transformations.md) shows why a grouped 3x3 convolution
# inside a bottleneck is the same thing as a sum of `C` small parallel networks.
