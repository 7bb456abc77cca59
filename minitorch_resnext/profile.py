"""Where a training step's time goes: per op and pass, per convolution layer, kernels against
Python, beside the step total.

    with Profiler() as prof:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    print(prof.report())

While it runs, every forward and backward of an op goes through `autograd.profile_hook`,
every call of the device's kernels (`backend.kernels`) and every module call is timed, and
each optimizer step closes a training step. A step runs from its first op to the end of its
optimizer step; steps that evaluated a model (ops without gradients) are left out, and so
are the first `warmup` (compilation, first-touch allocations). The report averages the rest:

- op time, exclusive of nested ops, per op kind and pass, and the part of it spent in the
  device's kernels (Numba, and BLAS where a kernel calls it); the rest of an op is array
  work and Python inside it;
- Python outside ops: the step total minus the ops (module calls, building the graph, the
  autograd engine's bookkeeping, the optimizer's loop);
- each convolution layer's shapes, algorithm (`F.conv2d_algorithm`) and times;
- where a fusion happened (`fusion.announce`), by module.

Timing costs about a microsecond per op and per kernel call, a few percent of a step of the
small models.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import autograd, fusion
from .autograd import Context, Function, is_grad_enabled
from .backend import get_backend
from .bench._common import format_table
from .kernels.geometry import Conv2dGeometry
from .nn import Module
from .optim import Optimizer

# Op names for the Functions whose class name does not say it the usual way.
OP_NAMES = {"BatchNormReLU": "batch_norm+relu", "ReLU": "relu", "MatMul": "matmul (linear)",
            "PickNegative": "nll (pick)", "Conv2d": "conv2d"}


def op_name(fn: type[Function] | str) -> str:
    """`conv2d`, `batch_norm`, `relu`... for a Function class (snake case of its name)."""
    name = fn if isinstance(fn, str) else fn.__name__
    return OP_NAMES.get(name) or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@dataclass
class OpTime:
    """Totals of one (op, pass) over the kept steps."""

    calls: int = 0
    seconds: float = 0.0
    kernel_seconds: float = 0.0


@dataclass
class ConvLayer:
    """One convolution layer: its geometry, the algorithm of each pass (forward, grad_input,
    grad_weight) and totals over the kept steps."""

    geometry: Conv2dGeometry
    algorithms: tuple[str, str, str]
    seconds: dict[str, float] = field(default_factory=lambda: {"forward": 0.0, "backward": 0.0})


@dataclass
class _Frame:
    """An op being timed: seconds of the ops nested in it, and of kernels called by it."""

    children: float = 0.0
    kernels: float = 0.0


@dataclass
class _Step:
    """What one step has recorded so far."""

    ops: dict[tuple[str, str], OpTime] = field(default_factory=lambda: defaultdict(OpTime))
    convs: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(float))
    start: float | None = None
    evaluated: bool = False


class Profiler:
    """Context manager that times ops, kernels and modules of the training steps inside it
    (see the module docstring); `report()` prints the table."""

    def __init__(self, device: str = "cpu", warmup: int = 2) -> None:
        self.backend = get_backend(device)
        self.warmup = warmup
        self.ops: dict[tuple[str, str], OpTime] = defaultdict(OpTime)
        self.convs: dict[str, ConvLayer] = {}
        self.fusions: list[tuple[str, str, str]] = []  # (kind, source module, consumer module)
        self.steps = 0  # kept
        self.skipped = 0
        self.step_seconds = 0.0
        self.iteration_seconds = 0.0  # step end to step end, over the kept steps
        self._step = _Step()
        self._last_end: float | None = None
        self._stack: list[_Frame] = []
        self._paths: dict[int, str] = {}  # id(module) -> its path under the root module
        self._modules: list[str] = []  # the module calls in progress
        self._layer: dict[int, str] = {}  # id(ctx) -> module path of the op's forward
        self._undo: list[Callable[[], None]] = []

    # ----- installing and removing the hooks ------------------------------------------
    def __enter__(self) -> Profiler:
        autograd.profile_hook = self._time_op
        self._patch(Optimizer, "step", self._timed_step)
        self._patch(Module, "__call__", self._timed_module)
        kernels = self.backend.kernels
        for name in getattr(kernels, "__all__", []):
            if callable(getattr(kernels, name)) and not isinstance(getattr(kernels, name), type):
                self._patch(kernels, name, self._timed_kernel)
        listener = fusion.listening(self._fused)
        listener.__enter__()
        self._undo.append(lambda: listener.__exit__(None, None, None))
        return self

    def __exit__(self, *exc: Any) -> None:
        autograd.profile_hook = None
        while self._undo:
            self._undo.pop()()

    def _patch(self, owner: Any, name: str, make: Callable[[Callable[..., Any]], Any]) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    # ----- what the hooks record ------------------------------------------------------
    def _time_op(self, fn: type[Function], pass_name: str, ctx: Context,
                 thunk: Callable[[], Any]) -> Any:
        step = self._step
        if pass_name == "forward":
            self._layer[id(ctx)] = self._modules[-1] if self._modules else ""
            step.evaluated |= not is_grad_enabled()
        frame = _Frame()
        self._stack.append(frame)
        start = time.perf_counter()
        if step.start is None:
            step.start = start
        try:
            return thunk()
        finally:
            elapsed = time.perf_counter() - start
            self._stack.pop()
            if self._stack:
                self._stack[-1].children += elapsed
            record = step.ops[(op_name(fn), pass_name)]
            record.calls += 1
            record.seconds += elapsed - frame.children
            record.kernel_seconds += frame.kernels
            if fn.__name__ == "Conv2d":
                self._conv(ctx, pass_name, elapsed - frame.children)

    def _conv(self, ctx: Context, pass_name: str, seconds: float) -> None:
        layer = self._layer.get(id(ctx), "")
        if layer not in self.convs and pass_name == "forward":
            choices = ctx.backend.conv2d_algorithm(ctx.geometry)
            self.convs[layer] = ConvLayer(ctx.geometry, tuple(c.algorithm for _, c in choices))
        self._step.convs[(layer, pass_name)] += seconds

    def _timed_kernel(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return kernel(*args, **kwargs)
            finally:
                if self._stack:
                    self._stack[-1].kernels += time.perf_counter() - start

        return timed

    def _timed_step(self, step: Callable[..., Any]) -> Callable[..., Any]:
        def timed(optimizer: Optimizer, *args: Any, **kwargs: Any) -> Any:
            try:
                return self._time_op(type(optimizer), "update", Context(self.backend, ()),
                                     lambda: step(optimizer, *args, **kwargs))
            finally:
                self._end_step()

        return timed

    def _timed_module(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(module: Module, *args: Any, **kwargs: Any) -> Any:
            if not self._modules:  # a root module: name its submodules by their paths
                self._paths = {id(m): name for name, m in module.named_modules()}
            self._modules.append(self._paths.get(id(module), type(module).__name__))
            try:
                return call(module, *args, **kwargs)
            finally:
                self._modules.pop()

        return timed

    def _fused(self, kind: str, source: Context, fused: Context) -> None:
        site = (kind, self._layer.get(id(source), ""), self._modules[-1] if self._modules else "")
        if site not in self.fusions:
            self.fusions.append(site)

    def _end_step(self) -> None:
        now = time.perf_counter()
        step, self._step = self._step, _Step()
        self._layer.clear()
        if step.evaluated or step.start is None or self.skipped < self.warmup:
            self.skipped += not step.evaluated
            self._last_end = now
            return
        self.steps += 1
        self.step_seconds += now - step.start
        self.iteration_seconds += now - (self._last_end if self._last_end is not None
                                         else step.start)
        self._last_end = now
        for key, t in step.ops.items():
            total = self.ops[key]
            total.calls += t.calls
            total.seconds += t.seconds
            total.kernel_seconds += t.kernel_seconds
        for (layer, pass_name), seconds in step.convs.items():
            self.convs[layer].seconds[pass_name] += seconds

    # ----- the report -----------------------------------------------------------------
    def report(self, title: str = "") -> str:
        """The profile as plain-text tables (per kept step, in milliseconds)."""
        if not self.steps:
            return "profile: no training step was recorded (after the warm-up steps)"
        per = 1000.0 / self.steps
        step_ms = self.step_seconds * per
        rows, kinds = [], sorted({op for op, _ in self.ops},
                                 key=lambda op: -sum(t.seconds for (o, _), t in self.ops.items()
                                                     if o == op))
        in_ops = kernels = 0.0
        for op in kinds:
            passes = {p: t for (o, p), t in self.ops.items() if o == op}
            total = sum(t.seconds for t in passes.values()) * per
            kernel = sum(t.kernel_seconds for t in passes.values()) * per
            in_ops, kernels = in_ops + total, kernels + kernel
            rows.append([op, f"{sum(t.calls for t in passes.values()) / self.steps:g}",
                         *(_ms(passes.get(p), per) for p in ("forward", "backward", "update")),
                         f"{total:.2f}", f"{kernel:.2f}", f"{100 * total / step_ms:.1f} %"])
        outside = step_ms - in_ops
        rows.append(["Python outside ops", "", "", "", "", f"{outside:.2f}", "",
                     f"{100 * outside / step_ms:.1f} %"])
        rows.append(["step total", "", "", "", "", f"{step_ms:.2f}", f"{kernels:.2f}", "100 %"])
        skipped = f" (the first {self.warmup} left out)" if self.warmup else ""
        head = (f"{title}{': ' if title else ''}mean of {self.steps} training steps{skipped}: "
                f"{step_ms:.1f} ms per step, of which kernels "
                f"{kernels:.1f} ms ({100 * kernels / step_ms:.0f} %), other work inside ops "
                f"{in_ops - kernels:.1f} ms, Python outside ops {outside:.1f} ms; "
                f"{self.iteration_seconds * per:.1f} ms from one step's end to the next's")
        parts = [head, format_table(["op", "calls", "forward ms", "backward ms", "update ms",
                                     "total ms", "in kernels", "share"], rows,
                                    [False] + [True] * 7)]
        if self.convs:
            conv_rows = [[layer or "(no module)", "x".join(map(str, c.geometry.input_shape)),
                          "x".join(map(str, c.geometry.weight_shape)), str(c.geometry.groups),
                          "x".join(map(str, c.geometry.stride)), " / ".join(c.algorithms),
                          f"{c.seconds['forward'] * per:.2f}", f"{c.seconds['backward'] * per:.2f}"]
                         for layer, c in self.convs.items()]
            parts.append(format_table(["convolution", "input", "weight", "groups", "stride",
                                       "fwd / grad_in / grad_w", "forward ms", "backward ms"],
                                      conv_rows, [False] * 6 + [True] * 2))
        if self.fusions:
            by_kind: dict[str, list[str]] = defaultdict(list)
            for kind, source, consumer in self.fusions:
                by_kind[kind].append(f"{source or '?'} -> {consumer or '?'}")
            parts.append("fused: " + "; ".join(f"{kind} at {len(sites)} site(s): "
                                               + ", ".join(sites)
                                               for kind, sites in by_kind.items()))
        return "\n\n".join(parts)


def _ms(t: OpTime | None, per: float) -> str:
    return "" if t is None else f"{t.seconds * per:.2f}"

