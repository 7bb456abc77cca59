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
# functions of `G`, shows what ResNeXt does with the savings, and looks at the two extremes:
# `G = 1` (dense) and `G = C` (depthwise). Every claim is checked by an `assert`, so running
# this file is a test of the claims.
#
# * **You will learn:** what a grouped convolution computes, why it is a block-diagonal dense
#   one, what it costs as a function of `G`, and why ResNeXt spends the savings on width.
# * **Prerequisites:** NumPy, and what a 2-D convolution computes.
# * **Runtime:** about 15 s on 2 CPU cores (the pure-Python loop is most of it).

# %%
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

import minitorch_resnext as mr
from minitorch_resnext import functional as F
from minitorch_resnext import models, nn
from minitorch_resnext.figures import FigureWriter

figures = FigureWriter("01_grouped_convolution.py")  # PNGs to tutorials/figures, shown inline
rng = np.random.default_rng(0)


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
figures.save(fig, "01_block_diagonal.png")

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
# Parameters and multiply-adds are one curve (the multiply-adds are the parameters times the
# 3,136 output pixels), drawn once with an axis for each. Beside it, the intensity.

# %%
fig = Figure(figsize=(11, 4), layout="constrained")
ax_p, ax_i = fig.subplots(1, 2)
pixels = HW1 * HW1
for ax, values, ylabel in ((ax_p, params / 1e3, "parameters (thousands)"),
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
macs_axis = ax_p.secondary_yaxis("right", functions=(lambda p: p * pixels / 1e3,
                                                     lambda m: m * 1e3 / pixels))
macs_axis.set_ylabel("multiply-adds per image (millions)")
macs_axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
fig.suptitle("One 3x3 convolution, 128 -> 128 channels on a 56x56 map (ResNeXt-50 stage 1), "
             "at a fixed width, as a function of the number of groups")
figures.save(fig, "01_cost_vs_groups.png")

# %% [markdown]
# A processor's *machine balance* is the number of FLOP it can do in the time it moves one
# byte from memory; for today's CPUs and GPUs it is of the order of ten (tutorial 4 measures
# this machine's). A layer far above its balance, like the dense one, is limited by
# arithmetic; a layer near or below it, like ResNeXt's grouped one, by memory traffic. That
# is why kernels for grouped convolution are written differently (tutorial 4).
#
# ## What ResNeXt does with the savings: width at the same cost
#
# Read alone, the curves above suggest that more groups make a cheaper network. That is not
# what ResNeXt does. It keeps each block's cost at ResNet's and spends what grouping saves on
# **width**: more, narrower paths. The conv2 block of ResNet-50 is a 1x1 `256 -> 64`, a 3x3
# `64 -> 64` and a 1x1 `64 -> 256`: 69,632 weights. A ResNeXt block with `C` paths of width
# `d` has a 1x1 `256 -> C*d`, a 3x3 with `C` groups of `d` channels and a 1x1 `C*d -> 256`:
#
#     params(C, d) = 256*C*d + C*d*d*9 + C*d*256 = C*d * (512 + 9*d)
#
# For each `C`, take the width `d` whose block comes nearest to ResNet's 69,632 (counted on
# blocks built by `models`):

# %%
def block_params(c: int, d: int) -> int:
    return c * d * (512 + 9 * d)


BUDGET = models.block_conv_params(1, 64)  # ResNet-50's conv2 block: C = 1, d = 64
ladder = {}
for c in (1, 2, 4, 8, 16, 32, 64):
    d = min(range(1, 65), key=lambda d: abs(block_params(c, d) - BUDGET))
    ladder[c] = d
    n = models.block_conv_params(c, d)  # the builder's block agrees with the formula
    assert n == block_params(c, d)
    print(f"C={c:3d}: d={d:3d}, width C*d = {c * d:4d}, {n:7,d} parameters ({n / BUDGET - 1:+.1%})")
# the paper's Table 2 is these rows at C = 1, 2, 4, 8, 32 ...
assert [ladder[c] for c in (1, 2, 4, 8, 32)] == [64, 40, 24, 14, 4]
# ... and leaves out C = 16, where no width comes within 7 % of the budget
assert abs(block_params(16, ladder[16]) / BUDGET - 1) > 0.07
widths = [c * d for c, d in ladder.items()]
assert widths == sorted(widths) and max(widths) <= BUDGET / 512

# %% [markdown]
# The width grows from 64 to 128 channels while the block keeps ResNet's cost, and it cannot
# grow past `69,632 / 512 = 136`: the two 1x1 convolutions cost `512*C*d` whatever the groups,
# and grouping shrinks only the 3x3. The figure puts the two views side by side: the one most
# people remember (left, the width held fixed) and the one the paper uses (right, the cost
# held fixed).

# %%
fig = Figure(figsize=(11, 4.2), layout="constrained")
ax_cost, ax_width = fig.subplots(1, 2)
cs = list(ladder)
fixed = [models.block_conv_params(g, 128 // g) for g in cs]  # width 128 in every block
ax_cost.plot(cs, np.array(fixed) / 1e3, "o-", color="tab:red")
ax_cost.axhline(BUDGET / 1e3, color="gray", linestyle=":", label="ResNet-50's conv2 block")
ax_cost.set_ylim(0, 230)
ax_cost.set_ylabel("parameters of the block (thousands)")
ax_cost.set_title("Width fixed at 128: more groups, fewer parameters", fontsize=10)
ax_cost.legend(fontsize=9)
ax_width.plot(cs, widths, "o-", color="tab:blue")
ax_width.axhline(BUDGET / 512, color="gray", linestyle=":",
                 label="limit 136: the 1x1 layers alone cost 512 C·d")
for c, d in ladder.items():
    off = block_params(c, d) / BUDGET - 1
    ax_width.annotate(f"{c}x{d}d" + (f"\n({off:+.0%})" if abs(off) > 0.03 else ""), (c, c * d),
                      textcoords="offset points", xytext=(0, -24 if c == 16 else 7),
                      ha="center", fontsize=8)
ax_width.set_ylim(40, 150)
ax_width.set_ylabel("width C·d of the grouped 3x3 (channels)")
ax_width.set_title("Parameters fixed at ResNet's ~70k: more groups, more width", fontsize=10)
ax_width.legend(fontsize=9, loc="lower right")
for ax in (ax_cost, ax_width):
    ax.set_xscale("log", base=2)
    ax.set_xticks(cs, labels=[str(c) for c in cs])
    ax.set_xlabel("cardinality C (groups of the 3x3)")
    ax.grid(True, which="both", alpha=0.3)
fig.suptitle("The conv2 block of ResNeXt-50 (256 -> C·d -> 256): what grouping saves, "
             "ResNeXt spends on width")
figures.save(fig, "01_iso_complexity.png")

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
# * ResNeXt does not pocket the savings: at a block's fixed cost, more groups buy more width.
# * `G = 1` is dense, `G = C` is depthwise; ResNeXt's cardinality lives in between.
#
# ## Exercises
#
# Fill in the stubs in `tutorials/exercises/t1_grouped_convolution.py` and check them with
# `pytest tests/exercises -k "t1 and yours"` (an exercise not yet written is skipped; the
# reference solutions are in `tutorials/exercises/solutions/`).
#
# 1. `grouped_conv2d`: a grouped convolution built from `G` dense ones on channel slices.
# 2. `block_diagonal`: the dense weight that computes the same function as a grouped one.
# 3. `conv_cost`: parameters and multiply-adds of a grouped `k x k` convolution.
# 4. `separable_params`, `groups_as_cheap_as_separable`: a depthwise-separable convolution
#    (depthwise `k x k`, then a dense 1x1) against a grouped one at the same width: how many
#    groups make the grouped one as cheap?
#
# Next, [tutorial 2](02_aggregated_transformations.md) shows why a grouped 3x3 convolution
# inside a bottleneck is the same thing as a sum of `C` small parallel networks.
