"""Inference plans: a model's eval-mode forward traced once, its convolutions' epilogues fused.

    plan = inference.freeze(model, example)   # model in eval mode; example: an input batch
    logits = plan(x)                          # x of any batch size, example's other dims

`freeze` works on a copy of the model with its batch norms folded into the convolutions
(`nn.utils.fuse_conv_bn`) and records the ops of one forward under `no_grad` (every
`Function.apply` reports to `autograd.trace_hook`). The recording becomes a list of steps over
array slots, each slot freed after its last reader, and then fused:

- a ReLU whose input is a convolution's output that nothing else reads, and
- an addition of such an output to another array of its shape and dtype (a ResNet block's
  shortcut), with the ReLU after it if that is the addition's only reader,

become the convolution's epilogue (`conv2d_forward(..., residual=, relu=)`): applied while
the kernel's output tile is in the cache where the kernel can (the pointwise kernel's 1x1
convolutions), else one pass over the output in place. Unfused, the three ops write three
arrays: at batch 8 the ReLUs and additions of `resnext50_32x4d` took 9 % of its forward. The
fused epilogue adds and clamps the same float32 values in the same order, so the plan's
output equals the folded model's op-by-op forward bit for bit; `freeze` checks that on the
example and on the example plus noise (an array computed from the input outside an op would
be frozen as a constant and make the second check fail).

A plan is traced for one input shape; another batch size is traced again on first use.
Python control flow in `forward` is recorded as it ran on the example (ResNeXt has none
that depends on the data). Weights are read by reference: a plan sees in-place updates of
the folded copy's weights, not the original model's (freeze again after training).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import autograd
from .autograd import Context, Function
from .backend import Backend
from .functional.conv import Conv2d
from .functional.elementwise import Add, ReLU
from .nn import Module
from .nn.utils import fuse_conv_bn
from .tensor import Tensor

CONSTANT = -1  # a step's argument that is not a slot: kept as traced (weights, options)


@dataclass(eq=False)  # steps are told apart by identity
class Step:
    """One op of the plan: `fn`'s forward on the arrays in `slots` (CONSTANT: `constants`),
    written to slot `out`; a fused convolution also reads `residual` and applies `relu`."""

    fn: type[Function]
    backend: Backend
    slots: list[int]
    constants: list[Any]
    options: dict[str, Any]
    out: int
    residual: int | None = None
    relu: bool = False
    frees: list[int] = field(default_factory=list)  # slots last read here

    @property
    def fused(self) -> bool:
        return self.residual is not None or self.relu

    def run(self, arrays: list[Any]) -> Any:
        args = [c if s == CONSTANT else arrays[s] for s, c in zip(self.slots, self.constants)]
        if self.fused:  # Conv2d.forward's call with the epilogue
            x, w, b, geometry = args
            residual = None if self.residual is None else arrays[self.residual]
            return self.backend.conv2d_forward(x, w, b, geometry, residual=residual,
                                               relu=self.relu)
        ctx = Context(self.backend, (False,) * len(args))
        return self.backend.result(self.fn.forward(ctx, *args, **self.options))


@dataclass
class Trace:
    """The steps of one traced forward and where its output is."""

    steps: list[Step]
    output: int
    output_backend: Backend
    layouts: list[tuple[tuple[int, ...], Any]]  # each slot's (shape, dtype) when traced

    def run(self, x: Any) -> Any:
        arrays: list[Any] = [None] * len(self.layouts)
        arrays[0] = x
        for step in self.steps:
            arrays[step.out] = step.run(arrays)
            for s in step.frees:
                arrays[s] = None
        return arrays[self.output]


class Plan:
    """A frozen model: call it with a batch (a Tensor or array) for the eval-mode forward."""

    def __init__(self, model: Module, example: Tensor) -> None:
        self.model = model  # the folded copy, in eval mode
        self.dtype = example.dtype
        self.sample_shape = tuple(example.shape[1:])
        self._traces: dict[tuple[int, ...], Trace] = {}
        self._trace(example)

    @property
    def fusions(self) -> int:
        """How many convolutions of the last traced shape have a fused epilogue."""
        return sum(s.fused for s in next(reversed(self._traces.values())).steps)

    def __call__(self, x: Tensor | np.ndarray) -> Tensor:
        t = x if isinstance(x, Tensor) else Tensor(x)
        if tuple(t.shape[1:]) != self.sample_shape or t.dtype != self.dtype:
            raise ValueError(
                f"plan: input must be (batch, {', '.join(map(str, self.sample_shape))}) of "
                f"{self.dtype}, as the example was; got {tuple(t.shape)} of {t.dtype}")
        trace = self._traces.get(tuple(t.shape)) or self._trace(t)
        return Tensor._wrap(trace.run(t.data), trace.output_backend)

    def _trace(self, example: Tensor) -> Trace:
        trace, expected = _record(self.model, example)
        _fuse(trace)
        _schedule_frees(trace)
        _check(self.model, trace, example, expected)
        self._traces[tuple(example.shape)] = trace
        return trace


def freeze(model: Module, example: Tensor | np.ndarray) -> Plan:
    """The eval-mode forward of `model` (left unchanged) as a `Plan`, traced on `example`
    (a batch of the inputs it will run on; its values do not matter)."""
    if not isinstance(model, Module):
        raise TypeError(f"freeze: model must be a Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("freeze: the model must be in eval mode (call model.eval()): a "
                         "frozen forward uses the batch norms' running statistics")
    t = example if isinstance(example, Tensor) else Tensor(example)
    if t.ndim < 1 or t.shape[0] < 1:
        raise ValueError(f"freeze: example must be a batch (batch size >= 1 first), got shape "
                         f"{tuple(t.shape)}")
    return Plan(fuse_conv_bn(model), t)


def _record(model: Module, example: Tensor) -> tuple[Trace, Any]:
    """The ops of model(example) as steps, and the output they computed."""
    slot_of = {id(example.data): 0}
    layouts = [(tuple(example.shape), example.dtype)]
    steps: list[Step] = []
    alive: list[Any] = []  # every traced array stays alive, so that no id is reused

    def record(fn: type[Function], inputs: tuple[Any, ...], options: dict[str, Any],
               out: Any) -> None:
        tensors = [a for a in inputs if isinstance(a, Tensor)]
        slots = [slot_of.get(id(a.data), CONSTANT) if isinstance(a, Tensor) else CONSTANT
                 for a in inputs]
        constants = [(a.data if isinstance(a, Tensor) else a) if s == CONSTANT else None
                     for a, s in zip(inputs, slots)]
        alive.append(out)
        slot_of[id(out)] = len(layouts)
        steps.append(Step(fn, tensors[0].backend, slots, constants, dict(options), len(layouts)))
        layouts.append((tuple(out.shape), out.dtype))

    previous, autograd.trace_hook = autograd.trace_hook, record
    try:
        with autograd.no_grad():
            y = model(example)
    finally:
        autograd.trace_hook = previous
    if not isinstance(y, Tensor):
        raise TypeError(f"freeze: the model must return one Tensor, got {type(y).__name__}")
    if id(y.data) not in slot_of:
        raise ValueError("freeze: the model's output was not computed by its ops")
    return Trace(steps, slot_of[id(y.data)], y.backend, layouts), y.data


def _readers(trace: Trace) -> dict[int, list[Step]]:
    readers: dict[int, list[Step]] = {}
    for step in trace.steps:
        for s in {*step.slots, step.residual} - {CONSTANT, None}:
            readers.setdefault(s, []).append(step)
    return readers


def _epilogue_supported(backend: Backend) -> bool:
    return "relu" in inspect.signature(backend.conv2d_forward).parameters


def _fuse(trace: Trace) -> None:
    """Make single-reader ReLUs and additions after convolutions their epilogues (above)."""
    readers = _readers(trace)
    producer = {step.out: step for step in trace.steps}

    def sole_reader(slot: int) -> Step | None:
        r = readers.get(slot, [])
        return r[0] if len(r) == 1 and slot != trace.output else None

    def fusible(slot: int) -> Step | None:
        conv = producer.get(slot)
        ok = (conv is not None and conv.fn is Conv2d and not conv.fused
              and _epilogue_supported(conv.backend))
        return conv if ok else None

    removed: set[Step] = set()
    for step in list(trace.steps):
        if step in removed:
            continue
        if step.fn is ReLU and (conv := fusible(step.slots[0])) and sole_reader(conv.out):
            _absorb(trace, conv, [step], removed, relu=True)
        elif step.fn is Add and CONSTANT not in step.slots:
            a, b = step.slots
            # the later-computed convolution takes the other operand as its residual
            for own, other in sorted([(a, b), (b, a)], key=lambda p: -p[0]):
                conv = fusible(own)
                if conv is None or sole_reader(own) is not step or own == other:
                    continue
                if trace.layouts[own] != trace.layouts[other]:
                    continue
                relu = sole_reader(step.out)
                absorbed = [step] + ([relu] if relu is not None and relu.fn is ReLU else [])
                _absorb(trace, conv, absorbed, removed, relu=len(absorbed) == 2,
                        residual=other)
                break
    trace.steps = [s for s in trace.steps if s not in removed]


def _absorb(trace: Trace, conv: Step, ops: list[Step], removed: set[Step], relu: bool,
            residual: int | None = None) -> None:
    """Fold `ops` (the convolution's reader, then maybe a ReLU) into `conv`'s epilogue; the
    convolution moves to the last op's place, where its residual has been computed."""
    conv.residual, conv.relu = residual, relu
    last = ops[-1]
    for op in ops:
        removed.add(op)
    trace.steps.remove(conv)
    trace.steps.insert(trace.steps.index(last) + 1, conv)
    old = conv.out
    conv.out = last.out
    for step in trace.steps:  # no one else read the intermediate slots
        step.slots = [s if s != old else conv.out for s in step.slots]


def _schedule_frees(trace: Trace) -> None:
    """Each slot is dropped after the step that reads it last (the output is kept)."""
    last: dict[int, Step] = {}
    for step in trace.steps:
        for s in {*step.slots, step.residual} - {CONSTANT, None}:
            last[s] = step
    for step in trace.steps:
        step.frees = []
    for s, step in last.items():
        if s not in (0, trace.output):
            step.frees.append(s)


def _check(model: Module, trace: Trace, example: Tensor, expected: Any) -> None:
    """The plan's outputs equal the op-by-op forward's, bit for bit, on the example and on the
    example plus random values."""
    backend = example.backend
    noise = np.random.default_rng(0).standard_normal(example.shape).astype(example.dtype)
    other = example.data + backend.asarray(noise)  # never the example itself
    with autograd.no_grad():
        second = model(Tensor._wrap(other, backend)).data
    for x, want in ((example.data, expected), (other, second)):
        got = backend.to_numpy(trace.run(x))
        if not np.array_equal(got, backend.to_numpy(want), equal_nan=True):
            raise RuntimeError(
                "freeze: the traced plan does not reproduce the model's forward: it has an op "
                "the tracer cannot follow (an array computed outside the ops, or control flow "
                "that depends on the input)")
