"""Layers and containers with PyTorch's names (`import minitorch_resnext.nn as nn`)."""

from . import init, utils
from .container import ModuleList, Sequential
from .conv import Conv2d
from .layers import Dropout, Flatten, Identity, Linear, ReLU
from .module import Module, Parameter
from .normalization import BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Identity",
    "Linear", "MaxPool2d", "Module", "ModuleList", "Parameter", "ReLU", "Sequential", "init",
    "utils",
]
