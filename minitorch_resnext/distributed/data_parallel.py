"""`DistributedDataParallel`: one model replica per rank, gradients averaged in buckets.

At construction rank 0's parameters and buffers are broadcast, so all replicas start equal.
The trainable parameters are grouped, in reverse registration order (about the order in which
backward produces their gradients), into buckets of at most `bucket_cap_mb` of one dtype. A
hook on each parameter counts the gradients that backward has finished; once a bucket is
complete its gradients are copied into its flat buffer and one non-blocking allreduce (mean)
starts, while backward goes on with the earlier layers. Buckets start in index order on every
rank, as MPI and NCCL need. When the last bucket has started, all are waited for and the
averaged gradients are copied back into `.grad`, so after `loss.backward()` every replica
holds the same gradients and the same optimizer step keeps the replicas identical.

`finish_gradient_sync()` completes a sync that backward left unfinished (parameters that got
no gradient count as zero) and is a no-op otherwise; trainers call it before the optimizer
step. With plain (not synchronised) batch norm the buffers of rank 0 are broadcast at each
training forward, as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..autograd import is_grad_enabled
from ..nn import Module, Parameter
from ..tensor import Tensor
from .comm import Communicator, Work, get_communicator


class _Bucket:
    """Parameters whose gradients travel in one allreduce, and its flat buffer."""

    def __init__(self, params: list[Parameter]) -> None:
        self.params = params
        self.offsets = [0]
        for p in params:
            self.offsets.append(self.offsets[-1] + p.numel())
        self.buffer = params[0].xp.empty(self.offsets[-1], dtype=params[0].dtype)
        self.pending = len(params)
        self.work: Work | None = None

    def pack(self) -> None:
        for p, lo, hi in zip(self.params, self.offsets, self.offsets[1:]):
            if p.grad is None:
                self.buffer[lo:hi] = 0
            else:
                self.buffer[lo:hi] = p.grad.data.reshape(-1)

    def unpack(self) -> None:
        for p, lo, hi in zip(self.params, self.offsets, self.offsets[1:]):
            values = self.buffer[lo:hi].reshape(p.shape)
            if p.grad is None:
                p.grad = Tensor._wrap(values.copy(), p.backend)
            else:
                p.grad.data[...] = values
                p.grad._bump_version()


def _flat_groups(tensors: Iterable[Tensor]) -> dict[tuple[str, str], list[Tensor]]:
    """Tensors grouped by (device, dtype): each group is one flat buffer."""
    groups: dict[tuple[str, str], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype.str), []).append(t)
    return groups


def broadcast_tensors(comm: Communicator, tensors: Iterable[Tensor], root: int = 0) -> None:
    """Give every rank rank `root`'s values of `tensors`, one broadcast per dtype and device."""
    for group in _flat_groups(tensors).values():
        xp = group[0].xp
        flat = xp.concatenate([t.data.reshape(-1) for t in group])
        comm.broadcast(flat, root)
        offset = 0
        for t in group:
            t.data[...] = flat[offset:offset + t.numel()].reshape(t.shape)
            t._bump_version()
            offset += t.numel()


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training over `comm` (default: `get_communicator()`).

    Call it like the module; the wrapped model is `.module` (save its `state_dict()`). Wrap a
    model once: the gradient hooks stay on its parameters. `bucket_cap_mb=0` puts each
    parameter in its own bucket.
    """

    def __init__(self, module: Module, comm: Communicator | None = None,
                 bucket_cap_mb: float = 25.0, broadcast_buffers: bool = True) -> None:
        super().__init__()
        self.module = module
        self.comm = comm if comm is not None else get_communicator()
        self.broadcast_buffers = broadcast_buffers
        broadcast_tensors(self.comm, [*module.parameters(), *module.buffers()])
        params = [p for p in module.parameters() if p.requires_grad]
        self.buckets = self._make_buckets(params[::-1], int(bucket_cap_mb * 2**20))
        self._bucket_of = {id(p): i for i, b in enumerate(self.buckets) for p in b.params}
        self._next = 0  # index of the next bucket to start
        for p in params:
            p.register_post_accumulate_grad_hook(self._grad_ready)

    @staticmethod
    def _make_buckets(params: list[Parameter], cap_bytes: int) -> list[_Bucket]:
        open_: dict[tuple[str, str], list[Parameter]] = {}
        done: list[list[Parameter]] = []
        for p in params:
            key = (p.device, p.dtype.str)
            bucket = open_.setdefault(key, [])
            if bucket and sum(q.data.nbytes for q in bucket) + p.data.nbytes > cap_bytes:
                done.append(bucket)
                bucket = open_[key] = []
            bucket.append(p)
        return [_Bucket(ps) for ps in done + list(open_.values()) if ps]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._in_progress():
            raise RuntimeError(
                "DistributedDataParallel: the previous backward left its gradient allreduce "
                "unfinished (some parameters got no gradient); call finish_gradient_sync() "
                "after backward")
        if self.broadcast_buffers and self.training and is_grad_enabled():
            buffers = list(self.module.buffers())
            if buffers and self.comm.world_size > 1:
                broadcast_tensors(self.comm, buffers)
        return self.module(*args, **kwargs)

    def _in_progress(self) -> bool:
        return self._next > 0 or any(b.pending < len(b.params) for b in self.buckets)

    def _grad_ready(self, param: Tensor) -> None:
        bucket = self.buckets[self._bucket_of[id(param)]]
        bucket.pending -= 1
        while self._next < len(self.buckets) and self.buckets[self._next].pending <= 0:
            self._start(self.buckets[self._next])
        for b in self.buckets[:self._next]:
            b.work.test()  # type: ignore[union-attr]  # lets MPI progress the started ones
        if self._next == len(self.buckets):
            self._finish()

    def _start(self, bucket: _Bucket) -> None:
        bucket.pack()
        bucket.work = self.comm.iallreduce(bucket.buffer, "mean")
        self._next += 1

    def _finish(self) -> None:
        for bucket in self.buckets:
            bucket.work.wait()  # type: ignore[union-attr]
            bucket.unpack()
            bucket.work = None
            bucket.pending = len(bucket.params)
        self._next = 0

    def finish_gradient_sync(self) -> None:
        """Complete the gradient allreduce if backward left it unfinished; else do nothing.

        Called by every rank after backward (and before the optimizer step). A rank whose
        backward gave some parameter no gradient starts the remaining buckets here; all ranks
        must have the same parameters without gradients.
        """
        if not self._in_progress():
            return
        while self._next < len(self.buckets):
            self._start(self.buckets[self._next])
        self._finish()

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{b.buffer.nbytes / 2**20:.2f}" for b in self.buckets)
        return f"world_size={self.comm.world_size}, buckets (MB)=[{sizes}]"
