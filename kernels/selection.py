"""Convolution algorithms as data: what each one computes, and rule tables that choose.

A device's kernels are a set of `ConvAlgorithm`s (each states, per pass, the geometries it
computes, its tuning parameters and their candidate values) and one `RuleTable` per pass: an
ordered list of `Rule`s (conditions on the geometry, the algorithm, its parameters, and why),
the first whose conditions hold and whose algorithm supports the geometry wins. A `Choice`
records the outcome and where it came from, so what `conv2d_algorithm` reports is what runs.
Adding an algorithm is one module that defines its `ConvAlgorithm` plus its rows in the tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .geometry import Conv2dGeometry

Pass = Literal["forward", "grad_input", "grad_weight"]
PASSES: tuple[Pass, ...] = ("forward", "grad_input", "grad_weight")
Params = Mapping[str, Any]
Kernel = Callable[..., None]


@dataclass(frozen=True)
class Condition:
    """A named test on a geometry; `text` is how a reason states it."""

    text: str
    test: Callable[[Conv2dGeometry], bool]

    def __call__(self, geometry: Conv2dGeometry) -> bool:
        return bool(self.test(geometry))

    def __str__(self) -> str:
        return self.text


def channels_at_least(n: int) -> Condition:
    """At least `n` input and `n` output channels per group."""
    return Condition(f">= {n} channels per group", lambda g: g.min_channels >= n)


def channels_at_most(n: int) -> Condition:
    """At most `n` input and `n` output channels per group."""
    return Condition(f"<= {n} channels per group", lambda g: g.max_channels <= n)


def input_channels_at_least(n: int) -> Condition:
    """At least `n` input channels per group."""
    return Condition(f">= {n} input channels per group", lambda g: g.in_per_group >= n)


def output_pixels_at_most(n: int) -> Condition:
    """At most `n` output pixels per image."""
    return Condition(f"<= {n} output pixels per image",
                     lambda g: g.output_hw[0] * g.output_hw[1] <= n)


def image_macs_at_least(n: int) -> Condition:
    """At least `n` multiply-adds per image and pass (whatever the batch, so that training and
    evaluation at another batch size run the same algorithms)."""
    return Condition(f">= {n:,} multiply-adds per image", lambda g: g.macs // g.batch >= n)


DEPTHWISE = Condition("depthwise", lambda g: g.depthwise)
POINTWISE = Condition("1x1 without padding", lambda g: g.pointwise)
TRANSPOSABLE = Condition("stride 1 and padding <= dilation * (kernel size - 1)",
                         lambda g: g.has_transpose)
STRIDED = Condition("stride > 1", lambda g: not g.unit_stride)
ALWAYS = Condition("otherwise", lambda g: True)


@dataclass(frozen=True)
class Rule:
    """When every condition holds (and the algorithm supports the geometry): run `algorithm`
    with `params`, because `why`."""

    algorithm: str
    when: tuple[Condition, ...]
    why: str
    params: Params = field(default_factory=dict)

    def matches(self, geometry: Conv2dGeometry) -> bool:
        return all(condition(geometry) for condition in self.when)

    def __str__(self) -> str:
        return f"{' and '.join(map(str, self.when))} -> {_label(self.algorithm, self.params)}"


RuleTable = Sequence[Rule]


@dataclass(frozen=True)
class Measurement:
    """One candidate's median time on this machine, as a tuner measured it."""

    algorithm: str
    params: Params
    ms: float

    def __str__(self) -> str:
        return f"{_label(self.algorithm, self.params)} {self.ms:.3g} ms"


@dataclass(frozen=True)
class Choice:
    """The algorithm and parameters one pass runs, with the reason; `source` says whether a
    rule chose it, a caller forced it, or a measurement did ('rule', 'forced', 'tuned'), and a
    tuned choice keeps the candidates it was measured against (fastest first)."""

    algorithm: str
    params: Params
    reason: str
    source: str = "rule"
    measured: tuple[Measurement, ...] = ()

    def __str__(self) -> str:
        return f"{_label(self.algorithm, self.params)} ({self.source}): {self.reason}"


def _label(algorithm: str, params: Params) -> str:
    return algorithm + "".join(f", {k}={v}" for k, v in params.items())


@dataclass(frozen=True)
class ConvChoices:
    """What each pass of one convolution runs (`conv2d_algorithm`'s answer)."""

    forward: Choice
    grad_input: Choice
    grad_weight: Choice

    def __getitem__(self, pass_: Pass) -> Choice:
        return getattr(self, pass_)

    def __iter__(self) -> Iterator[tuple[Pass, Choice]]:
        return ((p, self[p]) for p in PASSES)

    def __str__(self) -> str:
        return "\n".join(f"{p:<11} {choice}" for p, choice in self)


