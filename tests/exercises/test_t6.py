"""Tutorial 6's exercises, checked against the optimizer, the schedules and the loss."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import minitorch_resnext as mr
from minitorch_resnext import functional as F
from minitorch_resnext import optim
from minitorch_resnext.train import make_scheduler


def parameter(values: np.ndarray) -> mr.Tensor:
    return mr.tensor(values, dtype=mr.float64, requires_grad=True)


@given(st.lists(st.integers(1, 20), max_size=4), st.sampled_from([0.1, 0.5]),
       st.floats(0.01, 1.0))
def test_step_lr_is_multistep_lr(t6, milestones, gamma, base_lr):
    sgd = optim.SGD([parameter(np.zeros(1))], lr=base_lr)
    schedule = optim.lr_scheduler.MultiStepLR(sgd, milestones, gamma)
    for epoch in range(25):
        assert np.isclose(t6.step_lr(epoch, base_lr, milestones, gamma), sgd.param_groups[0]["lr"],
                          rtol=1e-12), epoch
        schedule.step()


def test_paper_cifar_recipe(t6):
    config = t6.paper_cifar_recipe(300)
    assert (config.model, config.dataset, config.epochs, config.batch_size) == (
        "resnext29_8x64d", "cifar10", 300, 128)
    assert (config.lr, config.momentum, config.weight_decay) == (0.1, 0.9, 5e-4)
    assert (config.label_smoothing, config.warmup_epochs, config.augment) == (0.0, 0.0, True)
    assert (config.schedule, sorted(config.milestones), config.gamma) == ("multistep", [150, 225], 0.1)


def test_paper_cifar_recipe_steps_the_rate_in_the_trainer(t6):
    config = t6.paper_cifar_recipe(8)  # milestones at epochs 4 and 6
    sgd = optim.SGD([parameter(np.zeros(1))], lr=config.lr)
    schedule = make_scheduler(config, sgd, steps_per_epoch=3)
    per_epoch = []
    for _ in range(config.epochs):
        per_epoch.append(sgd.param_groups[0]["lr"])
        for _ in range(3):
            sgd.step()
            schedule.step()
    np.testing.assert_allclose(per_epoch, [0.1] * 4 + [0.01] * 2 + [0.001] * 2, rtol=1e-12)


@given(st.floats(0.0, 0.99), st.floats(0.0, 0.1), st.integers(0, 2**32 - 1))
def test_sgd_step_is_optim_sgd(t6, momentum, weight_decay, seed):
    rng = np.random.default_rng(seed)
    start, grads = rng.standard_normal(5), rng.standard_normal((3, 5))
    p = parameter(start.copy())
    sgd = optim.SGD([p], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    mine, buffer = start.copy(), None
    for g in grads:
        p.grad = mr.tensor(g, dtype=mr.float64)
        sgd.step()
        mine, buffer = t6.sgd_step(mine, g, buffer, 0.1, momentum, weight_decay)
        np.testing.assert_allclose(mine, p.numpy(), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 6), st.integers(2, 12), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_smoothed_cross_entropy_is_the_trainers_loss(t6, n, k, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits, targets = 3 * rng.standard_normal((n, k)), rng.integers(0, k, n)
    expected = F.cross_entropy(mr.tensor(logits), mr.tensor(targets), label_smoothing=smoothing)
    assert np.isclose(t6.smoothed_cross_entropy(logits, targets, smoothing), expected.item(),
                      rtol=1e-10)


@given(st.integers(2, 100), st.floats(0.0, 0.9))
def test_smoothing_floor_is_the_loss_at_the_smoothed_target(t6, k, smoothing):
    q = np.full(k, smoothing / k)
    q[0] += 1 - smoothing
    at_target = F.cross_entropy(mr.tensor(np.log(np.maximum(q, 1e-300))[None]), mr.tensor([0]),
                                label_smoothing=smoothing).item()
    floor = t6.smoothing_floor(smoothing, k)
    assert np.isclose(floor, at_target, rtol=1e-9, atol=1e-12)
    shifted = F.cross_entropy(mr.tensor(np.log(np.maximum(q, 1e-300))[None] + np.eye(k)[1]),
                              mr.tensor([0]), label_smoothing=smoothing).item()
    assert floor <= shifted + 1e-12  # any other prediction costs more


def test_smoothing_floor_of_the_default_recipe(t6):
    assert 0.49 < t6.smoothing_floor(0.1, 10) < 0.51
