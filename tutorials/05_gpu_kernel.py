# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. The GPU kernel
#
# On the `"cuda"` device the three convolution kernels are CUDA C (`kernels/cuda/*.cu`),
# compiled at first use by NVRTC through CuPy and launched by a Python planner
# (`kernels/cuda/direct.py`) that chooses, for each shape, the algorithm, the size of a
# thread block's tile and the shared memory it needs. This tutorial reads the direct forward
# kernel of `conv_direct.cu` — the one that runs ResNeXt's grouped 3x3 convolutions — and
# checks, with the planner's real numbers and plain Python, the three things that make a GPU
# kernel fast: how threads and blocks map onto the output, what is kept in shared memory,
# and whether memory accesses are coalesced. Where a GPU is present it then runs and times
# the kernel; where none is, it says so and shows recorded results.
#
# Planning needs no GPU, so everything up to the last section runs anywhere.
#
# * **You will learn:** how a CUDA kernel maps threads and blocks onto a convolution's
#   output, what shared memory buys, and how to check coalescing and bank conflicts on paper.
# * **Prerequisites:** [tutorial 4](04_writing_the_kernel.md); what a GPU thread, block and
#   warp are.
# * **Runtime:** a few seconds on any machine; about a minute on a GPU (NVRTC compiles the
#   kernels on first use).

# %%
import json
import re
from pathlib import Path

import numpy as np

import minitorch_resnext as mr
from minitorch_resnext import functional as F
from minitorch_resnext.kernels import cuda
from minitorch_resnext.kernels.cuda import direct
from minitorch_resnext.kernels.geometry import Conv2dGeometry

SOURCE = Path(cuda.__file__).parent / "conv_direct.cu"
source = SOURCE.read_text()
kernels = re.findall(r"__global__ void (?:__launch_bounds__\([^)]*\) )?(\w+)\(", source)
print(f"{SOURCE.name}: {', '.join(kernels)}")
assert kernels == ["conv2d_forward_direct", "conv2d_forward_rows", "conv2d_grad_input_direct",
                   "conv2d_grad_weight_direct"]

# %% [markdown]
# ## The plan for ResNeXt-50's grouped 3x3
#
# Take the 3x3 convolution of ResNeXt-50's first stage: 128 channels in 32 groups of 4, on
# 56 x 56 maps, a batch of 8, float32. Four channels per group is far below what a matrix
# multiply needs to be efficient, so the planner picks the **direct** kernels:

# %%
X_SHAPE, W_SHAPE, GROUPS = (8, 128, 56, 56), (128, 4, 3, 3), 32
geometry = Conv2dGeometry.of(X_SHAPE, W_SHAPE, padding=1, groups=GROUPS)
choice = cuda.conv2d_algorithm(geometry).forward
print(choice)
assert choice.algorithm == "direct"

forward_plan = direct.plan("forward", geometry, "float")
print(forward_plan)
# conv2d_forward_direct<T, KH, KW, OPT, PY, UNIT>: OPT and PY are fixed at compile time
OPT, PY = (int(a) for a in re.search(r"<(.*)>", forward_plan.kernel.name)[1].split(",")[3:5])
TILE_W, ROW_GROUPS, TILES_W, CHUNK_C, TIH, TIW, PITCH, X_OFF = forward_plan.params
GRID, BLOCK = forward_plan.grid, forward_plan.block

# %% [markdown]
# ## Threads and blocks
#
# The kernel's comment says: *block (tile, group, image); thread (column q, row group rg,
# channel slice cs) computes rows rg\*PY .. rg\*PY+PY-1 of column q for output channels
# cs\*OPT .. cs\*OPT+OPT-1 of the group.* So
#
# * the grid is `(tiles of the output map, groups, images)`: `blockIdx.y` is the group and
#   `blockIdx.z` the image, so a block never mixes groups — every input it needs belongs to
#   one group;
# * within a block, consecutive threads take consecutive **columns** `q` of the tile, then
#   row groups, then slices of `OPT` output channels;
# * each thread accumulates a `PY x OPT` patch of outputs in registers.
#
# Here is that arithmetic, copied from the kernel into NumPy and run for every thread of
# every block of the launch. It must produce each output value exactly once:

