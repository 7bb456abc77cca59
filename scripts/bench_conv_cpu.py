"""Every row set of the CPU convolution benchmark on this machine, and its tables.

Runs `minitorch-resnext bench conv` for the native build and the AVX2 build, at 1 thread and
at all cores, at batch 32 and batch 8, each in its own process:

- native: the kernels compiled for this CPU, against PyTorch's oneDNN as it comes;
- avx2: `NUMBA_CPU_NAME=haswell` with its own `NUMBA_CACHE_DIR` (an AVX2 build of the kernels,
  tiles sized for 8 lanes and 16 registers), against PyTorch with `ONEDNN_MAX_CPU_ISA=AVX2`.

Each run tunes the kernels' choices for its shapes before timing them (`MINITORCH_TUNE=0`
in the environment: the rules alone; unset, the script sets it to 1), and writes
`OUT/<build>-t<threads>-b<batch>/conv-cpu.json` and `.png`; the script then prints one
Markdown table per build (shape x pass: the ratio PyTorch time / ours, the fraction of the
roofline and the status of issue 15's target, which is against PyTorch, in each setting), the
tables of docs/benchmarks.md.
The Python that runs it needs PyTorch (a separate venv) and this checkout on its path:

    PYTHONPATH=$PWD /work/benchvenv/bin/python scripts/bench_conv_cpu.py --out docs/benchmarks/cpu-epyc
    python scripts/bench_conv_cpu.py --tables-only --out docs/benchmarks/cpu-epyc   # tables again

It takes about 8 runs x (compilation the first time + tuning + 8 shapes x 3 passes x 10 rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILDS = {
    "native": {},
    "avx2": {"NUMBA_CPU_NAME": "haswell", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
BATCHES = (32, 8)


def settings(cores: int) -> list[tuple[str, int, int]]:
    return [(build, threads, batch) for build in BUILDS for batch in BATCHES
            for threads in sorted({1, cores})]


def run(out: Path, build: str, threads: int, batch: int, extra: list[str]) -> Path:
    """One `bench conv` run in its own process; the folder it wrote."""
    folder = out / f"{build}-t{threads}-b{batch}"
    env = {"MINITORCH_TUNE": "1", **os.environ, **BUILDS[build], "OMP_WAIT_POLICY": "PASSIVE"}
    if build != "native":  # its own compiled code, never mixed with the native build's
        env["NUMBA_CACHE_DIR"] = str(Path.home() / ".cache" / "minitorch-resnext" / f"numba-{build}")
    cmd = [sys.executable, "-m", "minitorch_resnext", "bench", "conv", "--threads", str(threads),
           "--batch", str(batch), "--no-baseline", "--out", str(folder), *extra]
    print(f"=== {build}, {threads} thread(s), batch {batch}: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, env=env, check=True)
    return folder


def tables(out: Path) -> str:
    """One Markdown table per build: each (shape, pass) row, each setting a column: PyTorch's
    time over ours, the fraction of the roofline, and issue 15's target against PyTorch."""
    from minitorch_resnext.bench.conv import target_for

    found = sorted(out.glob("*-t*-b*/conv-cpu.json"))
    if not found:
        raise SystemExit(f"no results under {out}")
    runs = {p.parent.name: json.loads(p.read_text()) for p in found}
    parts = []
    for build in BUILDS:
        names = sorted((n for n in runs if n.startswith(f"{build}-")),
                       key=lambda n: (-int(n.split("-b")[1]), int(n.split("-t")[1].split("-")[0])))
        if not names:
            continue
        first = runs[names[0]]
        machine = first["machine"]
        parts.append(f"#### {build}: {machine['cpu']}, kernels compiled for "
                     f"{machine.get('cpu_target', '?')}; PyTorch {first['torch'].get('version', '-')}"
                     + (" with ONEDNN_MAX_CPU_ISA=AVX2" if build == "avx2" else ""))
        header = ["shape", "pass"] + [f"{runs[n]['threads']} thr, batch {runs[n]['settings']['batch']}"
                                      for n in names]
        rows: dict[tuple[str, str], list[str]] = {}
        statuses = []
        for column, name in enumerate(names):
            data = runs[name]
            cg = {s["name"]: s["channels_per_group"] for s in data["shapes"]}
            for r in data["results"]:
                if r["implementation"] != "minitorch":
                    continue
                key = (r["shape"], r["pass"])
                cells = rows.setdefault(key, ["-"] * len(names))
                # issue 15's targets are against PyTorch (bench conv's own: the faster baseline)
                t = target_for("cpu", cg[r["shape"]], r["pass"], data["settings"]["batch"])
                speedup, roofline = r["speedup_vs_torch"], r["roofline_fraction"]
                status = t.status(speedup, roofline)
                statuses.append(status)
                cell = "-" if speedup is None else f"{speedup:.2f}x"
                cell += f" ({100 * roofline:.0f} %)"
                cell += f" {t.describe()}: **missed**" if status == "missed" else f" {status}"
                cells[column] = cell
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += [f"| {s} | {p} | " + " | ".join(c) + " |" for (s, p), c in rows.items()]
        met, total = statuses.count("met"), len(statuses)
        parts.append("\n".join(lines) + f"\n\n{met} of {total} targets met; load average at the "
                     "start of each run: " + ", ".join(
                         f"{runs[n]['machine']['load_average_1min']:.1f}" for n in names))
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "conv-cpu")
    parser.add_argument("--builds", nargs="+", choices=list(BUILDS), default=list(BUILDS))
    parser.add_argument("--tables-only", action="store_true", help="print the tables of --out")
    parser.add_argument("extra", nargs="*", help="more bench conv arguments, after --")
    args = parser.parse_args()
    if not args.tables_only:
        import minitorch_resnext

        if not Path(minitorch_resnext.__file__).resolve().is_relative_to(ROOT):
            raise SystemExit(f"minitorch_resnext comes from {minitorch_resnext.__file__}, not this "
                             f"checkout: run with PYTHONPATH={ROOT}")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        for build, threads, batch in settings(cores or 1):
            if build in args.builds:
                run(args.out, build, threads, batch, args.extra)
    print(tables(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
