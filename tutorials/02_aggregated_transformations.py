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
# # 2. Aggregated transformations
#
# Inception modules split their input, transform each piece, and merge the results
# (*split-transform-merge*). ResNeXt keeps that idea but makes every piece the same: a block
# computes
#
#     y = x + sum over i = 1..C of T_i(x)
#
# where each of the `C` transformations `T_i` is a small bottleneck 1x1 (256 -> d), 3x3
# (d -> d), 1x1 (d -> 256). `C` is the **cardinality**, `d` the width of each path. The paper
# (Figure 3) writes this block in three equivalent forms:
#
# * **(a) split**: `C` separate paths, their outputs summed;
# * **(b) concatenate**: the paths up to their 3x3, concatenated, then one 1x1 `C*d -> 256`;
# * **(c) grouped**: one 1x1 `256 -> C*d`, one 3x3 **grouped** convolution with `C` groups,
#   one 1x1 `C*d -> 256` — the form everyone implements, because it is three layers instead
#   of `3C`.
#
# `mr.models` builds all three (`SplitBottleneck`, `ConcatBottleneck`, `Bottleneck`) and
# converts weights between them (`convert_block`). This tutorial draws the paper's block
# diagrams from those modules, proves numerically that the three forms compute the same
# function, shows where batch normalization may and may not go, and shows why the idea needs
# blocks of depth three or more.
#
# * **You will learn:** the ResNeXt block in its three forms, how weights map between them,
#   why the last batch normalization must follow the sum, and why cardinality needs depth 3.
# * **Prerequisites:** [tutorial 1](01_grouped_convolution.md); batch normalization.
# * **Runtime:** about 30 s on 2 CPU cores (20 s with `MINITORCH_FAST=1`).

# %%
import os

import numpy as np
from matplotlib.figure import Figure

import minitorch_resnext as mr
from minitorch_resnext import functional as F
from minitorch_resnext import models, nn
from minitorch_resnext.diagrams import draw_blocks
from minitorch_resnext.figures import FigureWriter
from minitorch_resnext.models.summary import summarize

FAST = os.environ.get("MINITORCH_FAST") == "1"
figures = FigureWriter("02_aggregated_transformations.py", drawn_with=["minitorch_resnext.diagrams"])
rng = np.random.default_rng(0)
mr.manual_seed(0)


def rel_diff(a: mr.Tensor, b: mr.Tensor) -> float:
    """max |a - b| / max |b|."""
    a, b = a.numpy(), b.numpy()
    return float(np.abs(a - b).max() / np.abs(b).max())


# %% [markdown]
# ## The block, drawn from the model
#
# The paper's Figure 1 sets a ResNet bottleneck beside a ResNeXt block of cardinality 32. Here
# both are drawn by `minitorch_resnext.diagrams`, which reads every box ("in, kernel, out") off
# the `Conv2d` layers of the modules it is given, so the drawing cannot disagree with the model.
# Batch normalization and ReLU follow every convolution and are left out, as in the paper.

# %%
resnet_block = models.Bottleneck(256, 64)                                       # 1 path of 64
resnext_block = models.SplitBottleneck(256, 64, groups=32, base_width=4)        # 32 paths of 4
fig = draw_blocks([("ResNet bottleneck", resnet_block),
                   ("ResNeXt block, cardinality 32", resnext_block)],
                  "Figure 1, drawn from models.Bottleneck and models.SplitBottleneck")
figures.save(fig, "02_figure1_blocks.png")
n_resnet = sum(m.weight.numel() for m in resnet_block.modules() if isinstance(m, nn.Conv2d))
n_resnext = sum(m.weight.numel() for m in resnext_block.modules() if isinstance(m, nn.Conv2d))
print(f"convolution weights: ResNet block {n_resnet:,}, ResNeXt block {n_resnext:,}")
assert abs(n_resnext / n_resnet - 1) < 0.01  # ~70k each: the same complexity

