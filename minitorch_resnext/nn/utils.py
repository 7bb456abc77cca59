"""Folding batch norms into the convolutions before them, for inference (PyTorch's
`torch.nn.utils.fuse_conv_bn_eval` and `fuse_conv_bn_weights`, and `fuse_conv_bn` for a whole
model, like `torch.fx.experimental.optimization.fuse`).

In eval mode a batch norm is a fixed affine map per channel, and a convolution is linear in its
weights, so the two are one convolution:

    bn(conv(x)) = conv'(x),  w' = w * s,  b' = (b - running_mean) * s + beta,
    s = gamma / sqrt(running_var + eps)                                  (per output channel)

which saves the batch norm's pass over every activation. ONNX Runtime folds every
Conv -> BatchNormalization pair of a graph the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from ..tensor import Tensor
from .container import Sequential
from .conv import Conv2d
from .layers import Identity
from .module import Module, Parameter
from .normalization import BatchNorm2d


def fuse_conv_bn_weights(conv_w: Any, conv_b: Any | None, bn_rm: Any, bn_rv: Any,
                         bn_eps: float, bn_w: Any | None, bn_b: Any | None
                         ) -> tuple[Parameter, Parameter]:
    """The weight and bias of the convolution `conv_w, conv_b` followed by a batch norm with
    running statistics `bn_rm, bn_rv` and affine `bn_w, bn_b` (None: 1 and 0), computed in
    float64 and returned in the convolution's dtype. Arrays or tensors, NumPy or CuPy."""
    w, rm, rv = (_array(a) for a in (conv_w, bn_rm, bn_rv))
    scale = 1.0 / (rv.astype("float64") + bn_eps) ** 0.5
    if bn_w is not None:
        scale = scale * _array(bn_w)
    bias = -rm * scale if conv_b is None else (_array(conv_b) - rm) * scale
    if bn_b is not None:
        bias = bias + _array(bn_b)
    fused_w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    return Parameter(fused_w.astype(w.dtype)), Parameter(bias.astype(w.dtype))


def fuse_conv_bn_eval(conv: Conv2d, bn: BatchNorm2d) -> Conv2d:
    """A copy of `conv` whose output is `bn(conv(x))` in eval mode (both modules in eval mode,
    the batch norm with running statistics and as many features as `conv` has outputs)."""
    if conv.training or bn.training:
        raise ValueError("fuse_conv_bn_eval: conv and bn must be in eval mode (call .eval()): "
                         "in training a batch norm normalises with the batch's statistics")
    if bn.running_mean is None:
        raise ValueError("fuse_conv_bn_eval: bn has no running statistics "
                         "(track_running_stats=False) to fold")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"fuse_conv_bn_eval: bn has {bn.num_features} features, conv "
                         f"{conv.out_channels} output channels")
    fused = copy.deepcopy(conv)
    fused.weight, fused.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    return fused


def fuse_conv_bn(model: Module, inplace: bool = False) -> Module:
    """`model` (a copy unless `inplace`) with every batch norm that directly follows a
    convolution folded into it and replaced by `Identity`. Found are the adjacent
    (Conv2d, BatchNorm2d) pairs of each `Sequential` and the pairs a module class lists in
    its `conv_bn_pairs` (attribute names, e.g. ("conv1", "bn1"): its forward applies the
    batch norm to the convolution's output and to nothing else). The model must be in eval
    mode; it computes the same function, up to float rounding."""
    if model.training:
        raise ValueError("fuse_conv_bn: the model must be in eval mode (call model.eval()): "
                         "in training a batch norm normalises with the batch's statistics")
    if not inplace:
        model = copy.deepcopy(model)
    for module in list(model.modules()):
        for conv_name, bn_name in list(_pairs(module)):
            children = module._modules  # replaced in place: a Sequential keeps its order
            children[conv_name] = fuse_conv_bn_eval(children[conv_name], children[bn_name])
            children[bn_name] = Identity()
    return model


def _pairs(module: Module) -> Iterator[tuple[str, str]]:
    """The (convolution, batch norm) child names of `module` to fold."""
    children = module._modules
    if isinstance(module, Sequential):
        names = list(children)
        candidates = zip(names, names[1:])
    else:
        candidates = getattr(type(module), "conv_bn_pairs", ())
    for conv_name, bn_name in candidates:
        conv, bn = children.get(conv_name), children.get(bn_name)
        if (isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d)
                and bn.running_mean is not None and bn.num_features == conv.out_channels):
            yield conv_name, bn_name


def _array(a: Any) -> Any:
    """The array of a tensor, or `a` itself."""
    return a.data if isinstance(a, Tensor) else a
