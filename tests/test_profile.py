"""The profiler: what it records for a few training steps of a small ResNeXt, that its parts
add up to the step, and that it leaves nothing installed behind it."""

from __future__ import annotations

import re

import numpy as np

import minitorch_resnext as mr
from minitorch_resnext import autograd, models, nn, optim
from minitorch_resnext.backend import get_backend
from minitorch_resnext.kernels.cpu import ALGORITHMS
from minitorch_resnext.profile import Profiler, op_name

F = mr.F


def small_run(steps: int, evaluate_after: int | None = None, warmup: int = 1) -> Profiler:
    mr.manual_seed(0)
    model = models.resnext_small(cardinality=2, base_width=2, planes=(8, 8, 8), stem_width=8)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((4, 1, 8, 8), dtype=np.float32))
    y = mr.tensor(rng.integers(0, 10, 4))
    with Profiler(warmup=warmup) as profiler:
        for step in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step == evaluate_after:
                with mr.no_grad():
                    model.eval()
                    model(x)
                    model.train()
    return profiler


def test_op_names_read_like_the_functional_api():
    from minitorch_resnext.functional.normalization import BatchNorm, BatchNormReLU

    assert op_name(BatchNorm) == "batch_norm" and op_name(BatchNormReLU) == "batch_norm+relu"
    assert op_name("AdaptiveAvgPool2d") == "adaptive_avg_pool2d" and op_name("ReLU") == "relu"


def test_profile_of_training_steps():
    profiler = small_run(steps=4, evaluate_after=1)
    # 4 steps, the first is warm-up, the one after the evaluation is left out
    assert profiler.steps == 2
    per_step = {op: t.calls / profiler.steps for op, t in profiler.ops.items()}
    # 13 convolutions, each followed by batch norm; 7 of those by ReLU, fused into one node
    assert per_step[("conv2d", "forward")] == per_step[("conv2d", "backward")] == 13
    assert per_step[("batch_norm+relu", "backward")] == 7
    assert per_step[("batch_norm", "forward")] == 13 and per_step[("batch_norm", "backward")] == 6
    assert per_step[("sgd", "update")] == 1 and per_step[("cross_entropy", "forward")] == 1
    for t in profiler.ops.values():
        assert 0 <= t.kernel_seconds <= t.seconds
    in_ops = sum(t.seconds for t in profiler.ops.values())
    assert 0 < in_ops <= profiler.step_seconds <= profiler.iteration_seconds

    layers = profiler.convs
    assert list(layers)[:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert layers["layer2.0.conv2"].geometry.stride == (2, 2)
    assert layers["layer1.0.conv2"].geometry.groups == 2
    assert {a for c in layers.values() for a in c.algorithms} <= set(ALGORITHMS)
    assert all(c.seconds["forward"] > 0 and c.seconds["backward"] > 0 for c in layers.values())
    sites = [(source, consumer) for kind, source, consumer in profiler.fusions
             if kind == "batch_norm+relu"]
    assert sites[:2] == [("bn1", "relu"), ("layer1.0.bn1", "layer1.0.relu")] and len(sites) == 7

    text = profiler.report("tiny")
    step_ms = float(re.search(r"([\d.]+) ms per step", text).group(1))
    assert step_ms == round(1000 * profiler.step_seconds / 2, 1)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("op "))
    end = lines[header].index("total ms") + len("total ms")  # right-aligned column
    body = lines[header + 2:lines.index("", header)]
    totals = {line[:20].strip(): float(line[:end].split()[-1]) for line in body}
    ops = sum(ms for name, ms in totals.items() if name not in ("Python outside ops",
                                                                "step total"))
    assert abs(ops + totals["Python outside ops"] - totals["step total"]) < 0.01 * len(totals)
    assert "layer3.0.conv2" in text and "batch_norm+relu at 7 site(s)" in text


def test_the_profiler_leaves_nothing_behind():
    kernels = get_backend("cpu").kernels
    before = (nn.Module.__dict__["__call__"], optim.Optimizer.__dict__["step"],
              kernels.conv2d_forward, kernels.batch_norm_forward)
    profiler = small_run(steps=2, warmup=0)
    assert profiler.steps == 2
    assert autograd.profile_hook is None
    assert before == (nn.Module.__dict__["__call__"], optim.Optimizer.__dict__["step"],
                      kernels.conv2d_forward, kernels.batch_norm_forward)


def test_nothing_recorded_says_so():
    assert "no training step" in Profiler().report()
