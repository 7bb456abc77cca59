"""ResNet/ResNeXt builders: the paper's and torchvision's numbers, the three equivalent block
forms, gradients through a block, summaries, errors, and one full-size training step."""

from __future__ import annotations

import tracemalloc
import weakref

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import models, nn
from minitorch_resnext.cli import main
from minitorch_resnext.models import resnext as R
from minitorch_resnext.models.summary import (
    count_parameters,
    format_table,
    shape_and_macs,
    summarize,
)
from minitorch_resnext.testing import gradcheck

F = mr.F

# name: (parameters, multiply-adds in G at the model's input size, rounded as published)
REFERENCE = {
    "resnet50": (25_557_032, 4.089, 3),
    "resnext50_32x4d": (25_028_904, 4.23, 2),
    "resnext101_32x8d": (88_791_336, 16.414, 3),
    "resnext101_64x4d": (83_455_272, 15.46, 2),
    "resnext29_8x64d": (34_426_698, None, None),
    "resnext29_16x64d": (68_155_210, None, None),
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_parameter_counts_and_multiply_adds(name):
    params, gmacs, digits = REFERENCE[name]
    model = models.get_model(name)
    assert count_parameters(model) == params
    shape, macs = shape_and_macs(model, (1, 3, model.input_size, model.input_size))
    assert shape == (1, model.num_classes)
    if gmacs is not None:
        assert round(macs / 1e9, digits) == gmacs


@pytest.mark.parametrize("c, d, params", [(1, 64, 69_632), (2, 40, 69_760), (4, 24, 69_888),
                                          (8, 14, 71_456), (32, 4, 70_144)])
def test_table2_block_params_at_preserved_complexity(c, d, params):
    assert models.block_conv_params(c, d) == params


def test_torchvision_state_dict_layout():
    sd = models.resnext50_32x4d().state_dict()
    keys = list(sd)
    assert len(keys) == 320
    assert keys[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                        "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.conv1.weight": (128, 64, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3),
        "layer1.0.conv3.weight": (256, 128, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.running_var": (256,),
        "layer2.0.conv2.weight": (256, 8, 3, 3),
        "layer3.5.bn3.weight": (1024,),
        "layer4.2.conv2.weight": (1024, 32, 3, 3),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "fc.weight": (1000, 2048),
    }
    for key, shape in expected.items():
        assert sd[key].shape == shape, key
    assert "layer1.1.downsample.0.weight" not in sd
    assert sd["layer2.1.bn2.num_batches_tracked"].dtype == np.int64


def test_torchvision_init():
    mr.manual_seed(0)
    model = models.resnext_small(zero_init_residual=True)
    conv = model.layer3[0].conv1  # 1x1, 128 -> 128 channels: fan_out 128
    assert abs(conv.weight.numpy().std() / np.sqrt(2 / 128) - 1) < 0.05
    assert np.all(model.layer2[0].bn1.weight.numpy() == 1)
    assert np.all(model.layer2[0].bn1.bias.numpy() == 0)
    assert np.all(model.layer2[0].bn3.weight.numpy() == 0)  # zero_init_residual
    assert np.all(models.resnext_small().layer2[0].bn3.weight.numpy() == 1)
    mr.manual_seed(0)
    again = models.resnext_small(zero_init_residual=True).state_dict()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, again[k], err_msg=k)


def test_small_model_and_builder_by_depth():
    small = models.get_model(models.DEFAULT_MODEL)
    assert count_parameters(small) == 137_322
    assert [small.layer1[0].width // 8, small.layer3[0].width // 8] == [4, 16]  # 8x4d
    assert count_parameters(models.build_resnext(50, cardinality=32, base_width=4)) == 25_028_904
    cifar = models.build_resnext(29, cardinality=8, base_width=64, stem="cifar", num_classes=10)
    assert count_parameters(cifar) == 34_426_698
    assert models.layers_for_depth(38, stem="cifar") == (4, 4, 4)
    with pytest.raises(ValueError, match="depth 30 is not 3 \\* blocks \\* 3 \\+ 2"):
        models.layers_for_depth(30, stem="cifar")
    with pytest.raises(ValueError, match="not a bottleneck ResNet depth"):
        models.build_resnext(34)
    with pytest.raises(ValueError, match="disagrees with layers"):
        models.build_resnext(29, layers=(1, 1, 1), stem="cifar")
    with pytest.raises(ValueError, match="stem must be one of"):
        models.build_resnext(29, stem="mnist")


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnext51'; known models: resnet50, "):
        models.get_model("resnext51")


def test_bad_inputs_have_clear_errors():
    model = models.resnext_small()
    with pytest.raises(ValueError, match=r"expected input \(N, 1, H, W\), got shape \(2, 3, 16, "):
        model(mr.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="more than 1 value per channel when training"):
        model(mr.randn(1, 1, 2, 2))  # one image shrinks to 1x1 in the last stage
    model.eval()
    assert model(mr.randn(1, 1, 2, 2)).shape == (1, 10)  # fine with running statistics
    with pytest.raises(ValueError, match="input_size must be positive, got 0"):
        summarize(models.resnext29_8x64d(), input_size=0)


# ----- the three forms of Figure 3 --------------------------------------------------------
def _random_block(rng, form="grouped", stride=2):
    block = R.Bottleneck(8, 8, stride, R._downsample(8, 32, stride), groups=4, base_width=16)
    block.double()
    state = {}
    for key, value in block.state_dict().items():
        if key.endswith("running_var") or key.endswith("bn1.weight"):
            state[key] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith("num_batches_tracked"):
            state[key] = value
        else:
            state[key] = rng.standard_normal(value.shape) * 0.5
    block.load_state_dict(state)
    return R.convert_block(block, form)


@pytest.mark.parametrize("training", [True, False])
def test_three_block_forms_compute_the_same_function(training):
    rng = np.random.default_rng(0)
    grouped = _random_block(rng).train(training)
    split, concat = R.convert_block(grouped, "a"), R.convert_block(grouped, "concat")
    assert isinstance(split, R.SplitBottleneck) and isinstance(concat, R.ConcatBottleneck)
    assert len(split.paths) == 4 and split.paths[0][0].weight.shape == (2, 8, 1, 1)
    x_data = rng.standard_normal((2, 8, 5, 5))
    outs, grads = [], []
    for block in (grouped, split, concat):
        x = mr.tensor(x_data, requires_grad=True)
        y = block(x)
        (y * mr.tensor(np.linspace(-1, 1, y.numel()).reshape(y.shape))).sum().backward()
        outs.append(y.numpy())
        grads.append(x.grad.numpy())
    for out, grad in zip(outs[1:], grads[1:]):
        np.testing.assert_allclose(out, outs[0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(grad, grads[0], rtol=0, atol=1e-10)
    assert np.abs(grads[0]).max() > 1e-3  # not vacuous
    # the batch statistics were collected identically, channel by channel
    for block in (split, concat):
        for key, value in R.grouped_state(block).items():
            np.testing.assert_allclose(value, grouped.state_dict()[key], atol=1e-12, err_msg=key)


def test_conversion_round_trip_is_exact():
    rng = np.random.default_rng(1)
    grouped = _random_block(rng, stride=1)
    back = R.convert_block(R.convert_block(R.convert_block(grouped, "split"), "b"), "c")
    for key, value in grouped.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)
    with pytest.raises(ValueError, match="unknown block form 'd'"):
        R.convert_block(grouped, "d")


def test_whole_model_in_split_form_matches():
    mr.manual_seed(0)
    model = models.resnext_small(cardinality=2, base_width=2, layers=(1, 1), planes=(8, 16))
    model.double().eval()
    x = mr.randn(2, 1, 6, 6, dtype=mr.float64)
    want = model(x).numpy()
    split = models.convert_model(model, "split")
    assert isinstance(split.layer2[0], R.SplitBottleneck)
    np.testing.assert_allclose(split(x).numpy(), want, atol=1e-12)
    built = models.resnext_small(block="split")
    assert count_parameters(built) == count_parameters(models.resnext_small())


def test_gradcheck_through_a_resnext_block_in_training():
    rng = np.random.default_rng(2)
    block = R.Bottleneck(4, 2, 2, R._downsample(4, 8, 2), groups=2, base_width=64).double()
    x = mr.tensor(rng.standard_normal((2, 4, 3, 3)), requires_grad=True)
    checked = [x, block.conv2.weight, block.bn1.weight, block.downsample[0].weight]
    assert gradcheck(lambda x, *_: block(x), checked, atol=1e-6, rtol=1e-5)


# ----- summaries ----------------------------------------------------------------------------
def test_summary_shapes_agree_with_forward():
    model = models.resnext_small().eval()
    summary = summarize(model)
    x = mr.randn(1, 1, 16, 16)
    for (name, stage), row in zip(model.stages(), summary.stages):
        x = stage(x)
        assert row.output_shape == x.shape, name
    assert summary.params == count_parameters(model)
    assert summary.macs == shape_and_macs(model, (1, 1, 16, 16))[1]
    assert summary.stages[2].layout == "[1x1, 64; 3x3, 64, C=8; 1x1, 128]"


def test_table1_side_by_side():
    table = format_table(summarize(models.resnet50(), name="resnet50"),
                         summarize(models.resnext50_32x4d(), name="resnext50_32x4d"))
    assert "[1x1, 64; 3x3, 64; 1x1, 256] x 3" in table
    assert "[1x1, 128; 3x3, 128, C=32; 1x1, 256] x 3" in table
    assert "[1x1, 1024; 3x3, 1024, C=32; 1x1, 2048] x 3" in table
    assert "7x7, 64, stride 2" in table and "3x3 max pool, stride 2" in table
    total = table.splitlines()[-1]
    assert "25,557,032" in total and "4.089 G" in total
    assert "25,028,904" in total and "4.230 G" in total


def test_summary_command(capsys):
    assert main(["summary", "resnext_small", "--num-classes", "3"]) == 0
    out = capsys.readouterr().out
    assert "on 1x16x16" in out and "3-d fc" in out
    assert main(["summary", "resnet50", "--compare", "nope"]) == 1
    assert capsys.readouterr().err.startswith(
        "minitorch-resnext summary: error: unknown model 'nope'; known models:")
    with pytest.raises(SystemExit) as e:
        main(["summary", "resnext_small", "--input-size", "0"])
    assert e.value.code == 2
    assert "argument --input-size: must be a positive integer, got '0'" in capsys.readouterr().err


# ----- full size --------------------------------------------------------------------------
def _array_bytes() -> int:
    """Bytes of NumPy array data alive now (NumPy reports them in its own tracemalloc domain)."""
    arrays = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
    return sum(t.size for t in tracemalloc.take_snapshot().filter_traces([arrays]).traces)


@pytest.mark.slow
def test_resnext50_training_step_at_224_frees_its_activations():
    mr.manual_seed(0)
    model = models.resnext50_32x4d()
    grad_bytes = sum(p.numel() * 4 for p in model.parameters())
    x = mr.randn(2, 3, 224, 224)
    seen = {}
    forward = model.layer1.forward

    def spy(inp: mr.Tensor) -> mr.Tensor:
        out = forward(inp)
        seen["layer1"] = weakref.ref(out.data)
        return out

    model.layer1.forward = spy
    tracemalloc.start()
    try:
        base = _array_bytes()
        loss = F.cross_entropy(model(x), mr.tensor([3, 7]))
        held = _array_bytes() - base
        assert seen["layer1"]() is not None  # kept for the backward
        loss.backward()
        after = _array_bytes() - base
    finally:
        tracemalloc.stop()
    assert seen["layer1"]() is None  # freed by the backward while `loss` is still alive
    assert held > 150e6  # the activations were there
    assert grad_bytes <= after < grad_bytes + 1e6  # only the gradients remain
    assert np.isfinite(loss.item())
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    assert np.abs(model.layer1[0].conv2.weight.grad.numpy()).max() > 0
    assert isinstance(model.layer1, nn.Sequential)
