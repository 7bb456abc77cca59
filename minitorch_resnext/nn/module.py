"""`Module` and `Parameter`: the containers every layer and model is built from.

Like PyTorch, assigning a `Parameter` or a `Module` to an attribute registers it, so
`named_parameters()` and `state_dict()` find it by its dotted path (`layer1.0.conv2.weight`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..autograd import clear_grads
from ..backend import Backend, get_backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that a `Module` registers as trainable (requires_grad by default)."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        if isinstance(data, Tensor):
            device: str | Backend = data.backend
        else:  # keep a CuPy array on the GPU
            device = "cuda" if hasattr(data, "__cuda_array_interface__") else "cpu"
        super().__init__(data, requires_grad=requires_grad, device=device)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class HookHandle:
    """What `register_forward_hook` returns: `remove()` takes the hook out again."""

    _next = 0

    def __init__(self, hooks: dict[int, Any]) -> None:
        self.hooks, self.key = hooks, HookHandle._next
        HookHandle._next += 1

    def remove(self) -> None:
        self.hooks.pop(self.key, None)


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers and models: override `forward`, call the module to run it."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", {})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.forward(*args, **kwargs)
        for hook in self.__dict__.get("_forward_hooks", {}).values():
            changed = hook(self, args, out)
            out = out if changed is None else changed
        return out

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> HookHandle:
        """Call ``hook(module, args, output)`` after every forward, like PyTorch; a hook that
        returns a value replaces the output. ``handle.remove()`` unregisters it."""
        hooks = self.__dict__.setdefault("_forward_hooks", {})
        handle = HookHandle(hooks)
        hooks[handle.key] = hook
        return handle

    # ----- registration -----------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter | Module):
            for table in (self.__dict__, params, buffers, modules):
                table.pop(name, None)
            self._non_persistent.discard(name)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(wrap it in nn.Parameter)")
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r}")
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as submodule {name!r}")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register `param` (or None, e.g. for `bias=False`) under `name`."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that is state but not trained (BN running stats); in `state_dict()` unless
        `persistent=False`."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None")
        self.__dict__.pop(name, None)
        self._modules[name] = module

    # ----- traversal --------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, depth first, each once, with dotted names."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{k}" if name else k, c) for k, c in m.named_children()]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def _named_members(self, table: str, prefix: str, recurse: bool) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        mods = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for mod_name, m in mods:
            for name, value in getattr(m, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{mod_name}.{name}" if mod_name else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True
                      ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The submodule at a dotted path, e.g. `"layer1.0.conv2"`."""
        m = self
        for part in target.split(".") if target else []:
            if part not in m._modules or m._modules[part] is None:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} ({target!r})")
            m = m._modules[part]
        return m

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call `fn` on every submodule (children first) and on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ----- modes and gradients ----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        clear_grads(self.parameters(), set_to_none)

    # ----- state ------------------------------------------------------------------------
    def _state_items(self) -> Iterator[tuple[str, Tensor]]:
        """(key, tensor) of every parameter and persistent buffer, in registration order."""
        for mod_name, m in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in m._parameters.items():
                if p is not None:
                    yield pre + name, p
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    yield pre + name, b

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of the parameters and persistent buffers as NumPy arrays, keyed like PyTorch."""
        return OrderedDict((k, np.array(t.numpy())) for k, t in self._state_items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True
                        ) -> IncompatibleKeys:
        """Copy values (NumPy arrays, Tensors or nested lists of numbers) into the parameters
        and buffers in place.

        Shapes must match, and nothing is changed unless every value fits. With `strict`,
        missing and unexpected keys are errors too; otherwise they are returned as
        `(missing_keys, unexpected_keys)`.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected state_dict to be a dict of names to "
                            f"arrays, got {type(state_dict).__name__}")
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        values = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            try:
                values[k] = value = _as_numpy(state_dict[k])
            except (TypeError, ValueError) as e:  # e.g. a ragged list
                problems.append(f"{k}: cannot be read as an array ({e})")
                continue
            if value.dtype.kind not in "biuf":
                problems.append(f"{k}: expected numbers, got {_describe(state_dict[k], value)}")
            elif value.shape != t.shape:
                problems.append(f"size mismatch for {k}: checkpoint has shape {value.shape}, "
                                f"the model has {t.shape}")
        if strict:
            if missing:
                problems.append("missing keys: " + ", ".join(missing))
            if unexpected:
                problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        for k, value in values.items():
            t = own[k]
            t.data[...] = t.backend.asarray(value, dtype=t.dtype)
            t._bump_version()
        return IncompatibleKeys(missing, unexpected)

    # ----- device and dtype -------------------------------------------------------------
    def to(self, target: str | Backend | Any) -> Module:
        """Move parameters and buffers (and their grads) to a device, or cast the floating
        ones to a dtype; in place, returns self."""
        if isinstance(target, Backend) or (isinstance(target, str) and
                                           target.split(":")[0] in ("cpu", "cuda")):
            backend = get_backend(target)

            def convert(t: Tensor) -> None:
                if t.backend is not backend:
                    t.data = backend.asarray(t.backend.to_numpy(t.data)
                                             if backend.name == "cpu" else t.data)
                    t.backend = backend
        else:
            dtype = np.dtype(target)
            if dtype.kind != "f":
                raise TypeError(f"Module.to: can only cast to a floating dtype, got {dtype}")

            def convert(t: Tensor) -> None:
                if t.dtype.kind == "f":
                    t.data = t.data.astype(dtype)

        for t in [*self.parameters(), *self.buffers()]:
            convert(t)
            if t.grad is not None:
                convert(t.grad)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    # ----- printing ---------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ")" if not lines else head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))


def _as_numpy(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def _describe(value: Any, array: np.ndarray) -> str:
    """What a state-dict value that is not numbers is, for an error message."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {array.dtype}"
    return f"{type(value).__name__} {value!r}"[:80]
