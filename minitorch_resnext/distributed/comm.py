"""The communicator interface, its single-process implementation, and the default communicator.

A communicator connects `world_size` processes, numbered by `rank`. Every collective is called
by all ranks in the same order and works in place on one contiguous array: `broadcast` copies
rank `root`'s values to every rank; `allreduce` replaces each rank's values by the sum (or the
mean) over the ranks; `iallreduce` starts the same and returns a `Work` to `wait()` on.

Implementations: `LocalComm` (one process, no dependency), `MPIComm` (mpi4py, NumPy arrays)
and `NCCLComm` (CuPy arrays, one GPU per rank). `init()` makes one and sets it as the default
that `get_communicator()` returns (and that `SyncBatchNorm` and `DistributedDataParallel`
use when given none).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

ReduceOp = Literal["sum", "mean"]


class Work(ABC):
    """A started collective: `wait()` finishes it (idempotent); `test()` helps it progress."""

    @abstractmethod
    def wait(self) -> None: ...

    @abstractmethod
    def test(self) -> bool:
        """True once the collective has finished (`wait()` is still needed)."""


class DoneWork(Work):
    """The handle of a collective that already finished."""

    def wait(self) -> None:
        return None

    def test(self) -> bool:
        return True


class Communicator(ABC):
    """Collectives over `world_size` processes numbered by `rank`.

    Every rank calls each collective, in the same order, on a C-contiguous array that it
    updates in place. Implementations: `LocalComm`, `MPIComm`, `NCCLComm`.
    """

    name: str
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def host(self) -> Communicator:
        """The communicator for NumPy arrays (a few numbers: metrics, flags) over the same
        ranks: this one, except for NCCL, which reduces GPU arrays only."""
        return self

    @abstractmethod
    def broadcast(self, array: Any, root: int = 0) -> None:
        """Overwrite `array` on every rank with rank `root`'s values."""

    @abstractmethod
    def iallreduce(self, array: Any, op: ReduceOp = "sum") -> Work:
        """Start reducing `array` in place over the ranks; valid after `wait()`."""

    def allreduce(self, array: Any, op: ReduceOp = "sum") -> None:
        """Replace `array` on every rank by its sum (or mean) over the ranks."""
        self.iallreduce(array, op).wait()

    @abstractmethod
    def barrier(self) -> None:
        """Return once every rank has called `barrier`."""

    def describe(self) -> str:
        """One line for logs: the kind of communicator and the ranks."""
        return f"{self.name}: {self.world_size} rank(s)"

    def close(self) -> None:
        """Release resources (no collective may follow)."""
        return None


class LocalComm(Communicator):
    """World size 1: every collective is a no-op (the mean over one rank is the value)."""

    name = "local"
    rank = 0
    world_size = 1

    def broadcast(self, array: Any, root: int = 0) -> None:
        _check_root(root, 1)

    def iallreduce(self, array: Any, op: ReduceOp = "sum") -> Work:
        _check_op(op)
        return DoneWork()

    def barrier(self) -> None:
        return None


def _check_op(op: str) -> None:
    if op not in ("sum", "mean"):
        raise ValueError(f"allreduce: op must be 'sum' or 'mean', got {op!r}")


def _check_root(root: int, world_size: int) -> None:
    if not 0 <= root < world_size:
        raise ValueError(f"broadcast: root must be in [0, {world_size}), got {root}")


def _check_buffer(array: Any, xp_name: str, who: str) -> None:
    """Collectives need a C-contiguous array of the communicator's library."""
    module = type(array).__module__.split(".")[0]
    if module != xp_name:
        hint = " (GPU arrays go through NCCLComm)" if xp_name == "numpy" else ""
        raise TypeError(f"{who}: expected a {xp_name} array, got {type(array).__name__}{hint}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{who}: the array must be C-contiguous")


_default: Communicator = LocalComm()


def get_communicator() -> Communicator:
    """The communicator `init()` made (a `LocalComm` before any `init()`)."""
    return _default


def set_communicator(comm: Communicator) -> None:
    """Make `comm` the communicator that `get_communicator()` returns."""
    global _default
    _default = comm


Backend = Literal["local", "mpi", "nccl"]


def init(backend: Backend | Literal["auto"] = "auto", device: str = "cpu") -> Communicator:
    """Make the communicator for this process and set it as the default.

    `"auto"` is NCCL for a CUDA device and MPI otherwise. MPI and NCCL need the processes
    started by `mpiexec -n N python -m mpi4py ...`; started alone, MPI gives world size 1.
    NCCL selects this rank's GPU, so call `init` before putting anything on the GPU. With
    several ranks, an uncaught exception aborts the whole job (`install_abort_hook`) and each
    rank's CPU threads are limited to its share of the node's cores (`share_cores`).
    """
    if backend == "auto":
        backend = "nccl" if device.startswith("cuda") else "mpi"
    if backend == "local":
        comm: Communicator = LocalComm()
    elif backend in ("mpi", "nccl"):
        from .mpi import MPIComm, check_launch, install_abort_hook, share_cores

        mpi = MPIComm()
        check_launch(mpi)
        if mpi.world_size > 1:
            install_abort_hook(mpi)
            share_cores(mpi.local_size)
        if backend == "nccl":
            from .nccl import NCCLComm

            comm = NCCLComm(mpi)
        else:
            comm = mpi
    else:
        raise ValueError(f"init: backend must be 'auto', 'local', 'mpi' or 'nccl', got {backend!r}")
    set_communicator(comm)
    return comm
