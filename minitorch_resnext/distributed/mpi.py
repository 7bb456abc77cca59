"""`MPIComm`: collectives on NumPy arrays through mpi4py (`pip install -e ".[mpi]"`).

Launch with `mpiexec -n N python -m mpi4py -m minitorch_resnext ...`: the `-m mpi4py` runner
calls `MPI_Abort` when a rank raises, which ends every rank. `install_abort_hook` does the
same for scripts started without it, and names the failing rank.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys
import time
import traceback
from types import TracebackType
from typing import Any

from .comm import Communicator, ReduceOp, Work, _check_buffer, _check_op, _check_root


def _import_mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            "distributed training over MPI needs mpi4py: pip install -e '.[mpi]' "
            "(brings mpi4py and the mpich wheel with its mpiexec)"
        ) from e
    return MPI


class _MPIWork(Work):
    def __init__(self, request: Any, array: Any, divisor: int) -> None:
        self._request = request
        self._array = array
        self._divisor = divisor
        self._done = False

    def test(self) -> bool:
        return self._done or bool(self._request.Test())

    def wait(self) -> None:
        if self._done:
            return
        self._request.Wait()
        if self._divisor > 1:
            self._array /= self._divisor
        self._done = True


class MPIComm(Communicator):
    """A communicator over an mpi4py communicator (default `MPI.COMM_WORLD`)."""

    name = "mpi"

    def __init__(self, comm: Any = None) -> None:
        MPI = _import_mpi()
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        # where each rank runs: mpiexec names a dead process by PID, the logs map it to a rank
        self.processes: list[tuple[int, str]] = self.comm.allgather(
            (os.getpid(), socket.gethostname()))
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        # this rank's index among the ranks on its node (selects its GPU), and their number
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    def broadcast(self, array: Any, root: int = 0) -> None:
        _check_root(root, self.world_size)
        _check_buffer(array, "numpy", "MPIComm.broadcast")
        self.comm.Bcast(array, root=root)

    def iallreduce(self, array: Any, op: ReduceOp = "sum") -> Work:
        _check_op(op)
        _check_buffer(array, "numpy", "MPIComm.iallreduce")
        request = self.comm.Iallreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM)
        return _MPIWork(request, array, self.world_size if op == "mean" else 1)

    def allreduce(self, array: Any, op: ReduceOp = "sum") -> None:
        _check_op(op)
        _check_buffer(array, "numpy", "MPIComm.allreduce")
        self.comm.Allreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM)
        if op == "mean" and self.world_size > 1:
            array /= self.world_size

    def barrier(self) -> None:
        self.comm.Barrier()

    @property
    def library(self) -> str:
        """The MPI library's name and version."""
        return " ".join(self._MPI.Get_library_version().split()[:3])

    def describe(self) -> str:
        where = ", ".join(f"rank {r} = pid {pid} on {host}"
                          for r, (pid, host) in enumerate(self.processes))
        return f"mpi ({self.library}): {self.world_size} rank(s); {where}"

    def abort(self, code: int = 1) -> None:
        """End every rank of the job, once the launcher has this rank's last words."""
        _drain_output()
        self.comm.Abort(code)


def _drain_output(timeout: float = 2.0) -> None:
    """Flush stdout and stderr and wait (at most `timeout` seconds) until the launcher has
    read them out of their pipes: `MPI_Abort` makes mpiexec tear the job down, and what a
    rank wrote just before, still in the pipe, would be lost with it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + timeout
    for fd in (1, 2):
        while _unread_bytes(fd) and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(0.05)  # the launcher forwards what it read before it handles the abort


def _unread_bytes(fd: int) -> int:
    """Bytes written to pipe `fd` that its reader has not yet read (0 if not a pipe)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
        import fcntl
        import termios

        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ImportError):
        return 0


def check_launch(comm: MPIComm) -> None:
    """Fail when the launcher started more processes than MPI connected: an mpiexec of
    another MPI library than mpi4py's starts N separate worlds of one process each."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):  # set by MPICH's and Open MPI's mpiexec
        launched = os.environ.get(var, "")
        if launched.isdigit() and int(launched) > comm.world_size:
            raise RuntimeError(
                f"mpiexec started {launched} processes ({var}) but MPI connects "
                f"{comm.world_size}: that mpiexec belongs to another MPI library than mpi4py's "
                f"({comm.library}); use the one beside this Python: "
                f"{os.path.join(os.path.dirname(sys.executable), 'mpiexec')}")


def share_cores(ranks_on_node: int) -> int:
    """Limit this rank's Numba and BLAS threads to its share of the node's cores: the cores
    it is bound to, if mpiexec bound it, else all cores / `ranks_on_node`. Leaves the counts
    alone where NUMBA_NUM_THREADS or OMP_NUM_THREADS is set. Returns the thread count."""
    import numba

    if "NUMBA_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
        return numba.get_num_threads()
    from threadpoolctl import threadpool_limits

    cores = os.cpu_count() or 1
    bound = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    threads = bound if bound < cores else max(1, cores // ranks_on_node)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(threads)
    return threads


def install_abort_hook(comm: MPIComm) -> None:
    """On an uncaught exception, print it under this rank's name and abort the whole job.

    Without this (or `python -m mpi4py`), a failing rank waits in `MPI_Finalize` while the
    others wait in a collective, and the job hangs.
    """
    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"rank {comm.rank} of {comm.world_size} failed (pid {os.getpid()}):\n"
                         f"{text}aborting all ranks\n")
        comm.abort(1)

    sys.excepthook = hook
