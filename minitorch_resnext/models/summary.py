"""Per-stage summaries (output shape, parameters, multiply-adds), computed from shapes alone.

`shape_and_macs` runs a module's forward on the "meta" device, where tensors have shapes but
no data, and counts the multiply-adds of convolutions and linear layers as the paper and
torchvision do (a conv: output elements x in_channels / groups x kH x kW); `conv_geometries`
lists the convolutions it runs, as the CPU tuner needs them. `format_table` prints one model;
with two it puts them side by side, which for `resnet50` and `resnext50_32x4d` is the paper's
Table 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import UnionType
from typing import Any

from ..autograd import no_grad
from ..kernels.geometry import Conv2dGeometry
from ..nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    Conv2d,
    Linear,
    MaxPool2d,
    Module,
)
from ..tensor import Tensor, zeros
from .resnext import _BottleneckBase


@dataclass
class StageSummary:
    name: str
    layout: str  # the paper's notation, e.g. "[1x1, 128; 3x3, 128, C=32; 1x1, 256] x 3"
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass
class ModelSummary:
    name: str
    input_shape: tuple[int, ...]
    stages: list[StageSummary]

    @property
    def params(self) -> int:
        return sum(s.params for s in self.stages)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)


def shape_and_macs(module: Module, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """The output shape and multiply-adds of `module`'s forward on an input of `input_shape`,
    computed on the meta device (in eval mode, so that no running statistic changes)."""
    macs = 0

    def count(layer: Module, args: tuple, out: Tensor) -> None:
        nonlocal macs
        if isinstance(layer, Conv2d):
            macs += math.prod(out.shape) * layer.in_channels // layer.groups * math.prod(
                layer.kernel_size)
        else:
            macs += math.prod(out.shape) * layer.in_features

    out = _trace(module, input_shape, Conv2d | Linear, count)
    return out.shape, macs


def conv_geometries(module: Module, input_shape: tuple[int, ...]) -> list[Conv2dGeometry]:
    """The geometry of every convolution that `module`'s forward runs on an input of
    `input_shape`, in order (computed on the meta device, like `shape_and_macs`)."""
    found: list[Conv2dGeometry] = []

    def record(layer: Conv2d, args: tuple, out: Tensor) -> None:
        found.append(Conv2dGeometry.of(args[0].shape, layer.weight.shape, layer.stride,
                                       layer.padding, layer.dilation, layer.groups))

    _trace(module, input_shape, Conv2d, record)
    return found


def _trace(module: Module, input_shape: tuple[int, ...], kind: type | UnionType,
           hook: Callable[[Any, tuple, Tensor], None]) -> Tensor:
    """`module`'s output on a meta input of `input_shape` (in eval mode, restored after), with
    `hook` called after each layer of `kind`."""
    layers = [m for m in module.modules() if isinstance(m, kind)]
    handles = [layer.register_forward_hook(hook) for layer in layers]
    modes = [(m, m.training) for m in module.modules()]
    dtype = next((p.dtype for p in module.parameters()), None)
    try:
        with no_grad():
            return module.eval()(zeros(*input_shape, dtype=dtype, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes:
            m.training = training


def count_parameters(module: Module) -> int:
    """Number of trainable values (each shared parameter once)."""
    return sum(p.numel() for p in module.parameters())


def describe(module: Module) -> str:
    """A module in the paper's Table 1 notation; BN, ReLU and the like are left out."""
    parts: list[str] = []
    for text in _describe(module):
        if parts and parts[-1][0] == text:
            parts[-1][1] += 1
        else:
            parts.append([text, 1])
    return ", ".join(t if n == 1 else f"{t} x {n}" for t, n in parts)


def _describe(module: Module) -> list[str]:
    if isinstance(module, _BottleneckBase):
        c = f", C={module.groups}" if module.groups > 1 else ""
        w = module.width
        return [f"[1x1, {w}; 3x3, {w}{c}; 1x1, {module.out_planes}]"]
    if isinstance(module, Conv2d):
        (kh, kw), (s, _) = module.kernel_size, module.stride
        c = f", C={module.groups}" if module.groups > 1 else ""
        return [f"{kh}x{kw}, {module.out_channels}{c}" + (f", stride {s}" if s > 1 else "")]
    if isinstance(module, MaxPool2d | AvgPool2d):
        (kh, kw), (s, _) = module.kernel_size, module.stride
        kind = "max" if isinstance(module, MaxPool2d) else "avg"
        return [f"{kh}x{kw} {kind} pool" + (f", stride {s}" if s > 1 else "")]
    if isinstance(module, AdaptiveAvgPool2d):
        h, w = module.output_size
        return ["global average pool" if (h, w) == (1, 1) else f"adaptive avg pool {h}x{w}"]
    if isinstance(module, Linear):
        return [f"{module.out_features}-d fc"]
    return [text for child in module.children() for text in _describe(child)]


def summarize(model: Module, input_size: int | tuple[int, int] | None = None,
              in_channels: int | None = None, name: str | None = None) -> ModelSummary:
    """Stage by stage (the model's `stages()`, else its children) for one input image of
    `input_size` (default: the model's `input_size`, else 224)."""
    if input_size is None:
        input_size = getattr(model, "input_size", 224)
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    if min(h, w) < 1:
        raise ValueError(f"summarize: input_size must be positive, got {input_size}")
    channels = in_channels if in_channels is not None else getattr(model, "in_channels", 3)
    shape: tuple[int, ...] = (1, channels, h, w)
    rows = model.stages() if hasattr(model, "stages") else list(model.named_children())
    input_shape, stages = shape, []
    for stage_name, stage in rows:
        shape, macs = shape_and_macs(stage, shape)
        stages.append(StageSummary(stage_name, describe(stage), shape, count_parameters(stage),
                                   macs))
    return ModelSummary(name or type(model).__name__, input_shape, stages)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape[1:])


def _millions(n: int) -> str:
    return f"{n / 1e6:.3f} M"


def format_table(*summaries: ModelSummary) -> str:
    """A text table: per stage the output shape, then per model its layout, parameters and
    multiply-adds; totals at the bottom. Stages are matched by position."""
    if not summaries:
        raise ValueError("format_table: give at least one summary")
    if len({len(s.stages) for s in summaries}) > 1:
        raise ValueError("format_table: models with different numbers of stages cannot be "
                         "compared side by side")
    header = ["stage", "output"]
    for s in summaries:
        header += [s.name, "params", "mult-adds"]
    rows = []
    for i, first in enumerate(summaries[0].stages):
        row = [first.name, _shape(first.output_shape)]
        for s in summaries:
            st = s.stages[i]
            row += [st.layout, f"{st.params:,}", _millions(st.macs)]
        rows.append(row)
    total = ["total", ""]
    for s in summaries:
        total += ["", f"{s.params:,}",
                  f"{s.macs / 1e9:.3f} G" if s.macs >= 1e9 else _millions(s.macs)]
    rows.append(total)
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    right = {j for j, title in enumerate(header) if title in ("params", "mult-adds")}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if j in right else c.ljust(w)
                         for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

    inputs = ", ".join(f"{s.name} on {_shape(s.input_shape)}" for s in summaries)
    rule = "-" * len(line(header))
    return "\n".join([inputs, line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])