# %% [markdown]
# <div class="admonition warning" markdown>
# <p class="admonition-title">Common misconceptions</p>
#
# Study notes on ResNeXt often say that its grouped convolution splits the input, that the
# paths are merged by concatenation, and that ResNeXt is cheaper than ResNet. None of the three
# is what the paper does:
#
# * **The split is done by 1x1 projections.** Each path's first 1x1 convolution reads *all*
#   256 input channels and projects them to its own `d` channels; the grouped 3x3 only keeps
#   the paths apart afterwards.
# * **The merge is a sum.** Form (a) adds the paths' outputs. Form (b) concatenates, but the
#   1x1 after the concatenation adds up its column blocks, one per path: a sum again.
# * **The complexity is matched, not lowered.** ResNeXt-50 (32x4d) has 25.0 M parameters and
#   4.2 G multiply-adds, ResNet-50 25.5 M and 4.1 G (the paper's Table 1). What grouping saves,
#   ResNeXt spends on width (tutorial 1).
#
# </div>
#
# The first claim is in the figure above (every path starts with a `256, 1x1, 4` box), the
# second is checked below with the three forms, and the third is counted here on the two
# whole networks, without running them:

# %%
whole = {"ResNet-50": summarize(models.resnet50()),
         "ResNeXt-50 (32x4d)": summarize(models.resnext50_32x4d())}
for name, summary in whole.items():
    print(f"{name:19s} {summary.params:,} parameters, {summary.macs / 1e9:.3f} G multiply-adds "
          f"at 224x224")
resnet, resnext = whole.values()
assert abs(resnext.params / resnet.params - 1) < 0.03 and abs(resnext.macs / resnet.macs - 1) < 0.04

# %% [markdown]
# ## Three forms, one function
#
# The conv2 block of ResNeXt-50 (32x4d): 256 input and output channels, `C = 32` paths of
# `d = 4` channels (8 paths with `MINITORCH_FAST=1`, to save time). We build it in the grouped
# form (c) and give every batch-norm layer random scales, shifts and running statistics, so
# that the comparison below is not helped by identity-initialised BN. Everything runs in
# float64 so "equal" can mean equal to ~1e-12.

# %%
C, D = (8 if FAST else 32), 4
grouped = models.Bottleneck(256, 64, groups=C, base_width=D).to(mr.float64)
state = grouped.state_dict()
for key, value in state.items():
    if key.endswith(("bn1.weight", "bn2.weight", "bn3.weight")):
        state[key] = rng.uniform(0.5, 1.5, value.shape)
    elif key.endswith(("bias", "running_mean")):
        state[key] = rng.normal(0.0, 0.1, value.shape)
    elif key.endswith("running_var"):
        state[key] = rng.uniform(0.5, 2.0, value.shape)
grouped.load_state_dict(state)

split = models.convert_block(grouped, "split")      # Figure 3(a)
concat = models.convert_block(grouped, "concat")    # Figure 3(b)
forms = {"(a) split": split, "(b) concatenate": concat, "(c) grouped": grouped}
n_params = {}
for name, block in forms.items():
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    n_params[name] = sum(p.numel() for p in block.parameters())
    print(f"{name:16s} {len(convs):3d} convolutions, {n_params[name]:,} parameters")
assert len(set(n_params.values())) == 1, n_params  # the same parameters, arranged differently

# %% [markdown]
# The paper's Figure 3, drawn from these three blocks:

# %%
fig = draw_blocks(list(forms.items()),
                  f"Figure 3, drawn from the three blocks above (C = {C} paths of d = {D})")
figures.save(fig, "02_figure3_forms.png")

# %% [markdown]
# The conversion only cuts and stacks arrays. Path `i` of form (a) owns
#
# * rows `i*d .. (i+1)*d` of the first 1x1 weight (its `d` output channels),
# * group `i` of the grouped 3x3 weight, which *is* a dense `d -> d` 3x3 convolution,
# * columns `i*d .. (i+1)*d` of the last 1x1 weight (its share of the sum),
#
# and the matching slices of the per-channel BN parameters after the first two convolutions.

# %%
i = 3
path = split.paths[i]
w1, w2, w3 = (grouped.conv1.weight.numpy(), grouped.conv2.weight.numpy(),
              grouped.conv3.weight.numpy())