# %%
c_out, cg = W_SHAPE[0], W_SHAPE[1]
og, (oh, ow) = c_out // GROUPS, geometry.output_hw
print(f"grid {GRID} x {BLOCK} threads; each thread: {PY} rows x {OPT} channels; "
      f"tile {TILE_W} columns x {ROW_GROUPS * PY} rows")


def thread_outputs(bx: int, g: int, n: int) -> tuple[np.ndarray, ...]:
    """(thread, n, o, oy, ox) of every output the threads of block (bx, g, n) write."""
    t = np.arange(BLOCK)
    q, rg, cs = t % TILE_W, (t // TILE_W) % ROW_GROUPS, t // (TILE_W * ROW_GROUPS)
    oy0, ox0 = (bx // TILES_W) * ROW_GROUPS * PY, (bx % TILES_W) * TILE_W
    py, u = np.meshgrid(np.arange(PY), np.arange(OPT), indexing="ij")
    ox = np.broadcast_to((ox0 + q)[:, None, None], (BLOCK, PY, OPT))
    oy = (oy0 + rg * PY)[:, None, None] + py
    o = g * og + (cs * OPT)[:, None, None] + u
    keep = (ox < ow) & (oy < oh)  # the kernel returns / breaks outside the map
    thread = np.broadcast_to(t[:, None, None], keep.shape)
    return thread[keep], np.full(keep.sum(), n), o[keep], oy[keep], ox[keep]


writes = np.zeros((1, c_out, oh, ow), dtype=np.int64)
for bx in range(GRID[0]):
    for g in range(GRID[1]):
        _, n, o, oy, ox = thread_outputs(bx, g, 0)
        np.add.at(writes, (n, o, oy, ox), 1)
assert (writes == 1).all()
print(f"image 0: all {writes.size:,} outputs written exactly once by "
      f"{GRID[0] * GRID[1]} blocks of {BLOCK} threads")

# %% [markdown]
# ## Shared memory: read each input once per block
#
# Before computing, a block copies into shared memory (on-chip memory shared by the block's
# threads, much faster than device memory) the group's weights and a window of the input:
# its tile plus a halo of one pixel for the 3x3 taps, for `CHUNK_C` input channels at a
# time. Afterwards every input value a thread needs is read from shared memory. Each staged
# input value then feeds up to `9 * og` multiply-adds — every tap and every output channel
# of the group — and each weight loaded from shared memory feeds `PY` of them from
# registers.

# %%
itemsize = 4
staged = (X_OFF + CHUNK_C * TIH * TIW) * itemsize
tile_pixels = TILE_W * ROW_GROUPS * PY
halo = TIH * TIW / tile_pixels
print(f"shared memory per block: {forward_plan.shared:,} bytes (weights {X_OFF * itemsize} B, "
      f"input window {CHUNK_C} x {TIH} x {TIW}); the halo adds {halo - 1:.0%} to the tile")
assert forward_plan.shared == staged <= 48 * 1024  # what a block gets without opting in
assert CHUNK_C == cg  # all of the group's 4 channels fit at once: one pass over the input
macs_per_block = tile_pixels * og * cg * 9
loads_per_block = CHUNK_C * TIH * TIW + og * cg * 9
print(f"multiply-adds per value loaded from device memory: {macs_per_block / loads_per_block:.1f}")
assert macs_per_block / loads_per_block > 20

# %% [markdown]
# ## Coalescing: a warp's 32 threads touch one contiguous stretch
#
# The GPU executes 32 threads (a **warp**) together, and a memory instruction of a warp is
# served in 32-byte sectors of 128-byte lines: if the 32 addresses are consecutive, one
# instruction costs a few sectors; if they are scattered, up to 32. Because consecutive
# threads take consecutive columns, the stores of a warp are consecutive in memory. Let us
# count the 128-byte lines touched by each store instruction of the real launch, against a
# layout where consecutive threads took consecutive *channels* instead:


# %%
def warps(bx: int = 0, g: int = 0):
    """For each warp of block (bx, g) of image 0: its lanes' (n, o, oy, ox) arrays."""
    thread, *coords = thread_outputs(bx, g, 0)
    for first in range(0, BLOCK, 32):
        lanes = (thread >= first) & (thread < first + 32)
        yield [c[lanes] for c in coords]


def lines_per_store() -> float:
    """Mean 128-byte lines touched by one warp's store instruction, over block 0's warps."""
    counts = []
    for n, o, oy, ox in warps():
        address = ((n * c_out + o) * oh + oy) * ow + ox  # NCHW, in elements
        instruction = (oy % PY) * OPT + o % OPT  # one store per (py, u) of the unrolled loops
        counts += [len(np.unique(address[instruction == k] * itemsize // 128))
                   for k in np.unique(instruction)]
    return float(np.mean(counts))


columns = lines_per_store()
print(f"lines per warp store: {columns:.1f} with threads along columns (the kernel)")
assert columns <= 3  # 32 floats = 128 bytes, plus at most a row break and a misalignment

# %% [markdown]
# Had the threads been laid along channels instead (thread `t` writing channel `t` of one
# pixel of an NCHW tensor), every lane would hit a different line, 32 per store:

# %%
scattered = len({((t * oh + 0) * ow + 0) * itemsize // 128 for t in range(32)})
print(f"lines per warp store: {scattered} with threads along channels")
assert scattered == 32

# %% [markdown]
# Shared memory is split into 32 **banks** of 4-byte words; lanes of a warp that read
# different words of one bank wait for each other. A thread reads the input window at
# `x_s[c * chan_pitch + (rg*PY + py + i) * pitch + q + j]`: consecutive columns are
# consecutive words, so the lanes of one row group use different banks, and only where a
# warp straddles two row groups can two lanes meet in a bank. The weights are read at
# addresses that do not depend on the column, so all lanes of a channel slice read the same
# word: a broadcast, which costs one access.

# %%
ways = []
for _, _, oy, ox in warps():
    q, rg = ox % TILE_W, (oy // PY) % ROW_GROUPS
    for py in range(PY):
        for i in range(3):
            for j in range(3):
                word = (rg * PY + py + i) * PITCH + q + j  # in channel 0 of the window
                banks = np.unique(word) % 32  # lanes reading one word share it (broadcast)
                ways.append(np.bincount(banks).max())
print(f"shared-memory reads of the input window: at most {max(ways)}-way bank conflicts, "
      f"{np.mean(np.array(ways) == 1):.0%} of them conflict-free")
assert max(ways) <= 2
# a lane's weights depend only on its channel slice cs: lanes of one slice share each word
slices = [len(np.unique((o % og) // OPT)) for _, o, _, _ in warps()]
print(f"distinct weight words per warp load: at most {max(slices)}")
assert max(slices) <= 2

# %% [markdown]
# The input window is loaded into shared memory the same way: `load_tile` in
# `conv_common.cuh` sweeps each row of the window with up to 32 consecutive threads.
#
# ## On a GPU
#
# With CuPy and an NVIDIA GPU, `F.conv2d` on `"cuda"` tensors runs these kernels; the result
# must match the CPU kernels, and CUDA events time the forward pass on the device. Without a
# GPU this cell prints why and shows results recorded by `minitorch-resnext bench conv
# --device cuda` instead — recorded on another machine, not measured now.

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal(X_SHAPE).astype(np.float32)
w = rng.standard_normal(W_SHAPE).astype(np.float32)
if mr.cuda_is_available():
    cupy = mr.get_backend("cuda").xp
    xg, wg = mr.tensor(x, device="cuda"), mr.tensor(w, device="cuda")
    y_gpu = F.conv2d(xg, wg, padding=1, groups=GROUPS)
    y_cpu = F.conv2d(mr.tensor(x), mr.tensor(w), padding=1, groups=GROUPS).numpy()
    np.testing.assert_allclose(y_gpu.numpy(), y_cpu, rtol=1e-4, atol=1e-4)
    start, stop, times = cupy.cuda.Event(), cupy.cuda.Event(), []
    for _ in range(20):
        start.record()
        F.conv2d(xg, wg, padding=1, groups=GROUPS)
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    seconds = float(np.median(times[5:]))
    flops = 2 * y_cpu.size * cg * 9
    moved = (x.size + y_cpu.size + w.size) * itemsize
    print(f"measured now on {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}: "
          f"{seconds * 1e6:.0f} us, {flops / seconds / 1e9:.0f} GFLOP/s, "
          f"{moved / seconds / 1e9:.0f} GB/s of minimum traffic")
else:
    print("no usable GPU here (mr.cuda_is_available() is False: CuPy or an NVIDIA GPU is missing);"
          " showing recorded results instead, not measured now")
    root = (Path("tutorials") if Path("tutorials").is_dir() else Path()).resolve().parent
    recorded = [p for p in (root / "docs/benchmarks/conv-cuda.json", root / "bench-results/conv-cuda.json")
                if p.is_file()]
    if recorded:
        record = json.loads(recorded[0].read_text())
        print(f"recorded in {recorded[0]} on {record['machine']['gpu']}, {record['created']}:")
        for r in record["results"]:
            speedup = r["speedup_vs_torch"]
            print(f"  {r['shape']:18s} {r['pass']:12s} {r['implementation']:10s} "
                  f"{r['median_ms']:9.3f} ms {r['gflops']:8.1f} GFLOP/s"
                  + (f"  {speedup:.2f}x cuDNN" if speedup else ""))
    else:
        page = (root / "docs/benchmarks.md").read_text()
        sections = re.split(r"\n(?=#+ )", page)
        gpu = [s for s in sections if re.match(r"#+ .*(GPU|CUDA|H100|H200|A100)", s)]
        print(f"recorded in docs/benchmarks.md:\n{gpu[0] if gpu else page}")

# %% [markdown]
# ## Summary
#
# * One block per (tile, group, image), consecutive threads along the output row, a
#   `PY x OPT` patch of outputs per thread in registers.
# * The group's weights and a haloed input window sit in shared memory, so each input value
#   comes from device memory once per block and feeds dozens of multiply-adds.
# * Threads along the contiguous axis make every warp's loads and stores coalesced.
# * The other two kernels (`conv2d_grad_input_direct`, a gather that writes each input
#   gradient once without atomics, and `conv2d_grad_weight_direct`, a deterministic reduction
#   by warp shuffles) follow the same plan; read them in `kernels/cuda/conv_direct.cu`.
# * `conv2d_forward_rows`, chosen with `algorithm=Choice("direct", {"kernel": "rows"}, ...)`,
#   goes further toward the memory roofline: persistent blocks over full-row strips, with the
#   next strip's loads in flight (asynchronous copies) while this one is computed.
#
# ## Exercises
#
# Fill in the stubs in `tutorials/exercises/t5_gpu_kernel.py` and check them with
# `pytest tests/exercises -k "t5 and yours"` (no GPU needed; solutions in
# `tutorials/exercises/solutions/`).
#
# 1. `lines_touched`: how many 128-byte lines one warp's load touches, coalesced or not.
# 2. `bank_conflict_ways`: the worst bank conflict of a warp's shared-memory read, and why a
#    pitch of 33 words instead of 32 removes it.
# 3. `input_window`: the haloed input window a tile of outputs needs in shared memory.
# 4. `grid_blocks`: the tiles that cover an output map exactly once.
