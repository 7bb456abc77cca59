"""`Tensor`: an array on a device, plus what autograd needs (requires_grad, grad, grad_fn)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autograd import Node, VersionCounter, run_backward
from .backend import Backend, backend_of_array, get_backend

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed the generator behind `randn`, `rand`, `randint` and the layers' initialisation."""
    global _rng
    _rng = np.random.default_rng(seed)


def default_generator() -> np.random.Generator:
    """The engine's random generator (seeded by `manual_seed`)."""
    return _rng


def get_rng_state() -> dict:
    """The state of the engine's random generator, to restore with `set_rng_state`."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by `get_rng_state`."""
    _rng.bit_generator.state = state


class Tensor:
    """An n-dimensional array with reverse-mode autograd."""

    __array_priority__ = 1000  # numpy_array + tensor -> Tensor.__radd__
    _version_counter: VersionCounter | None = None  # made when first needed, shared with views

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        dtype: Any = None,
        device: str | Backend = "cpu",
    ) -> None:
        backend = get_backend(device)
        if isinstance(data, Tensor):
            data = data.data
        if dtype is None and not hasattr(data, "dtype"):
            probe = np.asarray(data)
            if probe.dtype == np.float64:
                dtype = float32  # Python floats become float32, like PyTorch
            elif probe.dtype.kind in "iu":
                dtype = int64
            elif probe.dtype.kind not in "fb":
                raise TypeError(f"tensor: cannot make a tensor from data of dtype {probe.dtype}")
        self.data = backend.asarray(data, dtype=dtype)
        self.backend = backend
        self.grad: Tensor | None = None
        self.grad_fn: Node | None = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, data: Any, backend: Backend | None = None, grad_fn: Node | None = None) -> Tensor:
        """A tensor around an existing array, no copy."""
        t = cls.__new__(cls)
        if isinstance(data, np.generic):
            data = np.asarray(data)
        t.data = data
        t.backend = backend if backend is not None else backend_of_array(data)
        t.grad = None
        t.grad_fn = grad_fn
        t._requires_grad = grad_fn is not None
        return t

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        """A leaf tensor's copy on the same device (its data and grad copied), like PyTorch's;
        the result of an op cannot be copied without its graph."""
        if self.grad_fn is not None:
            raise RuntimeError("deepcopy: only leaf tensors can be copied, not results of ops")
        t = type(self)._wrap(self.data.copy(), self.backend)
        t._requires_grad = self._requires_grad
        memo[id(self)] = t
        t.grad = None if self.grad is None else copy.deepcopy(self.grad, memo)
        return t

    # ----- properties -------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad: only floating-point tensors can require gradients, "
                f"got dtype {self.data.dtype}"
            )
        if not value and self.grad_fn is not None:
            raise RuntimeError("requires_grad: cannot turn off gradients of a non-leaf tensor")
        self._requires_grad = bool(value)

    def requires_grad_(self, value: bool = True) -> Tensor:
        self.requires_grad = value
        return self

    @property
    def _version(self) -> int:
        """In-place writes the engine has made to this tensor's memory (as PyTorch's)."""
        counter = self._version_counter
        return 0 if counter is None else counter.value

    def _counter(self) -> VersionCounter:
        if self._version_counter is None:
            self._version_counter = VersionCounter()
        return self._version_counter

    def _bump_version(self) -> None:
        """Record an in-place write to `data`: backward then refuses values saved before it."""
        self._counter().value += 1

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        return self.backend.name

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def xp(self) -> Any:
        return self.backend.xp

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def dim(self) -> int:
        return self.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        body = "..." if self.device == "meta" else np.array2string(
            self.numpy(), precision=4, separator=", ", prefix="tensor(")
        extra = "" if self.device == "cpu" else f", device='{self.device}'"
        if self.device == "meta":
            extra += f", size={self.shape}"
        if self.dtype != float32:
            extra += f", dtype={self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn={self.grad_fn!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ----- conversion -------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied from the GPU when needed)."""
        return self.backend.to_numpy(self.data)

    def item(self) -> float | int | bool:
        if self.numel() != 1:
            raise ValueError(f"item: only one-element tensors can be converted, shape is {self.shape}")
        return self.backend.to_numpy(self.data).reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    def detach(self) -> Tensor:
        """The same values, cut from the graph (shares memory, and its version counter)."""
        t = Tensor._wrap(self.data, self.backend)
        t._version_counter = self._counter()
        return t

    def to(self, target: Any) -> Tensor:
        """Move to a device ('cpu', 'cuda') or cast to a dtype; differentiable."""
        if isinstance(target, str | Backend) and not _is_dtype_name(target):
            backend = get_backend(target)
            return self if backend is self.backend else _F.to_device(self, backend)
        dtype = np.dtype(target)
        return self if dtype == self.dtype else _F.cast(self, dtype)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def float(self) -> Tensor:
        return self.to(float32)

    def double(self) -> Tensor:
        return self.to(float64)

    def long(self) -> Tensor:
        return self.to(int64)

    def contiguous(self) -> Tensor:
        return self

    # ----- autograd ---------------------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad`."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no grad_fn; "
                "create the inputs with requires_grad=True"
            )
        if grad is None:
            if self.numel() != 1:
                raise RuntimeError(
                    f"backward: grad can be implicitly created only for scalar outputs; "
                    f"this tensor has shape {self.shape}, pass grad= of that shape"
                )
            g = self.xp.ones(self.shape, dtype=self.dtype)
        else:
            g = grad.data if isinstance(grad, Tensor) else self.backend.asarray(grad, self.dtype)
            if tuple(g.shape) != self.shape:
                raise ValueError(
                    f"backward: grad has shape {tuple(g.shape)} but the tensor has {self.shape}"
                )
        run_backward(self, g, retain_graph=retain_graph)

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> None:
        """Call `hook(self)` once per backward, after that backward has accumulated all of
        this leaf's gradient into `.grad` (data-parallel training starts allreduces there)."""
        if not self.is_leaf:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors have one")
        self.__dict__.setdefault("_post_accumulate_grad_hooks", []).append(hook)

    # ----- operators (differentiable ops live in minitorch_resnext.functional) -----------
    def _lift(self, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            return other
        dtype = None
        if np.isscalar(other) and not isinstance(other, np.generic):
            if isinstance(other, bool):
                dtype = bool_
            elif self.dtype.kind == "f" or isinstance(other, int):
                dtype = self.dtype if self.dtype.kind in "fiu" else None
            else:
                dtype = float32
        return Tensor(other, dtype=dtype, device=self.backend)

    def __add__(self, o: Any) -> Tensor:
        return _F.add(self, self._lift(o))

    def __radd__(self, o: Any) -> Tensor:
        return _F.add(self._lift(o), self)

    def __sub__(self, o: Any) -> Tensor:
        return _F.sub(self, self._lift(o))

    def __rsub__(self, o: Any) -> Tensor:
        return _F.sub(self._lift(o), self)

    def __mul__(self, o: Any) -> Tensor:
        return _F.mul(self, self._lift(o))

    def __rmul__(self, o: Any) -> Tensor:
        return _F.mul(self._lift(o), self)

    def __truediv__(self, o: Any) -> Tensor:
        return _F.div(self, self._lift(o))

    def __rtruediv__(self, o: Any) -> Tensor:
        return _F.div(self._lift(o), self)

    def __pow__(self, o: Any) -> Tensor:
        return _F.pow(self, o if isinstance(o, Tensor) else o)

    def __rpow__(self, o: Any) -> Tensor:
        return _F.pow(self._lift(o), self)

    def __neg__(self) -> Tensor:
        return _F.neg(self)

    def __matmul__(self, o: Any) -> Tensor:
        return _F.matmul(self, self._lift(o))

    def __rmatmul__(self, o: Any) -> Tensor:
        return _F.matmul(self._lift(o), self)

    def __getitem__(self, index: Any) -> Tensor:
        return _F.index(self, index)

    def __eq__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _F.eq(self, self._lift(o))

    def __ne__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _F.ne(self, self._lift(o))

    def __lt__(self, o: Any) -> Tensor:
        return _F.lt(self, self._lift(o))

    def __le__(self, o: Any) -> Tensor:
        return _F.le(self, self._lift(o))

    def __gt__(self, o: Any) -> Tensor:
        return _F.gt(self, self._lift(o))

    def __ge__(self, o: Any) -> Tensor:
        return _F.ge(self, self._lift(o))

    __hash__ = object.__hash__

    @property
    def T(self) -> Tensor:
        return _F.permute(self, tuple(reversed(range(self.ndim))))

    # ops registered with method=True (F.relu -> x.relu()) are added by `functional.registry`


def as_shape(args: Sequence[Any]) -> tuple[int, ...]:
    """A shape from varargs (2, 3) or one sequence ((2, 3),), as `zeros` and `reshape` take."""
    if len(args) == 1 and isinstance(args[0], Sequence | np.ndarray):
        return tuple(int(a) for a in args[0])
    return tuple(int(a) for a in args)


def _is_dtype_name(target: Any) -> bool:
    if not isinstance(target, str):
        return False
    try:
        np.dtype(target)
    except TypeError:
        return False
    return target not in ("cpu", "cuda") and not target.startswith("cuda:")


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str = "cpu") -> Tensor:
    """A new leaf tensor holding a copy of `data` (floats default to float32)."""
    if isinstance(data, Tensor):
        data = data.data
    t = Tensor(data, requires_grad=False, dtype=dtype, device=device)
    if t.data is data:  # asarray did not copy
        t.data = t.data.copy()
    t.requires_grad = requires_grad
    return t


