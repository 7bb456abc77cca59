"""SGD against its update rule written out in NumPy; schedules against their documented rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import optim
from minitorch_resnext.kernels import reference_ops
from minitorch_resnext.optim import lr_scheduler as S

OPTIONS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.5},
    {"weight_decay": 0.1},
    {"momentum": 0.8, "weight_decay": 0.01, "nesterov": True},
    {"momentum": 0.9, "dampening": 0.2, "weight_decay": 0.05},
]


def sgd_by_hand(w, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's documented algorithm, in float64."""
    w, buf = w.astype(np.float64), None
    for g in grads:
        w, buf = reference_ops.sgd_step(w, g, buf, lr, momentum, dampening, weight_decay,
                                        nesterov)
    return w


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_sgd_matches_the_update_rule(options):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(5)]
    p = mr.tensor(w0, requires_grad=True)
    opt = optim.SGD([p], lr=0.1, **options)
    for g in grads:
        p.grad = mr.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.numpy(), sgd_by_hand(w0, grads, 0.1, **options), rtol=1e-5,
                               atol=1e-6)


def test_sgd_with_real_gradients_and_groups():
    # two groups with different rates; the loss's gradient comes from autograd
    a = mr.tensor([1.0, -2.0], requires_grad=True)
    b = mr.tensor([3.0], requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.5)
    for _ in range(3):
        opt.zero_grad()
        ((a * a).sum() + (b * b).sum()).backward()  # grad = 2 w
        opt.step()
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["momentum"] == 0.5

    def by_hand(w, lr):
        buf = None
        for _ in range(3):
            g = 2 * w
            buf = g if buf is None else 0.5 * buf + g
            w = w - lr * buf
        return w

    np.testing.assert_allclose(a.numpy(), by_hand(np.array([1.0, -2.0]), 0.1), rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), by_hand(np.array([3.0]), 0.5), rtol=1e-6)


def test_sgd_leaves_the_gradient_alone_and_skips_params_without_one():
    p, q = mr.tensor([1.0], requires_grad=True), mr.tensor([5.0], requires_grad=True)
    opt = optim.SGD([p, q], lr=1.0, weight_decay=1.0)
    p.grad = mr.tensor([2.0])
    opt.step()
    assert p.grad.item() == 2.0 and p.item() == pytest.approx(1.0 - (2.0 + 1.0))
    assert q.item() == 5.0


def test_zero_grad():
    p = mr.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = mr.tensor([3.0, 4.0])
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and p.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


def test_sgd_rejects_bad_arguments():
    p = mr.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_sgd_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4).astype(np.float32) for _ in range(6)]
    w0 = rng.standard_normal(4).astype(np.float32)

    def make():
        p = mr.tensor(w0, requires_grad=True)
        return p, optim.SGD([p], lr=0.05, momentum=0.9, nesterov=True)

    p, opt = make()
    for g in grads:
        p.grad = mr.tensor(g)
        opt.step()

    p1, opt1 = make()
    for g in grads[:3]:
        p1.grad = mr.tensor(g)
        opt1.step()
    saved = opt1.state_dict()
    assert saved["param_groups"][0]["params"] == [0]
    assert set(saved["state"]) == {0}
    p2, opt2 = make()
    p2.data[...] = p1.data
    opt2.load_state_dict(saved)
    assert opt2.state[p2]["momentum_buffer"].data is not opt1.state[p1]["momentum_buffer"].data
    for g in grads[3:]:
        p2.grad = mr.tensor(g)
        opt2.step()
    np.testing.assert_array_equal(p2.numpy(), p.numpy())


def test_load_state_dict_checks_groups():
    p = mr.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    other = optim.SGD([mr.tensor([1.0], requires_grad=True), mr.tensor([1.0], requires_grad=True)],
                      lr=0.1)
    with pytest.raises(ValueError, match="doesn't match"):
        opt.load_state_dict(other.state_dict())


# ----- schedules ------------------------------------------------------------------------------
def rates(make_scheduler, steps=12, lr=0.1):
    p = mr.tensor([0.0], requires_grad=True)
    opt = optim.SGD([p], lr=lr, momentum=0.9)
    sched = make_scheduler(opt)
    out = [sched.get_last_lr()[0]]
    for _ in range(steps):
        opt.step()
        sched.step()
        assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]
        out.append(sched.get_last_lr()[0])
    return out


def test_step_lr():
    got = rates(lambda o: S.StepLR(o, step_size=3, gamma=0.5), steps=9)
    want = [0.1 * 0.5 ** (e // 3) for e in range(10)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_multistep_lr_and_repeated_milestones():
    got = rates(lambda o: S.MultiStepLR(o, milestones=[2, 5, 5], gamma=0.1), steps=7)
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.01, 1e-4, 1e-4, 1e-4], rtol=1e-12)


def test_cosine_annealing_lr():
    T, eta_min = 8, 0.001
    got = rates(lambda o: S.CosineAnnealingLR(o, T_max=T, eta_min=eta_min), steps=T)
    want = [eta_min + (0.1 - eta_min) * (1 + math.cos(math.pi * t / T)) / 2 for t in range(T + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # these exact values are PyTorch's (recursive form), checked against torch 2.13
    assert got[:4] == [0.1, 0.0962320368593087, 0.0855017856687341, 0.06944282990207196]


def test_linear_lr_warmup():
    got = rates(lambda o: S.LinearLR(o, start_factor=0.1, total_iters=4), steps=6)
    want = [0.1 * (0.1 + 0.9 * min(e, 4) / 4) for e in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_sequential_warmup_then_cosine():
    def make(o):
        return S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=3),
                                  S.CosineAnnealingLR(o, T_max=5)], milestones=[3])

    got = rates(make, steps=8)
    want = [0.01, 0.04, 0.07] + [0.1 * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["step", "multistep", "cosine", "sequential"])
def test_scheduler_state_dict_resumes_the_same_rates(name):
    def make(o):
        if name == "step":
            return S.StepLR(o, 2, 0.5)
        if name == "multistep":
            return S.MultiStepLR(o, [3, 4])
        if name == "cosine":
            return S.CosineAnnealingLR(o, 6)
        return S.SequentialLR(o, [S.LinearLR(o, 0.2, total_iters=2), S.CosineAnnealingLR(o, 6)],
                              [2])

    full = rates(make, steps=8)

    p = mr.tensor([0.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    sched = make(opt)
    for _ in range(4):
        sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert "optimizer" not in state

    q = mr.tensor([0.0], requires_grad=True)
    opt2 = optim.SGD([q], lr=0.1)
    sched2 = make(opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    rest = []
    for _ in range(4):
        sched2.step()
        rest.append(sched2.get_last_lr()[0])
    assert rest == full[5:]
