"""The cardinality experiment of tutorial 3: at matched complexity, does the error fall as the
cardinality C rises, as in the paper's Table 3?

The design is fixed before any result is seen:

- Models: a 3x3 stem (stride 2) to 128 channels, three identical ResNeXt blocks of 128
  channels (`models.Bottleneck`), global pooling and a linear classifier. The ladder
  C x d = 1x32, 2x20, 4x12, 8x7 keeps a block's convolution parameters C*d*(256 + 9d) within 3 %
  of 1x32d's, like the paper's Table 2 at half its width, and no path is narrower than the
  paper's floor of 4 channels; the whole models' parameters and multiply-adds must agree to
  3 % (`check_ladder`).
- A positive control, 1x8d (a fifth of the parameters), must come out worse: an experiment
  that cannot see a clearly smaller model cannot see a cardinality effect either.
- Data: cluttered digits drawn fresh at every step (`data.cluttered`), so the training loss
  measures what a model represents, not what it memorised; a fixed test rendering.
- One recipe for every variant (`Recipe`), tuned on C = 1 alone.
- Paired seeds: seed s fixes the data stream and the initialisation, and every variant is
  compared with C = 1 trained on the same stream.
- A pilot times every variant and sets the number of steps so that the sweep fits the time
  budget, then calibrates the clutter on C = 1 (with a seed the sweep does not use) so that its
  test error lands near the paper's 24 %.
- The verdict compares the highest cardinality with C = 1: the difference in test error and
  its 95 % confidence interval over the paired seeds and the test images. Reproduced if the
  interval lies below zero, contradicted if above, not reproduced at this scale otherwise.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from scipy import stats

from .. import functional as F
from .. import models, nn, optim, train
from ..autograd import no_grad
from ..bench._common import atomic_path, format_table, machine_info, package_versions, write_json
from ..data.cluttered import TEST_SEED, Clutter, ClutteredDigits, cluttered_batches
from ..models.summary import summarize
from ..tensor import manual_seed, tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Log = Callable[[str], None]
Metric = Literal["error", "final_loss"]  # a `Run` property: test error, final training loss


class Variant(NamedTuple):
    """A model of the experiment: every block has C paths of d channels."""

    cardinality: int
    width: int

    @property
    def name(self) -> str:
        return f"{self.cardinality}x{self.width}d"


CHANNELS, BLOCKS = 128, 3  # block input/output channels, identical blocks per model
LADDER = (Variant(1, 32), Variant(2, 20), Variant(4, 12), Variant(8, 7))
CONTROL = Variant(1, 8)
MIN_WIDTH = 4  # the paper's floor: its Table 2 stops at 32x4d
TOLERANCE = 0.03  # matched complexity: parameters and multiply-adds within 3 % of C = 1's
# the paper's Table 3: top-1 error (%) of ResNeXt-50 on ImageNet, by C (and d)
PAPER_TABLE_3 = {1: 23.9, 2: 23.0, 4: 22.6, 8: 22.3, 32: 22.2}
PAPER_WIDTHS = {1: 64, 2: 40, 4: 24, 8: 14, 32: 4}
# difficulty levels the pilot chooses from: more fragments of other digits, more noise
LEVELS = tuple(Clutter(pieces=p, noise=s) for p, s in ((0, 0.0), (2, 0.1), (4, 0.2), (6, 0.3),
                                                        (8, 0.4)))
PILOT_SEED = 0  # the sweep's seeds are 1, 2, ...
VALIDATION_SEED = TEST_SEED + 1  # the pilot's rendering of the test digits: not the test set


def ladder_model(variant: Variant) -> nn.Sequential:
    """Stem (3x3 conv with stride 2, BN, ReLU), `BLOCKS` identical ResNeXt blocks of
    `CHANNELS` channels with `variant`'s C x d, global average pool, fc to 10 classes."""
    planes = CHANNELS // models.Bottleneck.expansion  # 32: blocks of 128 -> C*d -> 128
    base_width = 2 * variant.width  # the builder's d is given per 64 planes
    return nn.Sequential(
        nn.Conv2d(1, CHANNELS, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(CHANNELS),
        nn.ReLU(),
        *(models.Bottleneck(CHANNELS, planes, groups=variant.cardinality, base_width=base_width)
          for _ in range(BLOCKS)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(CHANNELS, 10))


class Cost(NamedTuple):
    """A model's parameters and multiply-adds per image, and the convolution parameters of
    each of its blocks."""

    params: int
    macs: int
    block_params: tuple[int, ...]


def cost(variant: Variant, canvas: int) -> Cost:
    """What `ladder_model(variant)` costs on `canvas` x `canvas` images (`models.summary`)."""
    model = ladder_model(variant)
    summary = summarize(model, input_size=canvas, in_channels=1)
    blocks = [m for m in model.modules() if isinstance(m, models.Bottleneck)]
    return Cost(summary.params, summary.macs, tuple(
        sum(c.weight.numel() for c in b.modules() if isinstance(c, nn.Conv2d)) for b in blocks))


def check_ladder(ladder: tuple[Variant, ...] = LADDER, canvas: int = Clutter().canvas,
                 tolerance: float = TOLERANCE) -> dict[Variant, Cost]:
    """The ladder's costs; ValueError unless every d >= MIN_WIDTH and every rung's parameters
    and multiply-adds are within `tolerance` of the first rung's."""
    narrow = [v.name for v in ladder if v.width < MIN_WIDTH]
    if narrow:
        raise ValueError(f"ladder: paths narrower than the paper's floor d >= {MIN_WIDTH}: {narrow}")
    costs = {v: cost(v, canvas) for v in ladder}
    base = costs[ladder[0]]
    for v, c in costs.items():
        for what, n, n0 in (("parameters", c.params, base.params), ("multiply-adds", c.macs, base.macs)):
            if abs(n / n0 - 1) > tolerance:
                raise ValueError(f"ladder: {v.name} has {n:,} {what}, {n / n0 - 1:+.1%} from "
                                 f"{ladder[0].name}'s {n0:,}; matched means within {tolerance:.0%}")
    return costs


@dataclass(frozen=True)
class Recipe:
    """The one training recipe of every variant: SGD with momentum, a linear warm-up over the
    first `warmup` of the steps, then a cosine decay to zero; no label smoothing, so the
    training loss is the plain cross-entropy. The learning rate and weight decay were chosen
    on C = 1 alone, with seeds the sweep does not use (lr 0.02 to 0.2, weight decay 1e-4 to
    2e-3 tried at 500 steps on level 2)."""

    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.1


@dataclass(frozen=True)
class Settings:
    """How big the experiment is.

    Args:
        seeds: paired seeds of the sweep (every variant is trained once per seed).
        budget_s: seconds for the whole experiment: timing, pilot and sweep.
        test_size: images in the fixed test rendering.
        min_steps: the fewest steps per run the budget may set.
        max_steps: the most steps per run the budget may set.
        level: the index in `LEVELS` the pilot starts from.
        target_error: C = 1's test error the pilot aims for.
        pilots: at most this many pilot runs.
    """

    seeds: int = 4
    budget_s: float = 600.0
    test_size: int = 4000
    min_steps: int = 100
    max_steps: int = 3000
    level: int = 2
    target_error: tuple[float, float] = (0.15, 0.35)
    pilots: int = 2
    recipe: Recipe = Recipe()

    def __post_init__(self) -> None:
        rules = {"seeds >= 2 (an interval needs two)": self.seeds >= 2,
                 "budget_s > 0": self.budget_s > 0, "test_size >= 1": self.test_size >= 1,
                 "1 <= min_steps <= max_steps": 1 <= self.min_steps <= self.max_steps,
                 f"0 <= level < {len(LEVELS)}": 0 <= self.level < len(LEVELS),
                 "pilots >= 1": self.pilots >= 1}
        broken = [rule for rule, holds in rules.items() if not holds]
        if broken:
            raise ValueError(f"Settings: need {', '.join(broken)}; got {self}")


FULL = Settings()
# a smoke run for CI: every part runs, no clutter, too few steps and seeds to resolve effects
FAST = Settings(seeds=2, budget_s=30, test_size=500, min_steps=40, max_steps=40, level=0,
                target_error=(0.0, 1.0), pilots=1)


class _Training:
    """One variant training on one seed's data stream, a step at a time."""

    def __init__(self, variant: Variant, seed: int, steps: int, clutter: Clutter,
                 recipe: Recipe) -> None:
        manual_seed(seed)
        self.model = ladder_model(variant)
        self.sgd = optim.SGD(self.model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                             weight_decay=recipe.weight_decay)
        schedule = train.TrainConfig(epochs=1, lr=recipe.lr, warmup_epochs=recipe.warmup)
        self.schedule = train.make_scheduler(schedule, self.sgd, steps)
        self.batches = cluttered_batches(recipe.batch_size, seed, clutter)

    def step(self) -> float:
        x, y = next(self.batches)
        loss = F.cross_entropy(self.model(tensor(x)), tensor(y))
        self.sgd.zero_grad()
        loss.backward()
        self.sgd.step()
        self.schedule.step()
        return loss.item()


def misclassified(model: nn.Module, test_set: ClutteredDigits, batch_size: int = 500) -> np.ndarray:
    """A boolean per test image: is the model's top class wrong?"""
    model.eval()
    with no_grad():
        scores = [model(tensor(test_set.data[i:i + batch_size])).numpy()
                  for i in range(0, len(test_set), batch_size)]
    return np.concatenate(scores).argmax(axis=1) != test_set.targets


@dataclass
class Run:
    """One variant trained on one seed: its loss at every step and its test mistakes."""

    variant: Variant
    seed: int
    losses: np.ndarray
    wrong: np.ndarray
    seconds: float

    @property
    def error(self) -> float:
        return float(self.wrong.mean())

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last tenth of the steps (on images never seen before)."""
        return float(self.losses[-max(1, len(self.losses) // 10):].mean())

    @property
    def learned(self) -> bool:
        """The training loss fell (last tenth of the steps against the first) and the test
        error is below chance (0.9) by more than three standard errors of the test set."""
        first = float(self.losses[:max(1, len(self.losses) // 10)].mean())
        return self.final_loss < first and self.error < 0.9 - 3 * math.sqrt(0.09 / self.wrong.size)


def train_run(variant: Variant, seed: int, steps: int, clutter: Clutter,
              test_set: ClutteredDigits, recipe: Recipe) -> Run:
    """Train `variant` for `steps` on seed `seed`'s stream and test it."""
    start = time.perf_counter()
    training = _Training(variant, seed, steps, clutter, recipe)
    losses = np.array([training.step() for _ in range(steps)])
    return Run(variant, seed, losses, misclassified(training.model, test_set),
               time.perf_counter() - start)


@dataclass
class Plan:
    """What the pilot measured and decided."""

    steps: int
    level: int
    step_seconds: dict[str, float]  # median seconds of one training step, per variant
    eval_seconds: float  # one pass over the test set
    pilot_errors: dict[int, float]  # level -> C = 1's test error there
    seconds: float

    @property
    def clutter(self) -> Clutter:
        return LEVELS[self.level]


def time_steps(variants: tuple[Variant, ...], recipe: Recipe, repeats: int = 5) -> dict[str, float]:
    """Median seconds of one training step of each variant, timed in turns (A B C A B C ...)
    after one untimed step each."""
    trainings = {v.name: _Training(v, PILOT_SEED, repeats + 1, LEVELS[0], recipe) for v in variants}
    for training in trainings.values():
        training.step()
    samples: dict[str, list[float]] = {name: [] for name in trainings}
    for _ in range(repeats):
        for name, training in trainings.items():
            start = time.perf_counter()
            training.step()
            samples[name].append(time.perf_counter() - start)
    return {name: float(np.median(s)) for name, s in samples.items()}


def steps_for_budget(seconds: float, step_seconds: dict[str, float], eval_seconds: float,
                     settings: Settings, variants: tuple[Variant, ...]) -> int:
    """The most steps per run with which the pilots and the sweep fit in `seconds`, within
    [min_steps, max_steps]."""
    runs = settings.pilots + settings.seeds * len(variants)
    per_step = (settings.pilots * step_seconds[variants[0].name]
                + settings.seeds * sum(step_seconds[v.name] for v in variants))
    steps = int((seconds - runs * eval_seconds) / per_step)
    return min(max(steps, settings.min_steps), settings.max_steps)


def make_plan(settings: Settings, variants: tuple[Variant, ...], log: Log) -> Plan:
    """Time each variant's step and a test pass, set the steps for the budget, then calibrate
    the difficulty on C = 1: move one level at a time towards `target_error`, at most
    `pilots` runs, and keep the level whose error came closest to the target's middle. The
    budget's clock starts after the kernels are compiled."""
    probe, model = ClutteredDigits(settings.test_size, LEVELS[0]), ladder_model(variants[0])
    misclassified(model, probe)  # the first use of each kernel may compile it
    for v in variants:
        _Training(v, PILOT_SEED, 1, LEVELS[0], settings.recipe).step()
    start = time.perf_counter()
    misclassified(model, probe)
    eval_seconds = time.perf_counter() - start
    step_seconds = time_steps(variants, settings.recipe)
    steps = steps_for_budget(settings.budget_s - (time.perf_counter() - start), step_seconds,
                             eval_seconds, settings, variants)
    log(f"pilot: steps take {', '.join(f'{k} {1e3 * s:.0f} ms' for k, s in step_seconds.items())}"
        f", a test pass {eval_seconds:.1f} s: {steps} steps per run fit the {settings.budget_s:.0f} s")
    low, high = settings.target_error
    errors: dict[int, float] = {}
    level = settings.level
    for _ in range(settings.pilots):
        validation = ClutteredDigits(settings.test_size, LEVELS[level], seed=VALIDATION_SEED)
        run = train_run(variants[0], PILOT_SEED, steps, LEVELS[level], validation, settings.recipe)
        errors[level] = run.error
        log(f"pilot: {variants[0].name} at level {level} ({LEVELS[level].pieces} pieces, noise "
            f"{LEVELS[level].noise}): error {run.error:.1%} on a validation rendering "
            f"({run.seconds:.0f} s)")
        if low <= run.error <= high:
            break
        level += 1 if run.error < low else -1
        if level in errors or not 0 <= level < len(LEVELS):
            break
    best = min(errors, key=lambda lv: abs(errors[lv] - (low + high) / 2))
    return Plan(steps, best, step_seconds, eval_seconds, errors, time.perf_counter() - start)


@dataclass(frozen=True)
class Effect:
    """A variant minus C = 1, paired by seed: the mean and its 95 % confidence interval."""

    per_seed: tuple[float, ...]
    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paired_effect(runs: list[Run], reference: list[Run], metric: Metric) -> Effect:
    """`metric` ('error' or 'final_loss') of `runs` minus that of `reference`, seed by seed.

    The interval is Student's t over the seeds; for the test error the test set is a sample
    too, so the variance of the mean per-image difference is added.
    """
    if [r.seed for r in runs] != [r.seed for r in reference] or len(runs) < 2:
        raise ValueError("paired_effect: runs and reference must have the same seeds in order, "
                         "at least two (an interval needs two)")
    diffs = np.array([getattr(r, metric) - getattr(q, metric) for r, q in zip(runs, reference)])
    n, mean = len(diffs), float(diffs.mean())
    variance = diffs.var(ddof=1) / n
    if metric == "error":
        per_image = np.mean([r.wrong.astype(float) - q.wrong for r, q in zip(runs, reference)], axis=0)
        variance += per_image.var(ddof=1) / per_image.size
    half = float(stats.t.ppf(0.975, n - 1) * math.sqrt(variance))
    return Effect(tuple(float(d) for d in diffs), mean, mean - half, mean + half)


@dataclass
class Result:
    """Everything the experiment measured, and what follows from it."""

    settings: Settings
    plan: Plan
    costs: dict[Variant, Cost]
    runs: list[Run]
    seconds: float
    load: tuple[float, float]  # 1-minute load average at the start and at the end

    @property
    def ladder(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.costs if v != CONTROL)

    def runs_of(self, variant: Variant) -> list[Run]:
        return sorted((r for r in self.runs if r.variant == variant), key=lambda r: r.seed)

    def effect(self, variant: Variant, metric: Metric = "error") -> Effect:
        return paired_effect(self.runs_of(variant), self.runs_of(self.ladder[0]), metric)

    @property
    def control_detected(self) -> bool:
        """The control's test error is higher than C = 1's, the whole interval above zero."""
        return self.effect(CONTROL).low > 0

    @property
    def learned(self) -> bool:
        """Every run learned (`Run.learned`)."""
        return all(r.learned for r in self.runs)

    @property
    def claim(self) -> str:
        top = self.effect(self.ladder[-1])
        if top.high < 0:
            return "reproduced"
        return "contradicted" if top.low > 0 else "not reproduced at this scale"

    def table(self) -> str:
        """Per variant: cost, test error per seed, and the paired differences from C = 1."""
        rows = []
        base = self.costs[self.ladder[0]]
        for v, c in self.costs.items():
            runs, err, loss = self.runs_of(v), self.effect(v), self.effect(v, "final_loss")
            rows.append([
                v.name + (" (control)" if v == CONTROL else ""), f"{v.cardinality * v.width}",
                f"{c.block_params[0]:,}", f"{c.params:,} ({c.params / base.params - 1:+.1%})",
                f"{c.macs / 1e6:.2f} M ({c.macs / base.macs - 1:+.1%})",
                " ".join(f"{100 * r.error:.1f}" for r in runs),
                "" if v == self.ladder[0] else _interval(err, 100, "{:+.1f}"),
                f"{np.mean([r.final_loss for r in runs]):.3f}",
                "" if v == self.ladder[0] else _interval(loss, 1, "{:+.3f}")])
        header = ["variant", "width", "block params", "params", "mult-adds", "test error % by seed",
                  f"vs {self.ladder[0].name}, points", "train loss", f"vs {self.ladder[0].name}"]
        return format_table(header, rows, [False, True, True, True, True, False, False, True, False])

    def verdict(self) -> str:
        """What the numbers say, in words."""
        ref, top = self.ladder[0], self.ladder[-1]
        control, err, loss = self.effect(CONTROL), self.effect(top), self.effect(top, "final_loss")
        sd = np.std(control.per_seed, ddof=1)
        params = {v: self.costs[v].params for v in (ref, top, CONTROL)}
        # the control's exchange rate, log-linear in parameters: what the top rung's few
        # percent of extra parameters would be worth if size alone mattered
        per_doubling = control.mean / math.log2(params[ref] / params[CONTROL])
        worth = -per_doubling * math.log2(params[top] / params[ref])
        paper = PAPER_TABLE_3[top.cardinality] - PAPER_TABLE_3[1]
        seeds, images = len(control.per_seed), self.runs[0].wrong.size
        return "\n".join([
            f"Positive control {CONTROL.name} ({params[CONTROL] / params[ref]:.0%} of {ref.name}'s "
            f"parameters): test error {_interval(control, 100, '{:+.1f}')} points, effect size "
            f"{control.mean / sd:.1f} seed standard deviations: "
            f"{'detected' if self.control_detected else 'NOT detected'}.",
            f"Highest cardinality {top.name} vs {ref.name}: test error "
            f"{_interval(err, 100, '{:+.1f}')} points, final training loss "
            f"{_interval(loss, 1, '{:+.3f}')}. At the control's rate ({100 * per_doubling:+.1f} "
            f"points per halving of the parameters) {top.name}'s {params[top] / params[ref] - 1:+.1%} "
            f"parameters are worth {100 * worth:+.1f} points.",
            f"Verdict: {self.claim.upper()} with {seeds} paired seeds and {images} test images "
            f"(95 % interval +-{100 * err.half_width:.1f} points); the paper's ImageNet "
            f"difference at C = {top.cardinality} is {paper:+.1f} points.",
        ])

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings), "seconds": self.seconds,
            "load_average_1min": {"start": self.load[0], "end": self.load[1]},
            "plan": {**asdict(self.plan), "clutter": asdict(self.plan.clutter)},
            "costs": {v.name: c._asdict() for v, c in self.costs.items()},
            "runs": [{"variant": r.variant.name, "seed": r.seed, "steps": len(r.losses),
                      "test_error": r.error, "final_train_loss": r.final_loss,
                      "seconds": r.seconds} for r in self.runs],
            "effects": {v.name: {m: asdict(self.effect(v, m)) for m in ("error", "final_loss")}
                        for v in self.costs if v != self.ladder[0]},
            "claim": self.claim, "control_detected": self.control_detected,
            "learned": self.learned, "verdict": self.verdict(),
        }


