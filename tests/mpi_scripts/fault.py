"""A 2-rank training job in which rank 1 fails; run by test_distributed_mpi.

`fault.py MODE OUT`: rank 0 writes a checkpoint to OUT/last.npz after every step (atomically,
as the trainer does); after STEPS_BEFORE_FAULT steps rank 1 raises (MODE "raise") or
kills itself with SIGKILL (MODE "kill"), while rank 0 goes on to the next allreduce.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

import minitorch_resnext as mr
from minitorch_resnext import checkpoint, nn, optim
from minitorch_resnext import distributed as dist

STEPS_BEFORE_FAULT = 3


def main(mode: str, out: Path) -> None:
    comm = dist.init("mpi")
    if comm.is_main:
        print(comm.describe(), flush=True)
    mr.manual_seed(0)
    model = nn.Linear(256, 256)
    ddp = dist.DistributedDataParallel(model, comm)
    opt = optim.SGD(model.parameters(), lr=0.01)
    padding = np.zeros(2**21)  # 16 MB, so that a write takes a while
    for step in range(1000):
        if comm.rank == 1 and step == STEPS_BEFORE_FAULT:
            if mode == "raise":
                raise RuntimeError("injected failure")
            os.kill(os.getpid(), signal.SIGKILL)
        opt.zero_grad()
        ddp(mr.randn(4, 256)).sum().backward()
        opt.step()
        if comm.is_main:
            checkpoint.save({"step": step, "model": model.state_dict(), "padding": padding},
                            out / "last.npz")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