def _factory(values: Any, dtype: Any, device: str, requires_grad: bool) -> Tensor:
    arr = np.asarray(values, dtype=float32 if dtype is None else dtype)
    return Tensor(arr, requires_grad=requires_grad, device=device)


def zeros(*shape: Any, dtype: Any = None, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of the given shape, like torch.zeros."""
    return _factory(np.zeros(as_shape(shape)), dtype, device, requires_grad)


def ones(*shape: Any, dtype: Any = None, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    """A tensor of ones of the given shape, like torch.ones."""
    return _factory(np.ones(as_shape(shape)), dtype, device, requires_grad)


def full(shape: Sequence[int], fill_value: float, dtype: Any = None, device: str = "cpu") -> Tensor:
    """A tensor of `shape` filled with `fill_value`, like torch.full."""
    return _factory(np.full(tuple(shape), fill_value), dtype, device, False)


def randn(*shape: Any, dtype: Any = None, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the seeded generator (drawn on the CPU for every device,
    so the same seed gives the same values on CPU and GPU)."""
    return _factory(_rng.standard_normal(as_shape(shape)), dtype, device, requires_grad)


def rand(*shape: Any, dtype: Any = None, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    """A tensor of uniform samples in [0, 1) from the engine's generator, like torch.rand."""
    return _factory(_rng.random(as_shape(shape)), dtype, device, requires_grad)


def randint(low: int, high: int, size: Sequence[int], device: str = "cpu") -> Tensor:
    """A tensor of integers drawn uniformly from [low, high), like torch.randint."""
    return Tensor(_rng.integers(low, high, size=tuple(size)), dtype=int64, device=device)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None,
           device: str = "cpu") -> Tensor:
    """Evenly spaced values in [start, stop), like torch.arange (int64 for integers, else float32)."""
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is None:
        dtype = int64 if values.dtype.kind in "iu" else float32
    return Tensor(values, dtype=dtype, device=device)


def zeros_like(t: Tensor, dtype: Any = None) -> Tensor:
    """A tensor of zeros with the shape, device and (by default) dtype of `t`."""
    return Tensor._wrap(t.xp.zeros(t.shape, dtype=dtype or t.dtype), t.backend)


def ones_like(t: Tensor, dtype: Any = None) -> Tensor:
    """A tensor of ones with the shape, device and (by default) dtype of `t`."""
    return Tensor._wrap(t.xp.ones(t.shape, dtype=dtype or t.dtype), t.backend)


from . import functional as _F  # noqa: E402  (functional needs Tensor defined first)
