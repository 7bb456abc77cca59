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
# # 3. Cardinality vs width at preserved complexity
#
# Grouping the 3x3 convolution saves parameters and multiply-adds (tutorial 1). ResNeXt spends
# the savings on width: as the cardinality `C` grows, the width `d` of each path shrinks less
# than `1/C`, so the total width `C*d` of the grouped layer grows while the block's cost stays
# the same. The paper's Table 2 lists five such blocks, and Table 3 shows that on ImageNet the
# error falls as `C` rises. This tutorial recomputes Table 2 from the model builder, checks that
# whole ResNeXt-50s built this way really cost the same (the paper's Table 1), times the five
# blocks on this machine, and runs a small experiment that can show Table 3's trend, or fail to.

# %%
import os
import time

import numpy as np
from matplotlib.figure import Figure

import minitorch_resnext as mr
from minitorch_resnext import models
from minitorch_resnext.data import cluttered
from minitorch_resnext.experiments import cardinality
from minitorch_resnext.figures import FigureWriter
from minitorch_resnext.models import summary
from minitorch_resnext.models.summary import shape_and_macs

FAST = os.environ.get("MINITORCH_FAST") == "1"
save = FigureWriter("03_cardinality_vs_width.py").save  # PNGs to tutorials/figures, shown inline
mr.manual_seed(0)


# %% [markdown]
# ## Table 2, recomputed
#
# A conv2 block of ResNeXt-50 maps 256 channels to 256: a 1x1 convolution `256 -> C*d`, a 3x3
# convolution with `C` groups of `d` channels, and a 1x1 `C*d -> 256`. Its convolution
# parameters are
#
#     256*C*d  +  C * d*d*9  +  C*d*256  =  C*d * (512 + 9*d)
#
# (the paper's equation 4). `models.block_conv_params(C, d)` builds that block with the
# project's builder and counts the weights of its convolutions. The paper's Table 2 lists
# five such blocks by `C`, `d` and width, and gives each one's parameters as "~70k"; the
# exact integers are equation 4's:

# %%
VARIANTS = [(1, 64), (2, 40), (4, 24), (8, 14), (32, 4)]  # Table 2's C x d, "~70k" each
print(f"{'C x d':>7} {'width C*d':>10} {'builder':>8} {'equation 4':>11} {'Table 2':>8}")
for c, d in VARIANTS:
    counted = models.block_conv_params(c, d)
    assert counted == c * d * (512 + 9 * d), (c, d, counted)
    assert abs(counted / 70_000 - 1) < 0.03
    print(f"{c:>3}x{d:<3} {c * d:>10} {counted:>8,} {c * d * (512 + 9 * d):>11,} {'~70k':>8}")
assert [c * d for c, d in VARIANTS] == [64, 80, 96, 112, 128]

# %% [markdown]
# Width grows from 64 to 128 channels while the parameter count stays within 3% of 70k.
#
# The same holds for whole networks. Built with `models.build_resnext(50, cardinality=C,
# base_width=d)`, the five ResNeXt-50 variants have the parameters and multiply-adds of
# ResNet-50 (the `1x64d` row) to within a few percent — the paper's "preserved complexity".
# (`shape_and_macs` runs the model on the "meta" device, where tensors have shapes but no
# data, and counts the multiply-adds of its convolutions and linear layers.)

# %%
RESNET50_PARAMS, RESNET50_MACS = 25_557_032, 4.089e9
for c, d in VARIANTS:
    net = models.build_resnext(50, cardinality=c, base_width=d)
    n_params = sum(p.numel() for p in net.parameters())
    _, macs = shape_and_macs(net, (1, 3, 224, 224))
    print(f"ResNeXt-50 ({c}x{d}d): {n_params / 1e6:6.2f} M parameters, {macs / 1e9:5.2f} G multiply-adds")
    assert abs(n_params / RESNET50_PARAMS - 1) < 0.025
    assert abs(macs / RESNET50_MACS - 1) < 0.05
    del net

