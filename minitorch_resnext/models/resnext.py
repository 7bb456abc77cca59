"""ResNet / ResNeXt with torchvision's module structure, and the paper's three block forms.

A ResNeXt bottleneck with cardinality C and bottleneck width d aggregates C transformations
1x1 (in -> d) -> 3x3 (d -> d) -> 1x1 (d -> out). Figure 3 of the paper (Xie et al., 2017)
gives three equivalent ways to write it:

- (a) `SplitBottleneck`: C separate paths, outputs summed;
- (b) `ConcatBottleneck`: C paths up to the 3x3, concatenated, then one 1x1 (C*d -> out);
- (c) `Bottleneck`: one 1x1 (in -> C*d), one 3x3 with groups=C, one 1x1 (torchvision's).

Each conv is followed by BN (and ReLU, except the last); the last BN comes after the
aggregation (footnote 6), so with per-channel BN the three forms compute the same function,
and `convert_block` moves weights (and BN statistics) between them exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import functional as F
from ..nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    Module,
    ModuleList,
    ReLU,
    Sequential,
    init,
)
from ..tensor import Tensor


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    """1x1 convolution without bias."""
    return Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def bottleneck_width(planes: int, base_width: int, groups: int) -> int:
    """Channels of the grouped 3x3: torchvision's `int(planes * (base_width / 64.)) * groups`,
    i.e. C paths of d = planes * base_width / 64 channels each."""
    return int(planes * (base_width / 64.0)) * groups


class _BottleneckBase(Module):
    """What the three forms share: hyper-parameters, bn3 after the aggregation, the shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int,
                 base_width: int) -> None:
        super().__init__()
        self.inplanes, self.planes, self.stride = inplanes, planes, stride
        self.groups, self.base_width = groups, base_width
        self.width = bottleneck_width(planes, base_width, groups)
        if groups < 1 or self.width < 1:
            raise ValueError(f"bottleneck: need groups >= 1 and paths at least 1 channel wide, "
                             f"got groups={groups}, planes={planes}, base_width={base_width}")

    @property
    def out_planes(self) -> int:
        return self.planes * self.expansion

    def extra_repr(self) -> str:
        d = self.width // self.groups
        return f"{self.inplanes} -> {self.out_planes}, C={self.groups}, d={d}, stride={self.stride}"


class Bottleneck(_BottleneckBase):
    """Figure 3(c): one grouped 3x3 convolution. torchvision's `Bottleneck` (keys conv1, bn1,
    conv2, bn2, conv3, bn3, downsample), stride on the 3x3."""

    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))  # nn.utils.fuse_conv_bn

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64) -> None:
        super().__init__(inplanes, planes, stride, groups, base_width)
        width = self.width
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = conv1x1(width, self.out_planes)
        self.bn3 = BatchNorm2d(self.out_planes)
        self.relu = ReLU()
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)  # split: 1x1, in -> C*d (C paths of d channels)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)  # transform: 3x3 with groups=C, each path on its own d channels
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)  # merge: 1x1, C*d -> out, the sum over the paths
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        return self.relu(out + identity)


def _path(inplanes: int, d: int, stride: int) -> list[Module]:
    """One path up to its 3x3: 1x1 (in -> d), BN, ReLU, 3x3 (d -> d), BN, ReLU."""
    return [conv1x1(inplanes, d), BatchNorm2d(d), ReLU(), conv3x3(d, d, stride),
            BatchNorm2d(d), ReLU()]


class SplitBottleneck(_BottleneckBase):
    """Figure 3(a): C separate paths 1x1 -> 3x3 -> 1x1 (keys `paths.i.0` ... `paths.i.6`),
    summed, then bn3."""

    # grouped-form layer -> (index inside a path, axis along which the paths stack)
    path_layers = {"conv1": ("0", 0), "bn1": ("1", 0), "conv2": ("3", 0), "bn2": ("4", 0),
                   "conv3": ("6", 1)}

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64) -> None:
        super().__init__(inplanes, planes, stride, groups, base_width)
        d = self.width // groups
        self.paths = ModuleList(
            Sequential(*_path(inplanes, d, stride), conv1x1(d, self.out_planes))
            for _ in range(groups)
        )
        self.bn3 = BatchNorm2d(self.out_planes)
        self.relu = ReLU()
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.paths[0](x)
        for path in list(self.paths)[1:]:  # aggregate: the sum of the C transformations
            out = out + path(x)
        out = self.bn3(out)
        return self.relu(out + identity)