assert np.array_equal(path[0].weight.numpy(), w1[i * D:(i + 1) * D])     # 1x1: 256 -> d
assert np.array_equal(path[3].weight.numpy(), w2[i * D:(i + 1) * D])     # 3x3: d -> d
assert np.array_equal(path[6].weight.numpy(), w3[:, i * D:(i + 1) * D])  # 1x1: d -> 256
assert np.array_equal(path[1].running_mean.numpy(), grouped.bn1.running_mean.numpy()[i * D:(i + 1) * D])
print(f"path {i}: weights are slices of the grouped block's weights")

# %% [markdown]
# Now the claim itself: on the same input the three blocks give the same output and the same
# gradient with respect to the input, in evaluation mode (BN uses its running statistics) and
# in training mode (BN uses the batch's statistics).

# %%
hw = 6 if FAST else 14
x_np = rng.standard_normal((4, 256, hw, hw))
for training in (False, True):
    outputs, grads = {}, {}
    for name, block in forms.items():
        block.train(training)
        x = mr.tensor(x_np, requires_grad=True)
        out = block(x)
        out.sum().backward()
        outputs[name], grads[name] = out, x.grad
    for name in ("(a) split", "(b) concatenate"):
        err_y = rel_diff(outputs[name], outputs["(c) grouped"])
        err_g = rel_diff(grads[name], grads["(c) grouped"])
        assert err_y < 1e-10 and err_g < 1e-10, (name, training, err_y, err_g)
        print(f"{'train' if training else 'eval ':5s} {name:16s} vs (c): output {err_y:.1e}, "
              f"input gradient {err_g:.1e}")

# %% [markdown]
# ## Where batch normalization may go
#
# The blocks above normalise after every convolution, with the last BN **after** the sum of
# the paths (the paper's footnote 6). BN after the first two convolutions acts on each channel
# separately, and each of those channels belongs to exactly one path, so splitting the block
# into paths splits these BN layers exactly. The last BN is different: each of its channels
# receives a contribution from *every* path.
#
# Suppose instead each path of form (a) ends with its own BN, before the sum. In training mode
# BN divides by the batch's standard deviation, and the standard deviation of a sum is not the
# sum of the standard deviations: this block is a different function, and no conversion of
# weights turns it into form (c).


# %%
def path_sum(paths: nn.ModuleList, x: mr.Tensor, bns: list | None = None) -> mr.Tensor:
    """Sum over paths of path(x), each followed by its own BN when `bns` is given."""
    out = None
    for i, path in enumerate(paths):
        t = path(x) if bns is None else bns[i](path(x))
        out = t if out is None else out + t
    return out


class PerPathBN(nn.Module):
    """Form (a) with a BN at the end of every path and none after the sum."""

    def __init__(self, split_block: models.SplitBottleneck) -> None:
        super().__init__()
        self.paths = split_block.paths
        width = split_block.out_planes
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in split_block.paths)
        self.bns.to(mr.float64)

    def forward(self, x: mr.Tensor) -> mr.Tensor:
        return F.relu(path_sum(self.paths, x, list(self.bns)) + x)


fresh = models.convert_block(models.Bottleneck(256, 64, groups=C, base_width=D).to(mr.float64),
                             "split")                      # BN: scale 1, shift 0
per_path = PerPathBN(fresh)                                # shares fresh's paths
x = mr.tensor(x_np)
err = rel_diff(per_path(x), fresh(x))
print(f"train mode, BN per path vs BN after the sum: relative difference {err:.2f}")
assert err > 0.1

# %% [markdown]
# The sizes tell why. After the shared BN every output channel has unit variance over the
# batch. After `C` per-path BNs each path contributes unit variance, and the paths are nearly
# uncorrelated, so their sum has a variance close to `C`:

# %%
with mr.no_grad():
    shared = fresh.bn3(path_sum(fresh.paths, x)).numpy()
    summed = path_sum(per_path.paths, x, list(per_path.bns)).numpy()