# %% [markdown]
# ## Table 1, side by side
#
# The paper's Table 1 sets ResNet-50 beside ResNeXt-50 (32x4d) stage by stage.
# `models.summary` computes it from the two models: each stage in the paper's notation, its
# output shape, parameters and multiply-adds. The totals are exact integers, the same as
# torchvision's models (whose `state_dict`s these models share); the paper rounds them to
# 25.5 and 25.0 million parameters and 4.1 and 4.2 billion FLOPs (counting a multiply-add as
# one FLOP, as torchvision's "GFLOPS" 4.09 and 4.23 do too).

# %%
TORCHVISION = {"ResNet-50": (25_557_032, 4.09e9), "ResNeXt-50 (32x4d)": (25_028_904, 4.23e9)}
PAPER_TABLE_1 = {"ResNet-50": (25.5e6, 4.1e9), "ResNeXt-50 (32x4d)": (25.0e6, 4.2e9)}
table_1 = [summary.summarize(models.resnet50(), name="ResNet-50"),
           summary.summarize(models.resnext50_32x4d(), name="ResNeXt-50 (32x4d)")]
print(summary.format_table(*table_1))
for row in table_1:
    (tv_params, tv_flops), (paper_params, paper_flops) = TORCHVISION[row.name], PAPER_TABLE_1[row.name]
    print(f"{row.name}: {row.params:,} parameters (torchvision {tv_params:,}, paper "
          f"{paper_params / 1e6:.1f} M); {row.macs:,} multiply-adds (torchvision "
          f"{tv_flops / 1e9:.2f} G, paper {paper_flops / 1e9:.1f} G)")
    assert row.params == tv_params and round(row.macs / 1e7) == round(tv_flops / 1e7)
    # the paper's figures agree to their last digit (its 25.5 M truncates 25.56 M)
    assert abs(row.params - paper_params) < 0.1e6 and abs(row.macs - paper_flops) < 0.1e9

# %% [markdown]
# ## What the five blocks cost in time
#
# Equal multiply-adds do not promise equal time. Each block below runs forward and backward on
# a batch of feature maps at 256 channels (a smaller map than ImageNet's 56x56, to keep this
# quick), timed in interleaved rounds so that a noisy neighbour on the machine slows all
# variants alike; each bar is the median. Where PyTorch is installed, its CPU implementation
# of the same block is timed beside ours.

# %%
BATCH, HW, REPEATS = (2, 8, 3) if FAST else (8, 28, 7)
x_np = np.random.default_rng(0).standard_normal((BATCH, 256, HW, HW)).astype(np.float32)


def ours(c: int, d: int):
    block = models.Bottleneck(256, 64, groups=c, base_width=d)
    x = mr.tensor(x_np, requires_grad=True)

    def step() -> None:
        block.zero_grad()
        block(x).sum().backward()

    return step


try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed here: only the project's kernels are timed.")


def theirs(c: int, d: int):
    width = c * d
    tn = torch.nn
    block = tn.Sequential(tn.Conv2d(256, width, 1, bias=False), tn.BatchNorm2d(width), tn.ReLU(),
                          tn.Conv2d(width, width, 3, padding=1, groups=c, bias=False),
                          tn.BatchNorm2d(width), tn.ReLU(), tn.Conv2d(width, 256, 1, bias=False),
                          tn.BatchNorm2d(256))
    x = torch.from_numpy(x_np).requires_grad_()

    def step() -> None:
        block.zero_grad()
        torch.relu(block(x) + x).sum().backward()

    return step


candidates = {("minitorch-resnext", c, d): ours(c, d) for c, d in VARIANTS}
if torch is not None:
    candidates.update({("PyTorch", c, d): theirs(c, d) for c, d in VARIANTS})
for step in candidates.values():
    step()  # warm-up: compiles the kernels on first use
samples = {key: [] for key in candidates}
for _ in range(REPEATS):
    for key, step in candidates.items():
        start = time.perf_counter()
        step()
        samples[key].append(time.perf_counter() - start)
median_ms = {key: 1e3 * float(np.median(s)) for key, s in samples.items()}

