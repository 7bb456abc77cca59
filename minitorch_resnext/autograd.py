"""Reverse-mode autograd: `Function` (forward/backward side by side), the graph, `backward`.

A `Function` works on raw arrays (NumPy or CuPy, through `ctx.backend.xp`); `apply` wraps
Tensors around it and, when gradients are wanted, records a `Node`. Nodes point at their
parents' nodes (or at leaf tensors), never at intermediate tensors, so the graph keeps no
activation alive except what `ctx.save_for_backward` holds, and that is freed by `backward`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Backend
    from .tensor import Tensor

_state = threading.local()

# While a profiler runs (`minitorch_resnext.profile`), every forward and backward goes through
# profile_hook(fn, pass_name, ctx, thunk) -> thunk(); None (the default) costs one lookup per op.
profile_hook: Callable[[type[Function], str, Context, Callable[[], Any]], Any] | None = None


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _set_grad_enabled(mode: bool) -> Iterator[None]:
    previous = is_grad_enabled()
    _state.grad_enabled = mode
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Context manager (and decorator) under which no graph is recorded."""
    return _set_grad_enabled(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    return _set_grad_enabled(True)


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self, backend: Backend, needs_input_grad: tuple[bool, ...]) -> None:
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self._saved: tuple[Any, ...] | None = ()
        self.freed = False

    @property
    def xp(self) -> Any:
        return self.backend.xp

    def save_for_backward(self, *values: Any) -> None:
        self._saved = values

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        if self.freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved values were "
                "freed by the first backward. Call .backward(retain_graph=True) the first time."
            )
        return self._saved  # type: ignore[return-value]


class Node:
    """One recorded call of a Function: its context and where each input's gradient goes."""

    __slots__ = ("fn", "ctx", "parents", "shapes", "name")

    def __init__(self, fn: type[Function], ctx: Context, parents: list, shapes: list) -> None:
        self.fn = fn
        self.ctx = ctx
        # per differentiable input: a Node, a leaf Tensor, or None (no gradient needed)
        self.parents = parents
        self.shapes = shapes
        self.name = fn.__name__

    def __repr__(self) -> str:
        return f"<{self.name}Backward>"


class Function:
    """An op with `forward(ctx, *arrays, **options)` and `backward(ctx, grad) -> grads`.

    `backward` returns one gradient (or None) per positional input of `forward`. Gradients
    whose shape differs from the input's (broadcasting) are summed back to it by the engine.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **kwargs: Any) -> Tensor:
        from .tensor import Tensor

        tensors = [t for t in inputs if isinstance(t, Tensor)]
        if not tensors:
            raise TypeError(f"{cls.__name__}: expected at least one Tensor input")
        backend = tensors[0].backend
        for t in tensors[1:]:
            if t.backend is not backend:
                raise RuntimeError(
                    f"{cls.__name__}: tensors are on different devices "
                    f"({tensors[0].device} and {t.device}); move them with .to(device)"
                )
        raw = [t.data if isinstance(t, Tensor) else t for t in inputs]
        needs = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        record = is_grad_enabled() and any(needs)
        ctx = Context(backend, needs)
        if profile_hook is None:
            out = cls.forward(ctx, *raw, **kwargs)
        else:
            out = profile_hook(cls, "forward", ctx, lambda: cls.forward(ctx, *raw, **kwargs))
        backend = getattr(ctx, "out_backend", backend)  # set by ops that change device
        if not record:
            return Tensor._wrap(out, backend)
        parents = [
            (t.grad_fn if t.grad_fn is not None else t) if need else None
            for t, need in zip(inputs, needs)
        ]
        shapes = [t.shape if isinstance(t, Tensor) else None for t in inputs]
        return Tensor._wrap(out, backend, grad_fn=Node(cls, ctx, parents, shapes))


def profiled(fn: type[Function], ctx: Context, thunk: Callable[[], Any]) -> Any:
    """thunk(), the forward work of a node made outside `Function.apply` (a fused node),
    timed as `fn`'s forward while a profiler runs."""
    return thunk() if profile_hook is None else profile_hook(fn, "forward", ctx, thunk)


def _sum_to_shape(grad: Any, shape: tuple[int, ...]) -> Any:
    """Reduce a broadcast gradient back to `shape`."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=False).reshape(shape) if axes else grad.reshape(shape)


def run_backward(root: Tensor, grad: Any, retain_graph: bool = False) -> None:
    """Propagate `grad` from `root` to every leaf that requires it, in topological order.

    Iterative (no recursion limit): count each node's consumers, then release a node once
    all its consumers have sent their gradient, so each node's backward runs exactly once.
    """
    from .tensor import Tensor

    if root.grad_fn is None:
        _accumulate(root, grad)
        _run_hooks(root)
        return
    consumers: dict[int, int] = {}
    leaf_uses: dict[int, int] = {}  # leaves with hooks: gradients still to come
    stack, seen = [root.grad_fn], {id(root.grad_fn)}
    while stack:
        node = stack.pop()
        for parent in node.parents:
            if isinstance(parent, Node):
                consumers[id(parent)] = consumers.get(id(parent), 0) + 1
                if id(parent) not in seen:
                    seen.add(id(parent))
                    stack.append(parent)
            elif parent is not None and _hooks(parent):
                leaf_uses[id(parent)] = leaf_uses.get(id(parent), 0) + 1

    pending: dict[int, Any] = {id(root.grad_fn): grad}
    ready = [root.grad_fn]
    with no_grad():
        while ready:
            node = ready.pop()
            g = pending.pop(id(node))
            if profile_hook is None:
                grads = node.fn.backward(node.ctx, g)
            else:
                grads = profile_hook(node.fn, "backward", node.ctx,
                                     lambda: node.fn.backward(node.ctx, g))  # noqa: B023
            if not isinstance(grads, tuple):
                grads = (grads,)
            if not retain_graph:
                node.ctx._saved = None
                node.ctx.freed = True
            for parent, shape, pg in zip(node.parents, node.shapes, grads):
                if parent is None or pg is None:
                    continue
                pg = _sum_to_shape(pg, shape)
                if isinstance(parent, Tensor):
                    _accumulate(parent, pg)
                    if id(parent) in leaf_uses:
                        leaf_uses[id(parent)] -= 1
                        if leaf_uses[id(parent)] == 0:
                            _run_hooks(parent)
                    continue
                key = id(parent)
                pending[key] = pg if key not in pending else pending[key] + pg
                consumers[key] -= 1
                if consumers[key] == 0:
                    ready.append(parent)


def _hooks(leaf: Tensor) -> list[Callable[[Tensor], None]]:
    return leaf.__dict__.get("_post_accumulate_grad_hooks", [])


def _run_hooks(leaf: Tensor) -> None:
    """Tell `leaf`'s hooks that this backward has accumulated all of its gradient."""
    for hook in _hooks(leaf):
        hook(leaf)


def _accumulate(leaf: Tensor, grad: Any) -> None:
    from .tensor import Tensor

    if grad.dtype != leaf.data.dtype:
        grad = grad.astype(leaf.data.dtype)
    if leaf.grad is None:
        # own the buffer: the same array may have been handed to several leaves
        leaf.grad = Tensor._wrap(grad.copy(), leaf.backend)
    else:
        leaf.grad.data = leaf.grad.data + grad


def clear_grads(tensors: Iterable[Tensor], set_to_none: bool = True) -> None:
    """Drop each tensor's `.grad` (`set_to_none`) or fill it with zeros in place."""
    for t in tensors:
        if t.grad is None:
            continue
        if set_to_none:
            t.grad = None
        else:
            t.grad.data[...] = 0