var_shared = shared.var(axis=(0, 2, 3)).mean()
var_summed = summed.var(axis=(0, 2, 3)).mean()
print(f"mean per-channel variance: BN after the sum {var_shared:.2f}, "
      f"BN per path then sum {var_summed:.2f} (C = {C})")
assert abs(var_shared - 1) < 1e-3 and C / 2 < var_summed < 2 * C

# %% [markdown]
# In evaluation mode BN is a fixed per-channel affine map `a * t + b`, and then the per-path
# form *can* be matched: scale column block `i` of the last 1x1 weight by path `i`'s `a`, and
# let the final BN add the sum of the `b`s. The obstacle is only the batch statistics of
# training.

# %%
for _ in range(3):  # training steps give the BNs running statistics
    per_path(mr.tensor(rng.standard_normal(x_np.shape)))
per_path.eval()

folded = models.convert_block(fresh, "grouped")  # the paths' weights and BN statistics
state = folded.state_dict()
w3, shift = state["conv3.weight"], np.zeros(256)
for i, bn in enumerate(per_path.bns):
    scale = bn.weight.numpy() / np.sqrt(bn.running_var.numpy() + bn.eps)
    w3[:, i * D:(i + 1) * D] *= scale[:, None, None, None]
    shift += bn.bias.numpy() - scale * bn.running_mean.numpy()
state.update({"conv3.weight": w3, "bn3.weight": np.ones(256), "bn3.bias": shift,
              "bn3.running_mean": np.zeros(256),
              "bn3.running_var": np.full(256, 1 - folded.bn3.eps)})  # bn3(t) = t + shift
folded.load_state_dict(state)
folded.eval()
err = rel_diff(folded(x), per_path(x))
print(f"eval mode, per-path BN folded into the grouped block: relative difference {err:.1e}")
assert err < 1e-10

# %% [markdown]
# ## Why the block needs depth three
#
# Take a block of depth two instead: each path is a 3x3 convolution `in -> d`, a ReLU and a
# 3x3 convolution `d -> out`, and the paths are summed. Stack the first layers of all paths:
# each of them sees *all* input channels, so together they are one dense convolution
# `in -> C*d`. The ReLU acts channel by channel. And a sum over paths of the second layers is
# one dense convolution `C*d -> out` whose input channels are the concatenated paths. The
# aggregated block is exactly a **wide dense block** of width `C*d` (the paper's Figure 4):
# cardinality adds nothing.

# %%
C2, D2, WIDTH = 8, 4, 64


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False).to(mr.float64)


# C paths of depth 2, summed, and a wide block of width C*d holding the same weights
paths = nn.ModuleList(nn.Sequential(conv3x3(WIDTH, D2), nn.ReLU(), conv3x3(D2, WIDTH))
                      for _ in range(C2))
wide = nn.Sequential(conv3x3(WIDTH, C2 * D2), nn.ReLU(), conv3x3(C2 * D2, WIDTH))
W1_wide = np.concatenate([p[0].weight.numpy() for p in paths], axis=0)  # stacked outputs
W2_wide = np.concatenate([p[2].weight.numpy() for p in paths], axis=1)  # stacked inputs
wide.load_state_dict({"0.weight": W1_wide, "2.weight": W2_wide})

x2 = mr.tensor(rng.standard_normal((2, WIDTH, 8, 8)))
aggregated = paths[0](x2)
for path in list(paths)[1:]:
    aggregated = aggregated + path(x2)
err = rel_diff(aggregated, wide(x2))
print(f"depth 2: {C2} paths of width {D2} vs one dense block of width {C2 * D2}: {err:.1e}")
assert err < 1e-12
assert np.all(W1_wide != 0) and np.all(W2_wide != 0)  # no structure left: a plain wide block

# %% [markdown]
# The paper's Figure 4, drawn from these two modules (with a residual connection around each,
# as in the paper):

# %%
fig = draw_blocks([(f"depth 2: {C2} paths of d = {D2}, summed", paths),
                   ("the same function: one wide block", wide)],
                  "Figure 4, drawn from the modules above (the paper draws 32 paths of 4)")
figures.save(fig, "02_figure4_depth2.png")

