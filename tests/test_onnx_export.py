"""The ONNX graphs the benchmarks give ONNX Runtime: a one-node Conv against the reference, and
models exported from the module tree against this package's eval-mode forward in float64.

Needs the `onnx` package (the tests that run graphs also need `onnxruntime`); skipped without."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext import models, nn
from minitorch_resnext.kernels import reference
from minitorch_resnext.kernels.geometry import Conv2dGeometry

onnx = pytest.importorskip("onnx")
from minitorch_resnext.bench import _onnx  # noqa: E402


@pytest.fixture(scope="module")
def runtime() -> _onnx.Runtime:
    ort = pytest.importorskip("onnxruntime")
    return _onnx.Runtime(onnx, ort, threads=1)


@st.composite
def convolutions(draw: st.DrawFn) -> dict:
    """Groups, channels, a kernel up to 5x5, per-axis stride, padding and dilation, and an input
    at least as large as the dilated kernel."""
    groups, cg, og = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kernel, stride, padding, dilation, hw = [], [], [], [], []
    for _ in range(2):
        k, d = draw(st.integers(1, 5)), draw(st.integers(1, 2))
        kernel.append(k)
        dilation.append(d)
        stride.append(draw(st.integers(1, 3)))
        padding.append(draw(st.integers(0, k - 1)))
        hw.append(draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 9)))
    return {"x": (draw(st.integers(1, 3)), groups * cg, *hw), "w": (groups * og, cg, *kernel),
            "stride": tuple(stride), "padding": tuple(padding), "dilation": tuple(dilation),
            "groups": groups}


@given(convolutions())
def test_one_node_conv_matches_the_reference(runtime, cfg):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(cfg["x"], dtype=np.float32)
    w = rng.standard_normal(cfg["w"], dtype=np.float32)
    args = cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"]
    geometry = Conv2dGeometry.of(x.shape, w.shape, *args)
    expected = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, geometry)
    run = runtime.session(_onnx.conv_model(onnx, x.shape, w, expected.shape, *args))
    got = run(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def _randomize_batch_norms(model: nn.Module, rng: np.random.Generator) -> None:
    """Statistics and affine parameters far from the identity, so a wrong BatchNormalization
    (or a wrong fold of it into the convolution) shows."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data[...] = rng.normal(0.0, 0.5, c)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, c)
            m.weight.data[...] = rng.uniform(0.5, 2.0, c)
            m.bias.data[...] = rng.normal(0.0, 0.5, c)


def _check_export(runtime: _onnx.Runtime, model: nn.Module, x: np.ndarray) -> None:
    """ONNX Runtime on the exported float32 graph against this package's float64 forward."""
    model.eval()
    graph = _onnx.export(onnx, model, x.shape)
    got = runtime.session(graph)(x)
    with mr.no_grad():
        expected = model.double()(mr.tensor(x.astype(np.float64))).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@given(stem=st.sampled_from(models.resnext.STEMS), cardinality=st.integers(1, 4),
       width=st.integers(1, 4), layers=st.lists(st.integers(1, 2), min_size=1, max_size=3),
       batch=st.integers(1, 2), size=st.integers(8, 20), seed=st.integers(0, 2**16))
def test_exported_resnext_matches_the_eval_forward(runtime, stem, cardinality, width, layers, batch,
                                                   size, seed):
    planes = (8, 16, 32)[:len(layers)]  # 4 * planes outputs per stage, stride 2 from the second
    model = models.build_resnext(layers=layers, cardinality=cardinality, base_width=width * 8,
                                 stem=stem, planes=planes, stem_width=8, num_classes=5,
                                 in_channels=2)
    rng = np.random.default_rng(seed)
    _randomize_batch_norms(model, rng)
    size *= 4 if stem == "imagenet" else 1  # its stem divides the image by 4
    _check_export(runtime, model, rng.standard_normal((batch, 2, size, size), dtype=np.float32))


def test_exported_resnext50_matches_the_eval_forward(runtime):
    """The model `bench infer` times by default, on 64x64 images to keep the test short."""
    mr.manual_seed(0)
    model = models.resnext50_32x4d(num_classes=10)
    rng = np.random.default_rng(0)
    _randomize_batch_norms(model, rng)
    _check_export(runtime, model, rng.standard_normal((2, 3, 64, 64), dtype=np.float32))


def test_export_names_the_weights_and_maps_every_layer():
    model = models.resnext_small().eval()
    graph = _onnx.export(onnx, model, (1, 1, 16, 16)).graph
    ops = [n.op_type for n in graph.node]
    # stem conv, bn, relu; 3 bottlenecks of 8 layers + add + relu, 3 with a downsample (conv, bn)
    assert ops.count("Conv") == 1 + 3 * 3 + 3 and ops.count("BatchNormalization") == 1 + 3 * 3 + 3
    assert ops.count("Add") == 3 and ops[-3:] == ["GlobalAveragePool", "Flatten", "Gemm"]
    names = {t.name for t in graph.initializer}
    assert {"conv1.weight", "layer2.0.conv2.weight", "layer3.0.downsample.1.running_var",
            "fc.bias"} <= names
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 10]


@pytest.mark.parametrize("model, error, match", [
    (models.resnext_small(), ValueError, "eval"),  # still in training mode
    (models.resnext_small(block="split").eval(), TypeError, "SplitBottleneck"),
    (nn.Sequential(nn.AdaptiveAvgPool2d(2)).eval(), ValueError, r"only \(1, 1\)"),
    (nn.Sequential(nn.BatchNorm2d(1, track_running_stats=False)).eval(), ValueError, "running"),
    (nn.Sequential(nn.Flatten(2)).eval(), ValueError, "only 1..-1"),
    (nn.Sequential(nn.Dropout()).eval(), TypeError, "no ONNX form for Dropout"),
])
def test_export_refuses_what_it_cannot_express(model, error, match):
    with pytest.raises(error, match=match):
        _onnx.export(onnx, model, (1, 1, 16, 16))