class ConcatBottleneck(_BottleneckBase):
    """Figure 3(b): C paths 1x1 -> 3x3 (keys `paths.i.0` ... `paths.i.4`), concatenated, then
    one 1x1 `conv3` (C*d -> out) and bn3."""

    path_layers = {"conv1": ("0", 0), "bn1": ("1", 0), "conv2": ("3", 0), "bn2": ("4", 0)}
    conv_bn_pairs = (("conv3", "bn3"),)  # nn.utils.fuse_conv_bn

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64) -> None:
        super().__init__(inplanes, planes, stride, groups, base_width)
        d = self.width // groups
        self.paths = ModuleList(Sequential(*_path(inplanes, d, stride)) for _ in range(groups))
        self.conv3 = conv1x1(self.width, self.out_planes)
        self.bn3 = BatchNorm2d(self.out_planes)
        self.relu = ReLU()
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.cat([path(x) for path in self.paths], dim=1)  # early concatenation, C*d
        out = self.bn3(self.conv3(out))  # one 1x1 over all paths
        return self.relu(out + identity)


BLOCK_FORMS: dict[str, type[_BottleneckBase]] = {
    "split": SplitBottleneck, "a": SplitBottleneck,
    "concat": ConcatBottleneck, "b": ConcatBottleneck,
    "grouped": Bottleneck, "c": Bottleneck,
}


def _block_class(form: str | type[_BottleneckBase]) -> type[_BottleneckBase]:
    if isinstance(form, type) and issubclass(form, _BottleneckBase):
        return form
    if form not in BLOCK_FORMS:
        raise ValueError(f"unknown block form {form!r}; use one of {sorted(BLOCK_FORMS)}")
    return BLOCK_FORMS[form]


def grouped_state(block: _BottleneckBase) -> OrderedDict[str, np.ndarray]:
    """The block's weights and BN statistics in the grouped form's (torchvision) keys."""
    state = block.state_dict()
    if isinstance(block, Bottleneck):
        return state
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for layer, (index, axis) in block.path_layers.items():
        head = f"paths.0.{index}."
        for key in [k for k in state if k.startswith(head)]:
            suffix = key[len(head):]
            parts = [state[f"paths.{i}.{index}.{suffix}"] for i in range(block.groups)]
            # num_batches_tracked is a scalar, the same on every path
            out[f"{layer}.{suffix}"] = parts[0] if parts[0].ndim == 0 else np.concatenate(parts,
                                                                                         axis)
    out.update((k, v) for k, v in state.items() if not k.startswith("paths."))
    return out


def load_grouped_state(block: _BottleneckBase, state: dict[str, np.ndarray]) -> None:
    """Load weights given in the grouped form's keys into a block of any form."""
    if isinstance(block, Bottleneck):
        block.load_state_dict(state)
        return
    mapped = {}
    for key, value in state.items():
        layer, _, suffix = key.partition(".")
        if layer not in block.path_layers:
            mapped[key] = value
            continue
        index, axis = block.path_layers[layer]
        parts = ([value] * block.groups if np.ndim(value) == 0
                 else np.split(value, block.groups, axis=axis))
        for i, part in enumerate(parts):
            mapped[f"paths.{i}.{index}.{suffix}"] = part
    block.load_state_dict(mapped)


def convert_block(block: _BottleneckBase, form: str | type[_BottleneckBase]) -> _BottleneckBase:
    """A new block of another form ('split'/'a', 'concat'/'b', 'grouped'/'c') computing the
    same function: same weights, BN statistics, mode, dtype and device."""
    cls = _block_class(form)
    downsample = None
    if block.downsample is not None:
        downsample = _downsample(block.inplanes, block.out_planes, block.stride)
    new = cls(block.inplanes, block.planes, block.stride, downsample, block.groups,
              block.base_width)
    reference = next(block.parameters())
    new.to(reference.dtype).to(reference.backend)
    load_grouped_state(new, grouped_state(block))
    return new.train(block.training)


def _downsample(inplanes: int, out_planes: int, stride: int) -> Sequential:
    return Sequential(conv1x1(inplanes, out_planes, stride), BatchNorm2d(out_planes))


