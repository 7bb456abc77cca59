"""The occupancy model the planners weigh: blocks per SM, register budgets, waves.

A launch's blocks run in waves of (blocks per SM) x (SMs); how many blocks fit on an SM is
the least of what its registers, threads, shared memory and block slots allow, computed as
CUDA's occupancy calculator does (cuda_occupancy.h: registers are allocated per warp in
units of 256, from four sub-partitions of the register file). A kernel compiled with
``__launch_bounds__(threads, blocks)`` gets a register budget from ptxas that makes `blocks`
blocks fit; `register_budget` is that budget under this model, and
tests/test_cuda_compile.py checks every planned kernel's registers (ptxas -v) against it.
"""

from __future__ import annotations

from dataclasses import dataclass

WARP = 32


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up."""
    return -(-a // b)


def round_up(a: int, b: int) -> int:
    """a rounded up to a multiple of b."""
    return ceil_div(a, b) * b


@dataclass(frozen=True)
class Device:
    """The limits of one GPU that decide occupancy (cudaDeviceProp's names in comments)."""

    name: str
    sms: int  # multiProcessorCount
    registers_per_sm: int = 65536  # regsPerMultiprocessor
    threads_per_sm: int = 2048  # maxThreadsPerMultiProcessor
    blocks_per_sm: int = 32  # maxBlocksPerMultiProcessor
    shared_per_sm: int = 228 * 1024  # sharedMemPerMultiprocessor
    shared_reserved: int = 1024  # reservedSharedMemPerBlock
    max_registers: int = 255  # per thread
    register_unit: int = 256  # registers are allocated per warp in multiples of this
    sub_partitions: int = 4  # the register file is split between the SM's schedulers
    # float32 multiply-adds per byte of DRAM traffic one SM sustains (its balance point):
    # 128 FMA/cycle at ~1.8 GHz against 1/132 of 3.35 (H100) to 4.8 TB/s (H200)
    fma_per_byte: float = 7.0


# H100 SXM and H200 (sm_90): the device planned for when none is given, e.g. without a GPU.
HOPPER = Device("sm_90 (H100 / H200)", sms=132)


def _by_registers(device: Device, threads: int, registers: int) -> int:
    """Blocks whose registers fit one SM's register file."""
    per_warp = round_up(max(registers, 1) * WARP, device.register_unit)
    per_partition = device.registers_per_sm // device.sub_partitions
    return (per_partition // per_warp) * device.sub_partitions // ceil_div(threads, WARP)


def blocks_per_sm(device: Device, threads: int, registers: int, shared: int) -> int:
    """How many blocks of `threads` threads using `registers` registers each and `shared`
    bytes of shared memory one SM runs at once (0: the block does not fit)."""
    by_threads = device.threads_per_sm // round_up(threads, WARP)
    by_shared = device.shared_per_sm // (shared + device.shared_reserved)
    return min(_by_registers(device, threads, registers), by_threads, by_shared,
               device.blocks_per_sm)


def register_budget(device: Device, threads: int, blocks: int) -> int:
    """The most registers per thread with which the registers of `blocks` blocks of `threads`
    threads fit one SM: what ``__launch_bounds__(threads, blocks)`` asks ptxas for."""
    fitting = (r for r in range(device.max_registers, 0, -1)
               if _by_registers(device, threads, r) >= blocks)
    return next(fitting, 0)


def waves(device: Device, blocks: int, per_sm: int) -> float:
    """How many full rounds of the GPU a grid of `blocks` blocks takes."""
    return blocks / (per_sm * device.sms)
