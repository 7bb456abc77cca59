"""ONNX Runtime as a baseline: one-node convolutions, and models exported from the module tree.

Graphs are built in memory with the `onnx` package (opset `OPSET`), weights as initializers:
ONNX Runtime only rewrites a convolution into its blocked NCHWc layout (MLAS's fastest CPU
kernels, see docs/concepts/kernels.md) when its weights are constants, as they are in a
deployed model. Sessions run on the CPU execution provider with every graph optimisation
(`ORT_ENABLE_ALL`: Conv+BatchNormalization and Conv+Relu fusion, the NCHWc rewrite) and the
benchmark's thread count. `onnx` and `onnxruntime` are optional (`pip install onnx
onnxruntime`, or the `bench` extra); without them `load` says why the comparison is skipped.

`export(model, input_shape)` writes the eval-mode forward of a model of this package as an ONNX
graph by walking its modules; each module type has one emitter, registered beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .. import nn
from ..models import ResNet
from ..models.resnext import Bottleneck
from ..models.summary import shape_and_macs

OPSET = 17
ONNXRT = "onnxruntime"  # the implementation's name in tables and JSON

Shape = Sequence[int]
Pair = tuple[int, int]
# (graph, module, its dotted name, input value) -> output value
Emitter = Callable[["Graph", Any, str, str], str]


@dataclass(frozen=True)
class Runtime:
    """The `onnx` and `onnxruntime` modules, and the threads every session gets."""

    onnx: ModuleType
    ort: ModuleType
    threads: int

    def session(self, model: Any) -> Callable[[np.ndarray], np.ndarray]:
        """A function running `model` (an onnx ModelProto with one input and one output) on
        the CPU execution provider; the session is created (and the graph optimised) here,
        outside any timing."""
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # timed between other engines' calls: threads spinning after a run would hold the
        # cores the next call needs (as OMP_WAIT_POLICY=PASSIVE does for the others)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]


def load(threads: int) -> tuple[Runtime | None, dict[str, Any]]:
    """ONNX Runtime set up with `threads` intra-op threads, or None and a note saying why it
    is skipped; the dict describes it for the JSON record."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return None, {"available": False,
                      "note": "onnx or onnxruntime is not installed: the comparison with ONNX Runtime "
                              "is skipped (pip install onnx onnxruntime)"}
    return Runtime(onnx, ort, threads), {
        "available": True, "version": ort.__version__, "onnx": onnx.__version__, "opset": OPSET,
        "threads": threads, "provider": "CPUExecutionProvider",
        "graph_optimization": "ORT_ENABLE_ALL", "execution_mode": "sequential"}


class Graph:
    """An ONNX graph under construction: nodes in order, initializers, fresh value names."""

    def __init__(self, onnx: ModuleType) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._ids = itertools.count()

    def constant(self, name: str, array: Any) -> str:
        """Add a float32 initializer (a NumPy array or a Tensor) and return its name."""
        values = array.numpy() if hasattr(array, "numpy") else array
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(values, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: Sequence[str], **attributes: Any) -> str:
        """Append a node with one output and return the output's name."""
        out = f"{op}_{next(self._ids)}"
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attributes))
        return out

    def model(self, input_shape: Shape, output: str, output_shape: Shape) -> Any:
        """The finished, checked ModelProto with input `x` of `input_shape`."""
        helper, float32 = self.onnx.helper, self.onnx.TensorProto.FLOAT
        graph = helper.make_graph(
            self.nodes, "minitorch_resnext",
            [helper.make_tensor_value_info("x", float32, list(input_shape))],
            [helper.make_tensor_value_info(output, float32, list(output_shape))],
            initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="minitorch-resnext")
        self.onnx.checker.check_model(model)
        return model


def conv_attributes(kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
                    ) -> dict[str, Any]:
    """The ONNX Conv attributes of a PyTorch-style 2-D convolution (symmetric padding)."""
    return {"kernel_shape": list(kernel), "strides": list(stride), "pads": [*padding, *padding],
            "dilations": list(dilation), "group": groups}


def conv_model(onnx: ModuleType, x_shape: Shape, w: np.ndarray, y_shape: Shape, stride: Pair,
               padding: Pair, dilation: Pair, groups: int) -> Any:
    """A one-node Conv model (no bias) with the weights `w` as an initializer."""
    g = Graph(onnx)
    attributes = conv_attributes(w.shape[2:], stride, padding, dilation, groups)
    y = g.node("Conv", ["x", g.constant("w", w)], **attributes)
    return g.model(x_shape, y, y_shape)


# ----- export of a model of this package ---------------------------------------------------

_EMITTERS: dict[type, Emitter] = {}


def _emits(cls: type) -> Callable[[Emitter], Emitter]:
    def register(emitter: Emitter) -> Emitter:
        _EMITTERS[cls] = emitter
        return emitter

    return register


