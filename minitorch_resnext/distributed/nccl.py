"""`NCCLComm`: collectives on CuPy arrays through NCCL, one GPU per rank.

The processes are started by `mpiexec` as for `MPIComm`; MPI carries NCCL's unique id from
rank 0 to the others and serves `barrier`. Each rank uses GPU `local_rank` (its index among
the ranks on its node), selected when the communicator is made, so make it before putting
anything on the GPU.

Every NCCL call goes on one communication stream, so the calls run in the order they were
issued (the same on every rank, as NCCL requires). Each call first waits for the work already
queued on the caller's current stream; `wait()` makes the current stream wait for the call,
without blocking the host.
"""

from __future__ import annotations

from typing import Any

from .comm import Communicator, ReduceOp, Work, _check_buffer, _check_op, _check_root
from .mpi import MPIComm


class _NCCLWork(Work):
    def __init__(self, event: Any, array: Any, divisor: int, cupy: Any) -> None:
        self._event = event
        self._array = array  # kept alive until the stream has used it
        self._divisor = divisor
        self._cupy = cupy
        self._done = False

    def test(self) -> bool:
        return self._done or self._event.done

    def wait(self) -> None:
        if self._done:
            return
        self._cupy.cuda.get_current_stream().wait_event(self._event)
        if self._divisor > 1:
            self._array /= self._divisor
        self._done = True


class NCCLComm(Communicator):
    """A communicator over NCCL (through `cupy.cuda.nccl`) for CuPy arrays."""

    name = "nccl"

    def __init__(self, mpi: MPIComm | None = None) -> None:
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as e:
            raise RuntimeError(
                "the nccl backend needs CuPy built with NCCL: pip install -e '.[cuda,mpi]'"
            ) from e
        self._cupy = cupy
        self._nccl = nccl
        self.mpi = MPIComm() if mpi is None else mpi
        self.rank = self.mpi.rank
        self.world_size = self.mpi.world_size
        local_rank = self.mpi.local_rank
        gpus = cupy.cuda.runtime.getDeviceCount()
        if local_rank >= gpus:
            raise RuntimeError(f"nccl: rank {self.rank} is number {local_rank} on its node, "
                               f"which has only {gpus} GPU(s); start one rank per GPU")
        self.device = local_rank
        cupy.cuda.Device(self.device).use()
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.mpi.comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(self.world_size, uid, self.rank)
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._types = {
            "float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
            "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64,
            "uint8": nccl.NCCL_UINT8, "bool": nccl.NCCL_UINT8,
        }

    @property
    def host(self) -> Communicator:
        return self.mpi

    def _type(self, array: Any, who: str) -> int:
        _check_buffer(array, "cupy", who)
        try:
            return self._types[array.dtype.name]
        except KeyError:
            raise TypeError(f"{who}: NCCL cannot reduce dtype {array.dtype}") from None

    def _launch(self, call: Any) -> Any:
        """Run `call(stream_ptr)` on the communication stream after the current stream's work;
        return the event recorded after it."""
        self._stream.wait_event(self._cupy.cuda.get_current_stream().record())
        call(self._stream.ptr)
        return self._stream.record()

    def broadcast(self, array: Any, root: int = 0) -> None:
        _check_root(root, self.world_size)
        kind = self._type(array, "NCCLComm.broadcast")
        ptr = array.data.ptr
        done = self._launch(lambda s: self.comm.bcast(ptr, array.size, kind, root, s))
        self._cupy.cuda.get_current_stream().wait_event(done)

    def iallreduce(self, array: Any, op: ReduceOp = "sum") -> Work:
        _check_op(op)
        kind = self._type(array, "NCCLComm.iallreduce")
        ptr = array.data.ptr
        done = self._launch(lambda s: self.comm.allReduce(ptr, ptr, array.size, kind,
                                                          self._nccl.NCCL_SUM, s))
        return _NCCLWork(done, array, self.world_size if op == "mean" else 1, self._cupy)

    def barrier(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()
        self._stream.synchronize()
        self.mpi.barrier()

    def describe(self) -> str:
        version = self._nccl.get_version()
        return (f"nccl {version}, each rank on the GPU numbered by its place on its node; "
                + self.mpi.describe())

    def close(self) -> None:
        self._stream.synchronize()
        self.comm.destroy()