# %% [markdown]
# With depth three the middle layer connects a path to itself only. Written as one wide
# block, its weight is block-diagonal — `C` blocks of `d x d` — so a fraction `1 - 1/C` of the
# dense middle layer is missing, and the block is a genuinely different family of functions
# from a wide dense bottleneck. That restriction is what cardinality is, and it needs a layer
# whose input and output both lie inside one path: a third layer. The figure writes both
# blocks as one wide block and draws their weights:

# %%
small = models.Bottleneck(64, 16, groups=C2, base_width=16)  # 64 -> 8 paths of 4 -> 64
middle = small.conv2.weight.numpy()                           # (C*d, d, 3, 3)
middle_wide = np.zeros((C2 * D2, C2 * D2, 3, 3))
for g in range(C2):
    middle_wide[g * D2:(g + 1) * D2, g * D2:(g + 1) * D2] = middle[g * D2:(g + 1) * D2]
assert middle.shape == (C2 * D2, D2, 3, 3)
assert np.isclose(np.mean(middle_wide == 0), 1 - 1 / C2)
print(f"depth 3: the wide form of the middle layer is {np.mean(middle_wide == 0):.1%} zeros")

rows = [
    ("depth 3 (ResNeXt)", [("1x1, in -> C·d", small.conv1.weight.numpy()[:, :, 0, 0]),
                           ("3x3 grouped, C·d -> C·d", middle_wide[:, :, 1, 1]),
                           ("1x1, C·d -> out", small.conv3.weight.numpy()[:, :, 0, 0])]),
    ("depth 2 (Figure 4)", [("3x3, in -> C·d", W1_wide[:, :, 1, 1]),
                            None,
                            ("3x3, C·d -> out", W2_wide[:, :, 1, 1])]),
]
fig = Figure(figsize=(12, 7.5), layout="constrained")
grid = fig.subplots(2, 3)
for (row_name, layers), axes in zip(rows, grid):
    for ax, layer in zip(axes, layers):
        if layer is None:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no middle layer:\nnothing to group", ha="center", va="center",
                    fontsize=12, transform=ax.transAxes)
            continue
        title, weight = layer
        shown = np.ma.masked_equal(np.abs(weight) / np.abs(weight).max(), 0.0)
        image = ax.imshow(shown, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{row_name}\n{title}  ({weight.shape[0]} x {weight.shape[1]})", fontsize=10)
        ax.set_xlabel("input channel")
        ax.set_ylabel("output channel")
fig.colorbar(image, ax=grid, label="|weight| / largest |weight| of the layer (centre tap)",
             shrink=0.6)
fig.suptitle(f"Each block written as one wide block (C = {C2} paths of d = {D2}); "
             "white = structurally zero")
figures.save(fig, "02_depth3_vs_depth2.png")

# %% [markdown]
# ## Summary
#
# * The three forms of Figure 3 hold the same weights, cut differently, and compute the same
#   function — outputs and gradients agree to rounding error, in training and in evaluation.
# * This needs the last BN after the sum. BN per path is a different function in training
#   mode (batch statistics of parts are not those of the whole); in evaluation mode it folds
#   back into the grouped form.
# * With two layers the aggregated block is one wide dense block; cardinality restricts
#   only a middle layer, so it needs depth at least three.
#
# ## Exercises
#
# Fill in the stubs in `tutorials/exercises/t2_aggregated_transformations.py` and check them
# with `pytest tests/exercises -k "t2 and yours"` (solutions in `tutorials/exercises/solutions/`).
#
# 1. `concat_state`: `convert_block(block, "concat")` written by hand, on the state dict.
# 2. `split_last_conv`: the merge is a sum; cut the last 1x1 into one weight per path.
# 3. `bn_affine`: batch normalization in evaluation mode as a per-channel scale and shift, the
#    step that folds per-path BN into the grouped block above.
# 4. `wide_weights`: the wide block equivalent to a depth-2 aggregated block (Figure 4).
#
# [Tutorial 3](03_cardinality_vs_width.md) asks what to do with the parameters grouping
# saves: spend them on width, at preserved complexity.
