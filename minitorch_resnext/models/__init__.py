"""Model builders: torchvision-compatible ResNet/ResNeXt, the paper's CIFAR ResNeXt-29, small
models for CPU training, and `get_model(name)`."""

from collections.abc import Callable
from typing import Any

from ..nn import Module
from .resnext import (
    BLOCK_FORMS,
    Bottleneck,
    ConcatBottleneck,
    ResNet,
    SplitBottleneck,
    block_conv_params,
    bottleneck_width,
    build_resnext,
    convert_block,
    convert_model,
    layers_for_depth,
    resnet50,
    resnext29_8x64d,
    resnext29_16x64d,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
    resnext_small,
)

DEFAULT_MODEL = "resnext_small"

MODELS: dict[str, Callable[..., Module]] = {
    "resnet50": resnet50,
    "resnext50_32x4d": resnext50_32x4d,
    "resnext101_32x8d": resnext101_32x8d,
    "resnext101_64x4d": resnext101_64x4d,
    "resnext29_8x64d": resnext29_8x64d,
    "resnext29_16x64d": resnext29_16x64d,
    "resnext_small": resnext_small,
}


def get_model(name: str, **kwargs: Any) -> Module:
    """Build a model by name, e.g. `get_model('resnext50_32x4d', num_classes=10)`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


__all__ = [
    "BLOCK_FORMS", "Bottleneck", "DEFAULT_MODEL", "ConcatBottleneck", "MODELS", "ResNet", "SplitBottleneck",
    "block_conv_params", "bottleneck_width", "build_resnext", "convert_block", "convert_model", "get_model",
    "layers_for_depth", "resnet50", "resnext29_16x64d", "resnext29_8x64d",
    "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d", "resnext_small",
]