def _interval(effect: Effect, scale: float, fmt: str) -> str:
    mean, low, high = (fmt.format(scale * v) for v in (effect.mean, effect.low, effect.high))
    return f"{mean} [{low}, {high}]"


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan


def _single_threaded_blas() -> AbstractContextManager[Any]:
    """The models' matrix products are small: BLAS threads cost more than they save, and on
    a machine shared with other work they spin while the Numba kernels need the cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def run(settings: Settings = FULL, log: Log = print) -> Result:
    """The whole experiment: check the ladder, pilot, then every variant on every seed, seeds
    in turn so that a change in the machine's load falls on all variants alike."""
    start, load = time.perf_counter(), _load()
    costs = check_ladder()
    costs[CONTROL] = cost(CONTROL, LEVELS[0].canvas)
    variants = tuple(costs)
    with _single_threaded_blas():
        plan = make_plan(settings, variants, log)
        test_set = ClutteredDigits(settings.test_size, plan.clutter)
        runs = []
        for seed in range(1, settings.seeds + 1):
            for v in variants:
                runs.append(train_run(v, seed, plan.steps, plan.clutter, test_set, settings.recipe))
                log(f"seed {seed} {v.name:>5}: test error {runs[-1].error:6.1%}, final training "
                    f"loss {runs[-1].final_loss:.3f} ({runs[-1].seconds:.0f} s)")
    return Result(settings, plan, costs, runs, time.perf_counter() - start, (load, _load()))