block_macs = {(c, d): shape_and_macs(models.Bottleneck(256, 64, groups=c, base_width=d),
                                     (BATCH, 256, HW, HW))[1] for c, d in VARIANTS}
for (engine, c, d), ms in median_ms.items():
    gflops = 3 * 2 * block_macs[c, d] / (ms / 1e3) / 1e9  # backward costs about twice the forward
    print(f"{engine:18s} {f'{c}x{d}d':>6}: {ms:8.1f} ms forward+backward, ~{gflops:5.1f} GFLOP/s")
assert max(block_macs.values()) / min(block_macs.values()) < 1.03  # the same work

# %% [markdown]
# The multiply-adds of the five blocks agree to 3%; their times need not. A grouped
# convolution with few channels per group does little arithmetic per byte of feature map it
# reads and writes (tutorial 1), so its speed depends on memory traffic as much as on
# arithmetic, and each variant strikes a different balance between the two. Tutorial 4
# measures both limits on this machine and shows how the kernel is written for them.

# %%
engines = sorted({engine for engine, _, _ in median_ms})
fig = Figure(figsize=(8, 4.2), layout="constrained")
ax = fig.subplots()
bar_w = 0.8 / len(engines)
for k, engine in enumerate(engines):
    xs = np.arange(len(VARIANTS)) + (k - (len(engines) - 1) / 2) * bar_w
    ax.bar(xs, [median_ms[engine, c, d] for c, d in VARIANTS], bar_w, label=engine)
ax.set_xticks(range(len(VARIANTS)), labels=[f"{c}x{d}d\n(width {c * d})" for c, d in VARIANTS])
ax.set_xlabel("block variant, cardinality C x path width d")
ax.set_ylabel("forward + backward time (ms, median)")
ax.set_title(f"One ResNeXt conv2 block, 256 channels, batch {BATCH} at {HW}x{HW}, float32, this CPU")
ax.legend()
ax.grid(True, axis="y", alpha=0.3)
save(fig, "03_block_time.png")

# %% [markdown]
# ## An experiment that can show the claim, or fail to
#
# The paper's evidence for cardinality is its Table 3: ResNeXt-50s at the complexity of
# ResNet-50, trained on ImageNet, whose top-1 error falls from 23.9 % (`1x64d`) to 22.2 %
# (`32x4d`), with training curves in which the higher cardinality also reaches the lower
# training error. A laptop cannot train on ImageNet, but a miniature can be built so that it
# *could* show such an effect, and says so when it does not:
#
# * **data that does not saturate**: the digits alone reach 99 %, where every variant looks
#   the same. Here each digit sits at a random place on a 16x16 canvas among fragments of
#   other digits and noise, and a fresh image is drawn at every step, so nothing is
#   memorised and the training loss measures what a model can represent;
# * **models matched as tightly as Table 2**, checked to 3 % in parameters and multiply-adds;
# * **a positive control**, a clearly smaller model the experiment must find worse: if it
#   cannot, it could not have seen a cardinality effect either;
# * **one recipe** for every variant, tuned on `C = 1` alone; **paired seeds** (a seed fixes
#   the data stream and the initialisation, so every variant meets the same images);
# * **a pilot** that times the runs to fit the budget and calibrates the clutter so that
#   `C = 1`'s error is near the paper's 24 %;
# * **a verdict computed from the numbers**, with its confidence interval.
#
# The experiment is a module, `minitorch_resnext.experiments.cardinality` (imported at the
# top as `cardinality`); this section looks at its parts and then runs it.

# %% [markdown]
# ### The data
#
# `data.cluttered.cluttered_batches(batch_size, seed, clutter)` renders fresh batches forever:
# the labelled digit (resampled to 10x10) wholly inside the canvas, `pieces` 5x5 fragments of
# other digits overlaid as ink, then Gaussian noise. The pilot chooses among five levels of
# clutter, from none to eight fragments; eight fresh images of each:

