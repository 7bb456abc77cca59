"""The tiled micro-kernel's FMA rate against the best sgemm, on one thread, for this build.

`kernels.cpu.peak_probe` runs the tiled kernel's micro-kernel on operands in the L1 cache;
against NumPy's and PyTorch's float32 matmul it shows whether the tile reaches the core's
vector FMA peak with the code generation of this process (run it once per build: the target
is fixed per process, see kernels/cpu/target.py). Interleaved rounds after a warm-up, median
and best; prints a table and writes JSON (atomically):

    python scripts/peak_probe.py --out bench-results/peak-native.json
    NUMBA_CPU_NAME=haswell NUMBA_CACHE_DIR=~/.cache/minitorch-resnext/numba-haswell \\
        python scripts/peak_probe.py --out bench-results/peak-avx2.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numba
import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args()
    numba.set_num_threads(1)
    from minitorch_resnext.bench import _common as common
    from minitorch_resnext.kernels.cpu import TARGET, peak_probe

    probe, probe_flops = peak_probe(tasks=1, depth=256, repeats=20_000)
    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    calls = {"peak_probe": (probe, probe_flops), "numpy sgemm": (lambda: a @ a, 2 * n**3)}
    torch, _ = common.load_torch("cpu", 1)
    if torch is not None:
        t = torch.from_numpy(a)
        calls["torch sgemm"] = (lambda: t @ t, 2 * n**3)
    with common.blas_threads(1):
        stats = common.time_interleaved(
            [common.Candidate(name, call, args.rounds) for name, (call, _) in calls.items()])
    rates = {name: {"median_gflops": calls[name][1] / s.median / 1e9,
                    "best_gflops": calls[name][1] / s.min / 1e9} for name, s in stats.items()}
    print(f"{common.cpu_model()}, kernels compiled for {TARGET.describe()}, 1 thread")
    print(common.format_table(["", "median GFLOP/s", "best GFLOP/s"],
                              [[k, f"{v['median_gflops']:.1f}", f"{v['best_gflops']:.1f}"]
                               for k, v in rates.items()], right=[False, True, True]))
    if args.out:
        common.write_json(args.out, {"machine": common.machine_info(), "target": TARGET.describe(),
                                     "features": TARGET.features, "rounds": args.rounds,
                                     "rates": rates})
    return 0


if __name__ == "__main__":
    sys.exit(main())
