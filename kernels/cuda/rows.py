"""Planning of conv2d_forward_rows (conv_direct.cu): full-row strips, persistent blocks.

The kernel is the direct algorithm's forward for memory-bound shapes built for the memory
roofline: blocks walk a fixed list of (image, group, strip of output rows) items, copying the
next item's weights and input rows into shared memory asynchronously while computing this
one, and each thread keeps rows x 4 columns x channels of outputs in registers. At stride 1
it also computes grad_input, as the forward of `Conv2dGeometry.transposed()` on flipped,
group-transposed weights (`transposed_weights`).

The plan weighs what decides its speed, under the occupancy model of occupancy.py: the
register budget the kernel is compiled for (``__launch_bounds__``), the blocks that fit on an
SM, the waves of the grid over the device's SMs, and the bytes each SM has in flight.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..geometry import Conv2dGeometry
from .occupancy import Device, blocks_per_sm, ceil_div, register_budget, round_up
from .runtime import Kernel, Launch, itemsize, unit_steps

MAX_THREADS = 256  # the kernel's __launch_bounds__ threads
SHARED_BYTES = 48 * 1024  # dynamic shared memory a block gets without opting in
COLUMNS = 4  # output columns per thread, stored as one vector
ACCUMULATOR_REGISTERS = 64  # registers per thread for its outputs (rows x 4 columns x channels)
# Registers beyond the accumulators, the input row segment and the weight vector (addresses,
# loop counters, the item's indices, loads hoisted for latency): with stride and dilation at
# compile time (UNIT), and without, plus some per kernel tap (the strided path's loads,
# unrolled over the taps, are hoisted). The budget they give compiles without spills for
# every planned instantiation (tests/test_cuda_compile.py checks ptxas -v against it).
REGISTER_OVERHEAD = {True: 48, False: 64}
REGISTERS_PER_TAP = {True: 0, False: 2}
# Bytes of loads an SM needs in flight to reach its share of the HBM bandwidth (Little's law:
# about 30 B/ns per SM times about 1 us of latency under load); fewer slow it in proportion.
IN_FLIGHT_BYTES = 32 * 1024
LATENCY_WARPS = 16  # resident warps per SM that hide the latency of shared loads and FMAs
SOURCE = "conv_direct.cu"


def channels_per_thread(channels: int, taps: int = 1, max_acc: int = 8) -> int:
    """The largest of 8, 4, 2, 1 that divides `channels` and keeps taps * it accumulators
    within `max_acc` (1 always qualifies)."""
    return next(v for v in (8, 4, 2, 1) if channels % v == 0 and (v * taps <= max_acc or v == 1))


@cache
def plan(g: Conv2dGeometry, ctype_: str, device: Device) -> Launch | None:
    """The launch of the forward of `g`, or None when no strip of rows fits shared memory.

    Of the strip heights whose stage fits shared memory (two stages if they fit, else one),
    take the one whose busiest SM finishes first, modelling an item's time on an SM as the
    longer of its bytes at the SM's share of bandwidth (scaled down while fewer than
    IN_FLIGHT_BYTES are in flight: a block with one stage has loads in flight half the time)
    and its multiply-adds at `device.fma_per_byte` per byte (scaled down by idle lanes and by
    fewer than LATENCY_WARPS resident warps).
    """
    size = itemsize(ctype_)
    vec, words = 16 // size, size // 4  # elements per 16 bytes, registers per element
    (kh, kw), (oh, ow), w = g.kernel_hw, g.output_hw, g.input_hw[1]
    (sh, sw), (_, pw), (dh, dw) = g.stride, g.padding, g.dilation
    cg, og = g.in_per_group, g.out_per_group
    opt = channels_per_thread(og)
    slices = og // opt
    py = next(p for p in (4, 2, 1)
              if p * COLUMNS * opt * words <= ACCUMULATOR_REGISTERS and (p <= oh or p == 1))
    quads = ceil_div(ow, COLUMNS)
    col0 = round_up(pw, vec)  # input column 0 sits 16-byte aligned
    shift = col0 - pw
    segment = ceil_div(shift + COLUMNS + kw - 1, vec) * vec if unit_steps(g) else 0
    reach = (COLUMNS * (quads - 1) + segment if unit_steps(g)
             else (COLUMNS * quads - 1) * sw + (kw - 1) * dw + shift + 1)
    pitch = round_up(max(reach, col0 + w), vec)
    w_elems = round_up(og * cg * g.taps, vec)
    wanted = (words * (py * COLUMNS * opt + segment + opt) + REGISTER_OVERHEAD[unit_steps(g)]
              + REGISTERS_PER_TAP[unit_steps(g)] * g.taps)
    min_blocks = max(b for b in range(1, 9) if register_budget(device, MAX_THREADS, b) >= wanted
                     or b == 1)
    registers = register_budget(device, MAX_THREADS, min_blocks)
    fma_per_byte = device.fma_per_byte / words
    options = []
    for rg in range(1, min(ceil_div(oh, py), MAX_THREADS // (quads * slices)) + 1):
        rows = rg * py
        win_rows = (rows - 1) * sh + (kh - 1) * dh + 1
        stage = round_up(w_elems + cg * win_rows * pitch, vec)
        stages = next((s for s in (2, 1) if s * stage * size <= SHARED_BYTES), 0)
        threads = quads * slices * rg
        per_sm = blocks_per_sm(device, threads, registers, stages * stage * size)
        if not stages or not per_sm:
            continue
        strips = ceil_div(oh, rows)
        items = g.batch * g.groups * strips
        grid = min(items, per_sm * device.sms)
        resident = ceil_div(grid, device.sms)  # blocks on the busiest SM, all at once
        in_flight = resident * stage * size * stages / 2  # one stage loads while one computes
        memory = (stage + rows * ow * og) * size / min(1.0, in_flight / IN_FLIGHT_BYTES)
        lanes = threads / round_up(threads, 32)
        warps = resident * ceil_div(threads, 32)
        compute = (quads * COLUMNS * rows * og * cg * g.taps
                   / (fma_per_byte * lanes * min(1.0, warps / LATENCY_WARPS)))
        cost = ceil_div(items, grid) * resident * max(memory, compute)
        params = (quads, rg, strips, win_rows, pitch, col0, w_elems, stage, int(w % vec == 0),
                  int(ow % COLUMNS == 0))
        kernel = Kernel.template(SOURCE, "conv2d_forward_rows", ctype_, kh, kw, opt, py, unit_steps(g),
                                 shift, stages, min_blocks)
        options.append(((cost, -threads), Launch(kernel, (grid, 1, 1), threads,
                                                 stages * stage * size, params, registers)))
    return min(options, key=lambda o: o[0])[1] if options else None


def transposed_weights(xp: Any, w: Any, g: Conv2dGeometry) -> Any:
    """The weights of `g.transposed()`: each group's input and output channels swapped and its
    taps flipped, (C_in, C_out / groups, kH, kW), C-contiguous."""
    return xp.ascontiguousarray(g.transposed_weights(w))