STEMS = ("imagenet", "cifar")


class ResNet(Module):
    """torchvision's ResNet with Bottleneck blocks, generalised.

    `layers` blocks per stage, stage i with `planes[i]` (block outputs 4x that) and stride 2
    from the second stage on; `groups` (cardinality C) and `width_per_group` (d for the first
    stage's 64 planes) make it a ResNeXt. `stem='imagenet'`: 7x7/2 conv + 3x3/2 max pool;
    `stem='cifar'`: 3x3/1 conv, no pooling (the paper's CIFAR models). `block` picks the
    block form (default the grouped one, whose keys match torchvision's).
    """

    conv_bn_pairs = (("conv1", "bn1"),)  # the stem, for nn.utils.fuse_conv_bn

    def __init__(self, layers: Sequence[int], num_classes: int = 1000, groups: int = 1,
                 width_per_group: int = 64, zero_init_residual: bool = False,
                 stem: str = "imagenet", in_channels: int = 3,
                 planes: Sequence[int] = (64, 128, 256, 512), stem_width: int = 64,
                 block: str | type[_BottleneckBase] = Bottleneck) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"ResNet: stem must be one of {STEMS}, got {stem!r}")
        if len(layers) != len(planes) or not layers or min(layers) < 1:
            raise ValueError(f"ResNet: need one positive block count per stage, got layers "
                             f"{tuple(layers)} for planes {tuple(planes)}")
        block_cls = _block_class(block)
        self.groups, self.base_width, self.stem = groups, width_per_group, stem
        self.in_channels, self.num_classes = in_channels, num_classes
        self.input_size = 224 if stem == "imagenet" else 32  # the size it was designed for
        if stem == "imagenet":
            self.conv1 = Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = Conv2d(in_channels, stem_width, 3, stride=1, padding=1, bias=False)
        self.bn1 = BatchNorm2d(stem_width)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else Identity()
        self.inplanes = stem_width
        for i, (blocks, p) in enumerate(zip(layers, planes)):
            stage = self._make_layer(block_cls, p, blocks, stride=1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.num_stages = len(layers)
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(self.inplanes, num_classes)

        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _BottleneckBase):
                    init.zeros_(m.bn3.weight)

    def _make_layer(self, block: type[_BottleneckBase], planes: int, blocks: int,
                    stride: int) -> Sequential:
        """One stage: `blocks` blocks of `planes` (outputs 4x that), the first with the stage's
        stride and a projection shortcut where the shape changes."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _downsample(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width)
                   for _ in range(1, blocks)]
        return Sequential(*layers)

    def stages(self) -> list[tuple[str, Sequential]]:
        """The network as the paper's Table 1 rows: conv1 (stem conv), conv2 (max pool and
        the first stage), conv3..., and the head (global average pool, fc)."""
        rows = [("conv1", Sequential(self.conv1, self.bn1, self.relu))]
        for i in range(1, self.num_stages + 1):
            layer = getattr(self, f"layer{i}")
            rows.append((f"conv{i + 1}", Sequential(self.maxpool, layer) if i == 1 else layer))
        rows.append(("pool, fc", Sequential(self.avgpool, Flatten(1), self.fc)))
        return rows

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet: expected input (N, {self.in_channels}, H, W), got shape "
                             f"{x.shape}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def convert_model(model: ResNet, form: str | type[_BottleneckBase]) -> ResNet:
    """Replace every bottleneck of `model` (in place) by the same function in another form."""
    for i in range(1, model.num_stages + 1):
        stage = getattr(model, f"layer{i}")
        for name, block in list(stage.named_children()):
            setattr(stage, name, convert_block(block, form))
    return model


# ----- depth -> blocks per stage ------------------------------------------------------------
IMAGENET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def layers_for_depth(depth: int, stem: str = "imagenet", num_stages: int = 3) -> tuple[int, ...]:
    """Blocks per stage for a depth: torchvision's table for ImageNet models; for CIFAR-style
    models equal stages of 3-layer blocks, depth = 3 * blocks * stages + 2 (29 -> 3, 3, 3)."""
    if stem == "imagenet":
        if depth not in IMAGENET_DEPTHS:
            raise ValueError(f"depth {depth} is not a bottleneck ResNet depth; use one of "
                             f"{sorted(IMAGENET_DEPTHS)} or give layers=")
        return IMAGENET_DEPTHS[depth]
    n, rest = divmod(depth - 2, 3 * num_stages)
    if rest or n < 1:
        raise ValueError(f"depth {depth} is not 3 * blocks * {num_stages} + 2 for any block "
                         f"count; give layers=")
    return (n,) * num_stages


def build_resnext(depth: int | None = None, cardinality: int = 1, base_width: int = 64,
            stem: str = "imagenet", num_classes: int = 1000, layers: Sequence[int] | None = None,
            planes: Sequence[int] | None = None, **kwargs: Any) -> ResNet:
    """General builder: give `depth` or `layers`, the cardinality C and bottleneck width d.

    ImageNet stem defaults to 4 stages of planes 64..512, the CIFAR stem to 3 of 64..256.
    Other keywords go to `ResNet` (in_channels, stem_width, zero_init_residual, block).
    """
    if planes is None:
        planes = (64, 128, 256, 512) if stem == "imagenet" else (64, 128, 256)
    if layers is None:
        if depth is None:
            raise ValueError("build_resnext: give depth= or layers=")
        layers = layers_for_depth(depth, stem, len(planes))
    elif depth is not None and depth != 3 * sum(layers) + 2:
        raise ValueError(f"build_resnext: depth {depth} disagrees with layers {tuple(layers)} "
                         f"(depth = 3 * {sum(layers)} + 2 = {3 * sum(layers) + 2})")
    return ResNet(layers, num_classes=num_classes, groups=cardinality,
                  width_per_group=base_width, stem=stem, planes=planes, **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (25,557,032 parameters), torchvision's layout."""
    return ResNet((3, 4, 6, 3), **kwargs)


