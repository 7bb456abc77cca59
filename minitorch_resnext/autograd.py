"""Reverse-mode autograd: `Function` (forward/backward side by side), the graph, `backward`.

A `Function` works on raw arrays (NumPy or CuPy, through `ctx.backend.xp`); `apply` wraps
Tensors around it and, when gradients are wanted, records a `Node`. Nodes point at their
parents' nodes (or at leaf tensors), never at intermediate tensors, so the graph keeps no
activation alive except what `ctx.save_for_backward` holds, and that is freed by `backward`.

In-place writes are caught like PyTorch does: every in-place write the engine makes to a
tensor's memory (an optimizer step, `load_state_dict`, an initialiser) bumps the tensor's
`VersionCounter`, which views of that memory share. `apply` notes the version of each input,
and `saved_tensors` refuses a saved value whose memory was written since. The engine writes in
place only to leaves (parameters, buffers, gradients) and through their views, so the fresh
outputs of ops, which have no counter, are not watched: that keeps the cost per op to a few
attribute lookups.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .backend import common_backend

if TYPE_CHECKING:
    from .backend import Backend
    from .tensor import Tensor

_state = threading.local()

# While a profiler runs (`minitorch_resnext.profile`), every forward and backward goes through
# profile_hook(fn, pass_name, ctx, thunk) -> thunk(); None (the default) costs one lookup per op.
profile_hook: Callable[[type[Function], str, Context, Callable[[], Any]], Any] | None = None
# While an inference plan is traced (`minitorch_resnext.inference`), every op's forward is
# reported as trace_hook(fn, inputs, options, output array) after it ran.
trace_hook: Callable[[type[Function], tuple[Any, ...], dict[str, Any], Any], None] | None = None


def is_grad_enabled() -> bool:
    """Whether ops record the graph for backward in this thread (False inside `no_grad`)."""
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
    """Context manager that turns graph recording back on (e.g. inside `no_grad`)."""
    return _set_grad_enabled(True)


class VersionCounter:
    """How many in-place writes a block of memory has had; shared by a tensor and its views."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def _memory_of(array: Any) -> Any:
    """The object owning `array`'s memory: its base for a view (NumPy and CuPy collapse
    chains of views to the owner), else the array itself."""
    base = getattr(array, "base", None)
    return array if base is None else base


class Context:
    """What a Function's forward leaves for its backward."""

    # (op name, ((counter, version at the forward, id of the memory), ...)) of the inputs
    # that may be written in place; empty when there are none
    _watched: tuple[str, tuple[tuple[VersionCounter, int, int], ...]] | tuple[()] = ()

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
        if self._watched:
            self._check_versions()
        return self._saved  # type: ignore[return-value]

    def _watch(self, name: str, tensors: list[Tensor]) -> None:
        """Note the version and the memory of each input the engine may write in place: a
        leaf or a view of one (an op's fresh output has no counter, and nothing writes it).
        Which saved value shares that memory is worked out only in the rare backward that
        finds a version changed."""
        watched: tuple[tuple[VersionCounter, int, int], ...] = ()
        for t in tensors:
            counter = t._version_counter
            if counter is None:
                if t.grad_fn is not None:
                    continue
                counter = t._counter()
            watched += ((counter, counter.value, id(_memory_of(t.data))),)
        if watched:
            self._watched = (name, watched)

    def _check_versions(self) -> None:
        name, watched = self._watched
        for counter, version, memory in watched:
            if counter.value == version:
                continue
            # ids compare safely: the input's memory and the saved values were alive together
            for i, value in enumerate(self._saved or ()):
                if id(_memory_of(value)) == memory:
                    raise RuntimeError(
                        f"one of the variables needed for gradient computation has been "
                        f"modified by an inplace operation: the value of shape "
                        f"{tuple(value.shape)} that {name} saved for its backward (argument {i} "
                        f"of save_for_backward) is at version {counter.value}; expected version "
                        f"{version}. An optimizer step, load_state_dict or an initialiser wrote "
                        "to it after the forward: call backward before changing the tensors the "
                        "forward used."
                    )


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
        backend = common_backend(cls.__name__, [t.backend for t in tensors])
        raw = [t.data if isinstance(t, Tensor) else t for t in inputs]
        needs = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        record = is_grad_enabled() and any(needs)
        ctx = Context(backend, needs)
        if profile_hook is None:
            out = cls.forward(ctx, *raw, **kwargs)
        else:
            out = profile_hook(cls, "forward", ctx, lambda: cls.forward(ctx, *raw, **kwargs))
        out = backend.result(out)
        if trace_hook is not None:
            trace_hook(cls, inputs, kwargs, out)
        backend = getattr(ctx, "out_backend", backend)  # set by ops that change device
        if not record:
            result = Tensor._wrap(out, backend)
        else:
            parents = [
                (t.grad_fn if t.grad_fn is not None else t) if need else None
                for t, need in zip(inputs, needs)
            ]
            shapes = [t.shape if isinstance(t, Tensor) else None for t in inputs]
            result = Tensor._wrap(out, backend, grad_fn=Node(cls, ctx, parents, shapes))
            if ctx._saved:
                ctx._watch(cls.__name__, tensors)
        if getattr(out, "base", None) is not None:  # a view (reshape, permute, indexing)
            _share_version(result, tensors)
        return result


def _share_version(view: Tensor, tensors: list[Tensor]) -> None:
    """Give `view` the version counter of the input whose memory it views, so that a write
    through either is seen by both."""
    memory = view.data.base
    for t in tensors:
        if (t._version_counter is not None or t.grad_fn is None) and \
                _memory_of(t.data) is memory:
            view._version_counter = t._counter()
            return


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
                node.ctx._watched = ()
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
        leaf.grad.data = leaf.backend.xp.asarray(leaf.grad.data + grad)  # 0-d: not a scalar


def clear_grads(tensors: Iterable[Tensor], set_to_none: bool = True) -> None:
    """Drop each tensor's `.grad` (`set_to_none`) or fill it with zeros in place."""
    for t in tensors:
        if t.grad is None:
            continue
        if set_to_none:
            t.grad = None
        else:
            t.grad.data[...] = 0
            t.grad._bump_version()