def export(onnx: ModuleType, model: Any, input_shape: Shape) -> Any:
    """The eval-mode forward of `model` on inputs of `input_shape` as an ONNX ModelProto.

    Supported modules: Conv2d, BatchNorm2d (with running statistics), ReLU, MaxPool2d,
    AdaptiveAvgPool2d to 1x1, Flatten from dim 1, Linear, Identity, Sequential, the grouped
    ResNeXt Bottleneck and ResNet; anything else raises a TypeError naming the module.
    """
    if model.training:
        raise ValueError("export: the graph computes inference; call model.eval() first")
    output_shape, _ = shape_and_macs(model, tuple(input_shape))  # also checks the input shape
    g = Graph(onnx)
    return g.model(input_shape, emit(g, model, "", "x"), output_shape)


def emit(g: Graph, module: Any, name: str, x: str) -> str:
    """Append the nodes computing `module(x)` (in eval mode) and return the output's name."""
    emitter = _EMITTERS.get(type(module))
    if emitter is None:
        raise TypeError(f"export: no ONNX form for {type(module).__name__} "
                        f"({name or 'the model'}); supported: "
                        f"{', '.join(sorted(c.__name__ for c in _EMITTERS))}")
    return emitter(g, module, name, x)


def _child(g: Graph, module: Any, name: str, child: str, x: str) -> str:
    return emit(g, getattr(module, child), f"{name}.{child}" if name else child, x)


@_emits(nn.Conv2d)
def _conv(g: Graph, m: nn.Conv2d, name: str, x: str) -> str:
    inputs = [x, g.constant(f"{name}.weight", m.weight)]
    if m.bias is not None:
        inputs.append(g.constant(f"{name}.bias", m.bias))
    return g.node("Conv", inputs, **conv_attributes(m.kernel_size, m.stride, m.padding, m.dilation,
                                                     m.groups))


@_emits(nn.BatchNorm2d)
def _batch_norm(g: Graph, m: nn.BatchNorm2d, name: str, x: str) -> str:
    if m.running_mean is None:
        raise ValueError(f"export: {name} has no running statistics (track_running_stats=False), "
                         "so its eval-mode output depends on the batch")
    ones, zeros = np.ones(m.num_features, np.float32), np.zeros(m.num_features, np.float32)
    stats = {"weight": ones if m.weight is None else m.weight, "bias": zeros if m.bias is None else m.bias,
             "running_mean": m.running_mean, "running_var": m.running_var}
    return g.node("BatchNormalization", [x, *(g.constant(f"{name}.{k}", v) for k, v in stats.items())],
                  epsilon=m.eps)


@_emits(nn.ReLU)
def _relu(g: Graph, m: nn.ReLU, name: str, x: str) -> str:
    return g.node("Relu", [x])


@_emits(nn.Identity)
def _identity(g: Graph, m: nn.Identity, name: str, x: str) -> str:
    return x


@_emits(nn.MaxPool2d)
def _max_pool(g: Graph, m: nn.MaxPool2d, name: str, x: str) -> str:
    return g.node("MaxPool", [x], kernel_shape=list(m.kernel_size), strides=list(m.stride),
                  pads=[*m.padding, *m.padding])


@_emits(nn.AdaptiveAvgPool2d)
def _adaptive_avg_pool(g: Graph, m: nn.AdaptiveAvgPool2d, name: str, x: str) -> str:
    if m.output_size != (1, 1):
        raise ValueError(f"export: {name} pools to {m.output_size}; only (1, 1) "
                         "(GlobalAveragePool) is supported")
    return g.node("GlobalAveragePool", [x])


@_emits(nn.Flatten)
def _flatten(g: Graph, m: nn.Flatten, name: str, x: str) -> str:
    if (m.start_dim, m.end_dim) != (1, -1):
        raise ValueError(f"export: {name} flattens dims {m.start_dim}..{m.end_dim}; only 1..-1 "
                         "(ONNX Flatten with axis 1) is supported")
    return g.node("Flatten", [x], axis=1)


@_emits(nn.Linear)
def _linear(g: Graph, m: nn.Linear, name: str, x: str) -> str:
    inputs = [x, g.constant(f"{name}.weight", m.weight)]
    if m.bias is not None:
        inputs.append(g.constant(f"{name}.bias", m.bias))
    return g.node("Gemm", inputs, transB=1)


@_emits(nn.Sequential)
def _sequential(g: Graph, m: nn.Sequential, name: str, x: str) -> str:
    for child, _ in m.named_children():
        x = _child(g, m, name, child, x)
    return x


@_emits(Bottleneck)
def _bottleneck(g: Graph, m: Bottleneck, name: str, x: str) -> str:
    out = x
    for child in ("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"):
        out = _child(g, m, name, child, out)
    shortcut = x if m.downsample is None else _child(g, m, name, "downsample", x)
    return g.node("Relu", [g.node("Add", [out, shortcut])])


@_emits(ResNet)
def _resnet(g: Graph, m: ResNet, name: str, x: str) -> str:
    stages = [f"layer{i}" for i in range(1, m.num_stages + 1)]
    for child in ("conv1", "bn1", "relu", "maxpool", *stages, "avgpool"):
        x = _child(g, m, name, child, x)
    return _child(g, m, name, "fc", g.node("Flatten", [x], axis=1))