def figure(result: Result) -> Figure:
    """The paper's Table 3 beside this experiment, both as differences from C = 1: test error
    (left, on the same axes) and the final training loss (right). The positive control's
    difference, the scale against which the ladder's read, is a red band where it fits the
    axes, else named at the edge it lies beyond."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax_error, ax_loss = fig.subplots(1, 2)
    paper = sorted(PAPER_TABLE_3)
    ax_error.plot(paper, [PAPER_TABLE_3[c] - PAPER_TABLE_3[1] for c in paper], "s--",
                  color="tab:gray", label="paper, Table 3: ResNeXt-50, ImageNet top-1")
    for c in paper:
        ax_error.annotate(f"{c}x{PAPER_WIDTHS[c]}d", (c, PAPER_TABLE_3[c] - PAPER_TABLE_3[1]),
                          textcoords="offset points", xytext=(5, -12), fontsize=8, color="tab:gray")
    ladder, seeds = result.ladder, result.settings.seeds
    panels = ((ax_error, "error", 100, "{:+.1f}", "test error minus C = 1's (points)"),
              (ax_loss, "final_loss", 1, "{:+.2f}", "final training loss minus C = 1's"))
    for ax, metric, scale, fmt, ylabel in panels:
        effects = [Effect((0.0,), 0.0, 0.0, 0.0)] + [result.effect(v, metric) for v in ladder[1:]]
        means = np.array([scale * e.mean for e in effects])
        lows, highs = (np.array([scale * getattr(e, side) for e in effects]) for side in ("low", "high"))
        ax.errorbar([v.cardinality for v in ladder], means, yerr=[means - lows, highs - means],
                    fmt="o-", capsize=4, color="tab:blue",
                    label=f"this experiment: {seeds} paired seeds, 95 % CI")
        for v, m in zip(ladder, means):
            ax.annotate(v.name, (v.cardinality, m), textcoords="offset points", xytext=(5, 5),
                        fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        # the control is the ruler: drawn where it fits, else named at the edge it lies beyond
        low, high = ax.get_ylim()
        control = result.effect(CONTROL, metric)
        label = f"positive control {CONTROL.name}: {_interval(control, scale, fmt)}"
        if low <= scale * control.low and scale * control.high <= high:
            ax.axhspan(scale * control.low, scale * control.high, color="tab:red", alpha=0.12)
            ax.axhline(scale * control.mean, color="tab:red", linestyle=":", label=label)
        else:
            above, pad = control.mean > 0, 0.15 * (high - low)
            ax.set_ylim(low, high + pad) if above else ax.set_ylim(low - pad, high)
            ax.annotate(f"{'above' if above else 'below'} the axes: {label}",
                        (0.02, 0.97 if above else 0.03), xycoords="axes fraction",
                        va="top" if above else "bottom", fontsize=8, color="tab:red")
        ax.set_xscale("log", base=2)
        ax.set_xticks(paper, labels=[str(c) for c in paper])
        ax.set_xlabel("cardinality C (at matched complexity)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    clutter = result.plan.clutter
    ax_error.set_title(f"Test error: {result.runs[0].wrong.size} cluttered digits "
                       f"({clutter.pieces} fragments, noise {clutter.noise})")
    ax_loss.set_title(f"Training loss, last tenth of {result.plan.steps} steps (fresh images)")
    return fig


def main(argv: list[str] | None = None) -> None:
    """Run the experiment from the command line; optionally write its JSON record and figure."""
    import argparse
    from datetime import datetime, timezone

    import numba

    parser = argparse.ArgumentParser(
        prog="python -m minitorch_resnext.experiments.cardinality",
        description="Does the error fall as the cardinality rises at matched complexity? "
                    "Trains the ladder and the control on paired seeds and prints the verdict.")
    parser.add_argument("--fast", action="store_true", help="the smoke-test settings (FAST)")
    parser.add_argument("--json", type=Path, help="write the record of the run here")
    parser.add_argument("--figure", type=Path, help="write the figure here (PNG)")
    args = parser.parse_args(argv)
    result = run(FAST if args.fast else FULL)
    print(result.table())
    print(result.verdict())
    print(f"{result.seconds:.0f} s in all, the pilot {result.plan.seconds:.0f} s; load average "
          f"{result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end")
    if args.json:
        write_json(args.json, {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(), "threads": numba.get_num_threads(),
            "versions": package_versions(["minitorch-resnext", "numpy", "numba", "scipy"]),
            **result.to_json()})
    if args.figure:
        with atomic_path(args.figure) as tmp:
            figure(result).savefig(tmp, format="png", dpi=110)


if __name__ == "__main__":
    main()