def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d (25,028,904 parameters), torchvision's layout."""
    return ResNet((3, 4, 6, 3), groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d (88,791,336 parameters), torchvision's layout."""
    return ResNet((3, 4, 23, 3), groups=32, width_per_group=8, **kwargs)


def resnext101_64x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 64x4d (83,455,272 parameters), torchvision's layout."""
    return ResNet((3, 4, 23, 3), groups=64, width_per_group=4, **kwargs)


def resnext29_8x64d(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """The paper's CIFAR ResNeXt-29 8x64d: 3x3 stem, 3 stages of 3 blocks, block outputs
    256/512/1024 (34,426,698 parameters for 10 classes)."""
    return build_resnext(29, cardinality=8, base_width=64, stem="cifar", num_classes=num_classes,
                   **kwargs)


def resnext29_16x64d(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """The paper's CIFAR ResNeXt-29 16x64d (68,155,210 parameters for 10 classes)."""
    return build_resnext(29, cardinality=16, base_width=64, stem="cifar", num_classes=num_classes,
                   **kwargs)


def resnext_small(cardinality: int = 8, base_width: int = 4, num_classes: int = 10,
                  in_channels: int = 1, layers: Sequence[int] = (1, 1, 1),
                  planes: Sequence[int] = (16, 32, 64), stem_width: int = 32,
                  **kwargs: Any) -> ResNet:
    """A ResNeXt C x d for CPU training and the tutorials: CIFAR stem, stages of one block
    with outputs 64/128/256; `base_width` is d, each path's width in the first stage (the
    paper's notation), doubling per stage. The default 8x4d for single-channel 16x16 digits
    and 10 classes has 137,322 parameters."""
    per_group, rest = divmod(base_width * 64, planes[0])
    if rest:
        raise ValueError(f"resnext_small: base_width {base_width} * 64 must be a multiple of "
                         f"the first stage's planes ({planes[0]})")
    model = build_resnext(cardinality=cardinality, base_width=per_group, stem="cifar",
                    num_classes=num_classes, in_channels=in_channels, layers=layers,
                    planes=planes, stem_width=stem_width, **kwargs)
    model.input_size = 16
    return model


def block_conv_params(cardinality: int, base_width: int, inplanes: int = 256,
                      planes: int = 64) -> int:
    """Convolution parameters of one block (no BN), built by the builder: the paper's Table 2
    (a conv2 block, 256 in/out: 1x1 256 -> C*d, 3x3 with C groups, 1x1 C*d -> 256)."""
    block = Bottleneck(inplanes, planes, groups=cardinality, base_width=base_width)
    return sum(m.weight.numel() for m in block.modules() if isinstance(m, Conv2d))