# %%
levels = cardinality.LEVELS
fig = Figure(figsize=(9, 1.2 * len(levels)), layout="constrained")
for row, (level, clutter) in zip(fig.subplots(len(levels), 8), enumerate(levels)):
    images, labels = next(cluttered.cluttered_batches(8, seed=level, clutter=clutter))
    for ax, image, label in zip(row, images[:, 0], labels):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"label {label}", fontsize=8)
    row[0].set_ylabel(f"level {level}\n{clutter.pieces} pieces\nnoise {clutter.noise}", fontsize=8)
save(fig, "03_cluttered_digits.png")

# %% [markdown]
# ![cluttered digits at the five levels of difficulty](figures/03_cluttered_digits.png)
#
# The test set is one fixed rendering of several thousand images, drawn from the test split's
# digits (never drawn for training) with a fixed seed: `data.cluttered.ClutteredDigits`.
#
# ### The models: Table 2 at half its width
#
# Every model is a 3x3 stem with stride 2 (16x16 to 8x8, 128 channels), three identical
# ResNeXt blocks of 128 channels (`models.Bottleneck`), global pooling and a classifier.
# Equation 4 for a 128-wide block gives `C*d*(256 + 9d)` convolution parameters, and the ladder
# `1x32d, 2x20d, 4x12d, 8x7d` keeps that within 3 % of `1x32d`'s: the paper's `1x64d, 2x40d,
# 4x24d, 8x14d` at half the width. Table 2 goes on to `32x4d`, which at half the width
# would be `32x2d`, below the paper's floor of `d = 4`; `16x4d` would cost 7 % more. So the
# ladder stops at `C = 8`. The positive control `1x8d` has a quarter of `1x32d`'s width.
#
# `cardinality.check_ladder()` builds each model and measures it with `models.summary`; it
# refuses a ladder with a path narrower than 4 or a rung more than 3 % off in parameters or
# multiply-adds. The block counts below are those of the blocks inside each model.

# %%
costs = cardinality.check_ladder()
costs[cardinality.CONTROL] = cardinality.cost(cardinality.CONTROL, canvas=16)
base = costs[cardinality.LADDER[0]]
print(f"{'C x d':>15} {'width':>6} {'each block (eq. 4)':>19} {'model params':>21} "
      f"{'mult-adds / image':>21}")
for v, c in costs.items():
    equation_4 = v.cardinality * v.width * (2 * cardinality.CHANNELS + 9 * v.width)
    assert c.block_params == (equation_4,) * cardinality.BLOCKS  # every block in the model
    name = v.name + (" (control)" if v == cardinality.CONTROL else "")
    print(f"{name:>15} {v.cardinality * v.width:>6} {equation_4:>19,} "
          f"{c.params:>12,} ({c.params / base.params - 1:+6.1%}) "
          f"{c.macs / 1e6:>10.2f} M ({c.macs / base.macs - 1:+6.1%})")
    if v != cardinality.CONTROL:
        assert v.width >= cardinality.MIN_WIDTH
        assert abs(c.params / base.params - 1) <= 0.03 and abs(c.macs / base.macs - 1) <= 0.03

# %% [markdown]
# ### The recipe, the seeds, the pilot and the verdict rule
#
# Every variant trains with the same recipe: SGD with momentum, a warm-up over the first
# tenth of the steps and a cosine decay, batch 32, no label smoothing. Its learning rate and
# weight decay were chosen on `C = 1` alone, with seeds the sweep does not use.
#
# Seed `s` fixes the data stream and the initialisation; each variant is trained once per
# seed, and compared with `C = 1` *of the same seed*, so the comparison is not blurred by one
# variant having met easier images. The seeds run in turn (all variants of seed 1, then of
# seed 2, ...), so that a change in the machine's load falls on all variants alike.
#
# The pilot first times a few steps of each variant and a pass over the test set, and sets the
# number of steps per run so that the pilot and the sweep fit the time budget (this machine
# may be slower or busier than the one the budget was planned on). Then it trains `C = 1`
# with its own seed and moves the clutter a level at a time until `C = 1`'s error on a
# separate rendering lands between 15 and 35 %.
#
# The verdict rule is fixed before anything runs: the highest cardinality against `C = 1`, the
# difference of their test errors, with a 95 % confidence interval from the paired seeds
# (Student's t) that also counts the test set's own sampling. *Reproduced* if the whole
# interval lies below zero, *contradicted* if above, *not reproduced at this scale* if it
# contains zero. The control is *detected* if its whole interval lies above zero.

