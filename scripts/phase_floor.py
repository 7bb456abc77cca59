"""How far a strided depthwise forward sits from what reading its input costs: the measurement
behind "What bounds the cells still missed" in docs/benchmarks.md.

When the dilation and the padding are multiples of the stride, every tap reads one stride phase
of the input (at stride 2 and dilation 2: the even rows and columns), so the convolution is the
stride-1 convolution (dilation and padding divided by the stride) of that phase alone. Timed
side by side, interleaved, after a warm-up: the kernels' forward on the full input (the rules'
or tuned choice), the same forward at stride 1 on a contiguous copy of the phase, that copy
(NumPy), and one read of the whole input (`x.sum()`), which is the floor for any kernel that
reads the input from memory. The two forwards must agree. Prints a table, writes JSON
(atomically). The rows in docs/benchmarks.md came from

    python scripts/phase_floor.py --batch 32 --threads 1 --out bench-results/phase-floor.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=96)
    parser.add_argument("--size", type=int, default=112, help="input image size (square)")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--dilation", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args()
    s, d = args.stride, args.dilation
    if s < 1 or d < 1 or d % s:
        raise SystemExit(f"phase_floor.py: --dilation ({d}) must be a positive multiple of "
                         f"--stride ({s}), so that every tap reads one stride phase")
    from minitorch_resnext.bench import _common as common
    from minitorch_resnext.kernels import cpu
    from minitorch_resnext.kernels.geometry import Conv2dGeometry

    threads = common.set_threads(args.threads, "phase_floor.py")
    c, hw, n = args.channels, args.size, args.batch
    full = Conv2dGeometry.of((n, c, hw, hw), (c, 1, 3, 3), s, d, d, c)  # padding = dilation
    phase = Conv2dGeometry.of((n, c, -(-hw // s), -(-hw // s)), (c, 1, 3, 3), 1, d // s,
                              d // s, c)
    if phase.output_shape != full.output_shape:
        raise SystemExit(f"phase_floor.py: at --size {hw} the phase's stride-1 output "
                         f"{phase.output_shape} is not the forward's {full.output_shape}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(full.input_shape, dtype=np.float32)
    w = rng.standard_normal(full.weight_shape, dtype=np.float32)
    xs = np.ascontiguousarray(x[:, :, ::s, ::s])
    candidates = [
        common.Candidate("forward, full input", lambda: cpu.conv2d_forward(x, w, None, full),
                         args.repeats),
        common.Candidate("stride 1 on the phase", lambda: cpu.conv2d_forward(xs, w, None, phase),
                         args.repeats),
        common.Candidate("phase copy (NumPy)", lambda: np.ascontiguousarray(x[:, :, ::s, ::s]),
                         args.repeats),
        common.Candidate("read the input", x.sum, args.repeats),
    ]
    stats = common.time_interleaved(candidates)
    y, ys = candidates[0].result, candidates[1].result
    err = float(np.abs(y - ys).max() / np.abs(y).max())
    print(f"{common.cpu_model()}, kernels compiled for {common.compiled_isa()}, {threads} "
          f"thread(s); depthwise 3x3, {c} channels, {hw}x{hw}, stride {s}, dilation {d}, "
          f"batch {n}; input {x.nbytes / 1e6:.1f} MB; max relative difference of the two "
          f"forwards {err:.1e}")
    floor = stats["read the input"].median
    rows = [[name, f"{st.median * 1e3:.2f}", f"{st.median / floor:.2f}x"]
            for name, st in stats.items()]
    print(common.format_table(["what", "median ms", "/ read"], rows, right=[False, True, True]))
    if args.out:
        common.write_json(args.out, {
            "machine": common.machine_info(), "threads": threads,
            "geometry": {"batch": n, "channels": c, "size": hw, "stride": s, "dilation": d},
            "input_mb": x.nbytes / 1e6, "max_rel_diff": err,
            "forward": {name: str(cpu.conv2d_algorithm(g).forward)
                        for name, g in (("full input", full), ("phase", phase))},
            "timings": {name: st.to_json() for name, st in stats.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
