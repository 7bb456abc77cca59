"""Stochastic gradient descent with momentum, dampening, weight decay and Nesterov momentum."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import fusion
from ..tensor import Tensor
from .optimizer import Optimizer


class SGD(Optimizer):
    """`torch.optim.SGD`'s update rule, for each parameter p with gradient g:

        g = g + weight_decay * p
        b = g                                   (first step)
        b = momentum * b + (1 - dampening) * g  (later steps)
        g = g + momentum * b  if nesterov  else  b
        p = p - lr * g
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)
        self._plans: dict[int, Any] = {}  # id(group) -> the fused kernel's plan

    def _update_group(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if params and not self._update_fused(group, params):
            self._update_each(group, params)

    def _update_fused(self, group: dict[str, Any], params: list[Tensor]) -> bool:
        """All of `params` in one pass of the device's fused kernel; False where there is
        none (or the arrays do not suit it), or where only some parameters have buffers."""
        backend = params[0].backend
        if fusion.kernel(backend, "sgd_update", params[0].dtype) is None:
            return False
        momentum = group["momentum"]
        states = [self.state.get(p, {}) for p in params]
        have = sum("momentum_buffer" in s for s in states) if momentum != 0 else 0
        if 0 < have < len(params):
            return False
        first = momentum != 0 and have == 0
        buffers = None
        if momentum != 0:
            buffers = ([backend.xp.empty_like(p.data) for p in params] if first
                       else [s["momentum_buffer"].data for s in states])
        arrays = [p.data for p in params]
        plan = self._plans.get(id(group))
        if plan is None or not plan.matches(arrays, buffers):
            plan = self._plans[id(group)] = backend.sgd_plan(arrays, buffers)
        if plan is None:
            return False
        backend.sgd_update(plan, [p.grad.data for p in params], group["lr"], momentum,
                           group["dampening"], group["weight_decay"], group["nesterov"], first)
        for p in params:
            p._bump_version()
        if first:
            for p, buf in zip(params, buffers):
                self.state.setdefault(p, {})["momentum_buffer"] = Tensor._wrap(buf, backend)
        return True

    def _update_each(self, group: dict[str, Any], params: list[Tensor]) -> None:
        """The update rule with array ops, parameter by parameter (any device)."""
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        for p in params:
            g = p.grad.data
            if weight_decay != 0:
                g = g + weight_decay * p.data
            if momentum != 0:
                state = self.state.setdefault(p, {})
                if "momentum_buffer" not in state:
                    buf = g.copy()
                    state["momentum_buffer"] = Tensor._wrap(buf, p.backend)
                else:
                    buf = state["momentum_buffer"].data
                    buf *= momentum
                    buf += (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            p.data -= lr * g
            p._bump_version()