# %%
settings = cardinality.FAST if FAST else cardinality.FULL
print(settings)

# %% [markdown]
# ### Running it
#
# In full mode this takes about ten minutes on two otherwise idle cores: the pilot sizes it to
# `settings.budget_s` from the speed it measures at the start, so a machine that gets busier
# during the run takes longer. With `MINITORCH_FAST=1` it is a smoke test: two seeds, 40 steps,
# no clutter. Every part runs, but runs that short and two seeds (whose 95 % interval reaches
# 12.7 standard errors to either side) cannot resolve anything, so the control is not required
# to be detected there and the verdict means nothing.

# %%
result = cardinality.run(settings)
print(result.table())
print(result.verdict())
print(f"{result.seconds:.0f} s in all")
assert result.learned  # every run's loss fell and its test error is well below chance
if not FAST:
    assert result.control_detected  # otherwise the experiment can resolve nothing

# %% [markdown]
# ### Beside the paper's Table 3
#
# ![this experiment's differences from C = 1 beside the paper's Table 3](figures/03_cardinality_error.png)
#
# Both panels show differences from `C = 1`, so the paper's ImageNet errors and this
# experiment's test errors share one axis (left). The positive control's difference, in red
# (a band where it fits the axes, else its numbers at the edge it lies beyond), is the scale of
# an effect this experiment can see. The right panel is the paper's other evidence, the
# training loss, here on images never seen before.

# %%
fig = cardinality.figure(result)
save(fig, "03_cardinality_error.png")

# %% [markdown]
# ### Reading the verdict
#
# The verdict above is computed, not written in advance; whatever it says, read it with its
# interval. *Reproduced* means this miniature also finds the higher cardinality better, by
# more than its seeds and test images can explain. "Matched" allows the top rung 3 % more
# parameters, so the verdict prices them at the control's rate (the error it lost per halving
# of the parameters): a difference bought by size alone would be about that large. *Not
# reproduced at this scale* is not evidence against the paper: it says that any effect here is
# smaller than the interval's half-width, while the control shows what the experiment *can*
# see. The paper's difference at `C = 8` is 1.6 points on ImageNet: 1.28 million images, 100
# epochs and 25 million parameters, against a few hundred steps of 32 fresh images and 56
# thousand parameters here. More seeds narrow the interval as one over their square root, and
# longer runs move the models further from their initialisation; both are a `Settings` away,
# e.g. `cardinality.run(cardinality.Settings(seeds=8, budget_s=3600))`.

# %% [markdown]
# ## Summary
#
# * Table 2's five blocks are recomputed exactly by the builder: `C*d*(512 + 9d)` parameters
#   (the paper's equation 4; its table says "~70k"), width growing from 64 to 128.
# * Whole ResNeXt-50s built the same way have ResNet-50's parameters and multiply-adds to
#   within a few percent; Table 1's totals are torchvision's exact integers, which the paper
#   rounds to 25.5/25.0 M and 4.1/4.2 G.
# * The same multiply-adds are not the same time: grouped convolutions with few channels per
#   group are limited by memory traffic (tutorial 4).
# * An experiment about cardinality needs data that does not saturate, models matched to a
#   few percent, a positive control, paired seeds and an interval; the one here prints its
#   own verdict.
#
# ## Exercises
#
# Fill in the stubs in `tutorials/exercises/t3_cardinality_vs_width.py` and check them with
# `pytest tests/exercises -k "t3 and yours"` (solutions in `tutorials/exercises/solutions/`).
#
# 1. `block_params`: the paper's equation 4, the parameters of a block with `C` paths of `d`.
# 2. `nearest_width`: the width `d` that keeps a block of cardinality `C` at Table 2's budget.
# 3. `matched_width`: the same within 3 %, or None; find out why Table 2 has no row `C = 16`.
# 4. `block_macs`: the multiply-adds of a block on an `hw x hw` map.