@dataclass(frozen=True)
class ConvAlgorithm:
    """One way of computing a convolution's passes.

    `kernels` maps each pass the algorithm computes to its kernel, called as
    ``forward(x, w, bias, y, geometry, **params)``, ``grad_input(grad_out, w, grad_x,
    geometry, **params)`` or ``grad_weight(x, grad_out, grad_w, geometry, **params)`` with the
    forward convolution's geometry, writing its output array in place. `supports` says which
    geometries a pass handles (`requirement` says it in words, for errors); `space` gives the
    tuning parameters and their candidate values for a pass and geometry, the default first.
    `nonfinite_exact` lists the passes in which NaN and Inf reach exactly the outputs the
    reference gives them: a kernel that multiplies a zero-padded copy, or skips the taps on
    padding, turns 0 * NaN into NaN (or a NaN into nothing) where the definition does not.
    `epilogue`: the forward also takes ``residual=`` and ``relu=`` and applies relu(y +
    residual) as it stores y (for the others the caller runs it as a pass of its own).
    """

    name: str
    kernels: Mapping[Pass, Kernel]
    summary: str
    supports: Callable[[Pass, Conv2dGeometry], bool] = lambda pass_, g: True
    requirement: str = ""
    space: Callable[[Pass, Conv2dGeometry], Mapping[str, Sequence[Any]]] = (
        lambda pass_, g: {})
    nonfinite_exact: frozenset[Pass] = frozenset(("forward", "grad_input", "grad_weight"))
    epilogue: bool = False

    def computes(self, pass_: Pass, geometry: Conv2dGeometry) -> bool:
        return pass_ in self.kernels and self.supports(pass_, geometry)

    def defaults(self, pass_: Pass, geometry: Conv2dGeometry) -> dict[str, Any]:
        return {name: values[0] for name, values in self.space(pass_, geometry).items()}

    def candidates(self, pass_: Pass, geometry: Conv2dGeometry) -> Iterator[dict[str, Any]]:
        """Every combination of tuning parameters this pass can run with on this geometry."""
        if not self.computes(pass_, geometry):
            return
        space = self.space(pass_, geometry)
        for values in itertools.product(*space.values()):
            yield dict(zip(space, values))

    def check(self, pass_: Pass, geometry: Conv2dGeometry) -> None:
        """A ValueError saying why this algorithm cannot run this pass, if it cannot."""
        if pass_ not in self.kernels:
            raise ValueError(f"algorithm {self.name!r} has no {pass_} kernel; it computes "
                             f"{', '.join(self.kernels)}")
        if not self.supports(pass_, geometry):
            raise ValueError(
                f"algorithm {self.name!r} needs {self.requirement} for {pass_}, got stride "
                f"{geometry.stride}, padding {geometry.padding}, dilation {geometry.dilation}, "
                f"kernel {geometry.kernel_hw}")


def choose(table: RuleTable, algorithms: Mapping[str, ConvAlgorithm], pass_: Pass,
           geometry: Conv2dGeometry) -> Choice:
    """The first rule of `table` that matches `geometry` and whose algorithm computes this
    pass on it; its parameters complete the algorithm's defaults."""
    for rule in table:
        algorithm = algorithms[rule.algorithm]
        if rule.matches(geometry) and algorithm.computes(pass_, geometry):
            params = {**algorithm.defaults(pass_, geometry), **rule.params}
            return Choice(rule.algorithm, params, _reason(rule, geometry))
    raise LookupError(f"no rule for the {pass_} of {geometry}: a table must end in a rule "
                      "that always holds")


def forced(algorithm: ConvAlgorithm, pass_: Pass, geometry: Conv2dGeometry,
           params: Params | None = None) -> Choice:
    """The choice of running `algorithm` (with `params` over its defaults) when a caller asks
    for it; a ValueError if it cannot run this pass."""
    algorithm.check(pass_, geometry)
    space = algorithm.space(pass_, geometry)
    chosen = {**algorithm.defaults(pass_, geometry), **(params or {})}
    for name, value in chosen.items():
        if name not in space:
            raise ValueError(f"algorithm {algorithm.name!r} has no parameter {name!r} for "
                             f"{pass_}; it has {sorted(space) or 'none'}")
        if value not in space[name]:
            raise ValueError(f"algorithm {algorithm.name!r} cannot run {pass_} with {name}="
                             f"{value!r} on {geometry}; candidates: {tuple(space[name])}")
    return Choice(algorithm.name, chosen, "asked for by the caller", "forced")


def requested(algorithms: Mapping[str, ConvAlgorithm], pass_: Pass, geometry: Conv2dGeometry,
              algorithm: str | Choice) -> Choice:
    """What a caller's ``algorithm=`` (a name, or a `Choice` with parameters) runs: `forced`,
    after checking that `algorithms` has it."""
    name, params = ((algorithm.algorithm, algorithm.params) if isinstance(algorithm, Choice)
                    else (algorithm, None))
    if name not in algorithms:
        raise ValueError(f"algorithm must be one of {tuple(algorithms)} or None, got {name!r}")
    return forced(algorithms[name], pass_, geometry, params)


def _reason(rule: Rule, geometry: Conv2dGeometry) -> str:
    channels = (f"{geometry.in_per_group} input / {geometry.out_per_group} output channels "
                "per group")
    return f"{channels}; {' and '.join(map(str, rule.when))}: {rule.why}"
