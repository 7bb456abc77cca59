"""Data-parallel training over MPI (CPU, through mpi4py) or NCCL (GPU, through CuPy).

    comm = mr.distributed.init()            # under mpiexec; "auto": NCCL on cuda, else MPI
    run = mr.distributed.DataParallelRun(comm)
    forward = run.wrap(model)               # SyncBatchNorm + DistributedDataParallel
    loader = run.train_loader(dataset, batch_size, shuffle=True)  # this rank's share

Launch: `mpiexec -n 2 python -m mpi4py -m minitorch_resnext train --distributed ...`.
mpi4py and CuPy are imported only when their communicator is made.
"""

from .comm import Communicator, LocalComm, Work, get_communicator, init, set_communicator
from .data_parallel import DistributedDataParallel, broadcast_tensors
from .launch import DataParallelRun
from .loader import DistributedDataLoader, shard_indices
from .sync_batchnorm import SyncBatchNorm, SyncBatchNormFunction, convert_sync_batchnorm

__all__ = [
    "Communicator", "DataParallelRun", "DistributedDataLoader", "DistributedDataParallel", "LocalComm",
    "SyncBatchNorm", "SyncBatchNormFunction", "Work", "broadcast_tensors",
    "convert_sync_batchnorm", "get_communicator", "init", "set_communicator", "shard_indices",
]
