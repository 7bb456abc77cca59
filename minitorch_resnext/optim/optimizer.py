"""`Optimizer`: parameter groups, per-parameter state, `zero_grad`, `state_dict` (as in PyTorch)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from ..autograd import clear_grads, enable_grad
from ..tensor import Tensor


class Optimizer:
    """Base class: holds `param_groups` (dicts of params + hyper-parameters) and `state`.

    `state` maps a parameter to a dict of Tensors (e.g. SGD's `momentum_buffer`).
    `state_dict()` refers to parameters by their position across groups, like PyTorch,
    so it can be loaded into a fresh optimizer over the same model.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; hyper-parameters it does not set come from the defaults."""
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("optimizer can only optimize leaf tensors")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = {**self.defaults, **param_group, "params": params}
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (`set_to_none`) or fill them with zeros."""
        clear_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the parameters once; `closure` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._update_group(group)
        return loss

    def _update_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """`{"state": {index: {name: Tensor}}, "param_groups": [{..., "params": [index]}]}`."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict` (copies the values)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, "
                f"the optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        for group, saved in zip(self.param_groups, saved_groups):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    f"of the optimizer's group ({len(saved['params'])} != {len(group['params'])})"
                )
            by_index.update(zip((int(i) for i in saved["params"]), group["params"]))
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, values in state_dict["state"].items():
            p = by_index[int(i)]
            self.state[p] = {name: _like(p, v) for name, v in values.items()}


def _like(param: Tensor, value: Any) -> Tensor:
    """A copy of `value` (Tensor or array) on the parameter's device, in its dtype."""
    data = value.data if isinstance(value, Tensor) else value
    return Tensor._wrap(param.backend.asarray(data, dtype=param.dtype).copy(), param.backend)
