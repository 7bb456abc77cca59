"""Two CPU convolution algorithms against each other across channels per group and image sizes:
the measurement behind a threshold of `kernels/cpu/rules.py`, to take again on another CPU.

Each cell is a grouped 3x3 convolution (padding 1, `--stride`) of `--batch` images with that
many channels per group (32 groups below 32 channels per group, 8 from there, as in ResNeXt,
or `--groups`), or with `--kernel 1` a 1x1 convolution without padding; each pass that both
algorithms compute is timed with each forced, interleaved, after a warm-up; the table gives
the medians and the ratio first / second (above 1: the second algorithm is faster). An
algorithm may name tuning parameters, `NAME:KEY=VALUE[,KEY=VALUE]` (e.g. `direct:read=stream`),
and a pass is timed where both compute it with their parameters. Writes JSON (atomically).
The rows for stride-2 convolutions in docs/benchmarks.md came from

    python scripts/rule_sweep.py --stride 2 --out bench-results/rule-sweep-s2.json

those of the direct kernel's in-place reads from

    python scripts/rule_sweep.py --algorithms direct:read=buffers direct:read=stream \
        --stride 1 --channels 4 8 --sizes 8 16 28 32 56 --batch 8 --threads 1

and those of the 1x1 convolutions from

    python scripts/rule_sweep.py --algorithms gemm pointwise --kernel 1 --groups 1 --stride 1 \
        --channels 256 512 1024 2048 --sizes 7 14 28 56 --batch 8 --threads 1
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# NumPy is imported after minitorch_resnext, which sets BLAS's threads to sleep as soon as a
# product ends (`minitorch_resnext._threads`): else they spin for 0.1 s after every GEMM,
# holding the core the next algorithm's threads need
if TYPE_CHECKING:
    import numpy as np

    from minitorch_resnext.kernels.geometry import Conv2dGeometry

def parse_algorithm(spec: str) -> tuple[str, dict[str, str]]:
    """`NAME[:KEY=VALUE,...]` as (name, parameters); "direct:read=stream" -> ("direct",
    {"read": "stream"})."""
    name, _, params = spec.partition(":")
    pairs = [p.partition("=") for p in params.split(",")] if params else []
    if any(not key or not eq or not value for key, eq, value in pairs):
        raise ValueError(f"{spec!r}: parameters are KEY=VALUE, comma-separated")
    return name, {key: value for key, _, value in pairs}


def _runs(spec: str, pass_: str, g: Conv2dGeometry) -> bool:
    """Whether the algorithm of `spec` computes `pass_` of `g` with the parameters it names."""
    from minitorch_resnext.kernels import cpu

    name, params = parse_algorithm(spec)
    algorithm = cpu.ALGORITHMS[name]
    space = algorithm.space(pass_, g)
    return algorithm.computes(pass_, g) and all(v in space.get(k, ()) for k, v in params.items())


def time_passes(g: Conv2dGeometry, algorithms: list[str], repeats: int, rng: np.random.Generator
                ) -> dict[str, dict[str, float]]:
    """Median milliseconds of each pass of `g` that every algorithm (`NAME[:KEY=VALUE,...]`)
    computes, with each forced, interleaved."""
    import numpy as np

    from minitorch_resnext.bench import _common as common
    from minitorch_resnext.kernels import cpu
    from minitorch_resnext.kernels.selection import Choice

    x, w, gy = (rng.standard_normal(s, dtype=np.float32)
                for s in (g.input_shape, g.weight_shape, g.output_shape))
    calls = {"forward": lambda a: cpu.conv2d_forward(x, w, None, g, a),
             "grad_input": lambda a: cpu.conv2d_grad_input(gy, w, g, a),
             "grad_weight": lambda a: cpu.conv2d_grad_weight(x, gy, g, a)}
    choices = {a: Choice(*parse_algorithm(a), "rule_sweep.py") for a in algorithms}
    medians = {}
    for pass_, call in calls.items():
        if not all(_runs(a, pass_, g) for a in algorithms):
            continue
        stats = common.time_interleaved(
            [common.Candidate(a, functools.partial(call, choices[a]), repeats)
             for a in algorithms])
        medians[pass_] = {a: stats[a].median * 1e3 for a in algorithms}
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs=2, default=["direct", "implicit"],
                        metavar=("FIRST", "SECOND"))
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--kernel", type=int, choices=(1, 3), default=3,
                        help="3: 3x3 with padding 1; 1: 1x1 without padding")
    parser.add_argument("--groups", type=int,
                        help="groups of every cell (default: 32 below 32 channels per group, 8 "
                        "from there)")
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 12, 16, 24, 32, 64],
                        help="channels per group")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 14, 16, 28, 30, 32, 56],
                        help="input image sizes (square)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-mb", type=float, default=64.0,
                        help="skip cells whose input is larger than this (float32 MB)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args()
    from minitorch_resnext.bench import _common as common
    from minitorch_resnext.kernels import cpu
    from minitorch_resnext.kernels.geometry import Conv2dGeometry

    threads = common.set_threads(args.threads, "rule_sweep.py")
    import numpy as np  # after the package (top of the module)

    for spec in args.algorithms:
        try:
            name, _ = parse_algorithm(spec)
        except ValueError as e:
            raise SystemExit(f"rule_sweep.py: --algorithms: {e}") from None
        if name not in cpu.ALGORITHMS:
            raise SystemExit(f"rule_sweep.py: --algorithms: {name!r} is not one of "
                             f"{tuple(cpu.ALGORITHMS)}")
    first, second = args.algorithms
    rng = np.random.default_rng(0)
    cells, rows = [], []
    passes = []
    with common.blas_threads(threads):  # im2col + GEMM on as many threads as the others
        for cg in args.channels:
            groups = args.groups or (32 if cg < 32 else 8)
            for hw in args.sizes:
                if args.batch * groups * cg * hw * hw * 4 > args.max_mb * 2**20:
                    continue
                g = Conv2dGeometry.of((args.batch, groups * cg, hw, hw),
                                      (groups * cg, cg, args.kernel, args.kernel), args.stride,
                                      args.kernel // 2, 1, groups)
                cell, row = {"channels_per_group": cg, "groups": groups, "size": hw}, [cg, hw]
                timed = time_passes(g, args.algorithms, args.repeats, rng)
                passes = list(timed) or passes
                for pass_, ms in timed.items():
                    cell[pass_] = {**{f"{a}_ms": round(v, 6) for a, v in ms.items()},
                                   "ratio": round(ms[first] / ms[second], 3)}
                    row += [f"{ms[first]:.2f}", f"{ms[second]:.2f}", f"{ms[first] / ms[second]:.2f}x"]
                cells.append(cell)
                rows.append([str(v) for v in row])
                print(f"  {cg} channels per group, {hw}x{hw}: done", file=sys.stderr, flush=True)
    if not passes:
        raise SystemExit(f"rule_sweep.py: --algorithms: {first} and {second} compute no pass of "
                         "any cell with the parameters they name")
    print(f"{common.cpu_model()}, kernels compiled for {common.compiled_isa()}, {threads} "
          f"thread(s), batch {args.batch}, {args.kernel}x{args.kernel}, stride {args.stride}; "
          f"ratio = {first} / {second}")
    short = {"forward": "fwd", "grad_input": "gin", "grad_weight": "gw"}
    header = ["ch/group", "size"] + [f"{short[p]} {a}" for p in passes
                                     for a in (first, second, "ratio")]
    print(common.format_table(header, rows, right=[True] * len(header)))
    if args.out:
        common.write_json(args.out, {"machine": common.machine_info(), "threads": threads,
                                     "batch": args.batch, "stride": args.stride,
                                     "kernel": args.kernel,
                                     "algorithms": args.algorithms, "cells": cells})
    return 0


if __name__ == "__main__":
    sys.exit(main())
