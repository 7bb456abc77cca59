#!/usr/bin/env python3
"""One prepared run of every GPU check, for a machine with an NVIDIA GPU and CuPy installed.

    python3 scripts/gpu_check.py [--budget SECONDS] [--steps a,b,...]

Steps, most valuable first, each in its own process with a time limit; a deadline guard
gives each step at most what is left of the budget (default 540 s) and skips what no longer
fits, so the run always ends with its summary, inside the budget:

  env         GPU, driver, toolkit and package versions                     -> env.json
  install     pip install -e . (no dependencies, offline)
  precompile  every planned kernel compiled by NVRTC in parallel (warming CuPy's cache);
              registers and local memory against each plan's register budget, and the
              blocks per SM the plan assumes against the model and CUDA's own count  -> kernels.json
  smoke       GPU kernels against the reference, every variant, float32, and the NVRTC
              compile: with MINITORCH_REQUIRE_GPU=1 a skip is a failure
  bench       minitorch-resnext bench conv --device cuda: latency and back-to-back
              throughput against cuDNN (TF32 off)                         -> conv-cuda.json/.png
  variants    every parameter value of the chosen algorithm of each pass, side by side
              (old and new kernels), latency and back-to-back                  -> variants.json
  ncu         Nsight Compute metrics of the project's kernels on g32x4, depthwise and dense:
              DRAM throughput, warps active, long-scoreboard stalls, bank conflicts, FMA pipe
                                                                                      -> ncu.csv
  sanitizers  compute-sanitizer memcheck, racecheck, synccheck on a few GPU tests, the last
              two filtered to the project's shared-memory kernels
  gpu-tests   every test marked gpu (pytest -m gpu), MINITORCH_REQUIRE_GPU=1

At most 8 files, all directly in the output directory: $GPU_CHECK_OUT, else $OUT (what a
device run returns), else bench-results/gpu-check; every step's output also goes to
log.txt, and the summary table, printed last, to summary.txt. Exit status 0 when every step
that ran passed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 540
RESERVE_S = 5  # kept for the summary
BATCH = 64
NCU_SHAPES = ("rx50_s1_g32x4", "dw_144", "dense_128")
NCU_METRICS = (
    "gpu__time_duration.sum",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
    "launch__registers_per_thread",
    "launch__occupancy_limit_registers",
)
PROJECT_KERNELS = "regex:conv2d|im2col|col2im|sum_partials"
SMOKE = "nvrtc or (gpu_kernels_match and float32)"
SANITIZED = "gpu_kernels_match and float32 and (n2_c16-16_g4 or n1_c8-8_g2 or n2_c32-64_g1)"
# pytest with CuPy's memory pool off: every array is its own allocation, so memcheck sees an
# access past one
NO_POOL = ("import sys, cupy, pytest; cupy.cuda.set_allocator(None); "
           "sys.exit(pytest.main(sys.argv[1:]))")


@dataclass(frozen=True)
class Step:
    name: str
    limit_s: int
    command: Callable[[Path], list[list[str]] | None]  # None: cannot run here (why: in note)
    note: str = ""


def _out_dir() -> Path:
    return Path(os.environ.get("GPU_CHECK_OUT") or os.environ.get("OUT") or "bench-results/gpu-check")


def _self(step: str, out: Path) -> list[str]:
    """This script running one of its in-process steps."""
    return [sys.executable, str(Path(__file__).resolve()), "--run-step", step, "--out", str(out)]


def _pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def _ncu(out: Path) -> list[list[str]] | None:
    if shutil.which("ncu") is None:
        return None
    listed = subprocess.run(["ncu", "--query-metrics"], capture_output=True, text=True).stdout
    metrics = [m for m in NCU_METRICS if m.split(".")[0] in listed]
    return [["ncu", "--csv", "--log-file", str(out / "ncu.csv"), "--metrics", ",".join(metrics),
             "--kernel-name", PROJECT_KERNELS, *_self("ncu-driver", out)]]


def _sanitizers(out: Path) -> list[list[str]] | None:
    if shutil.which("compute-sanitizer") is None:
        return None
    help_text = subprocess.run(["compute-sanitizer", "--help"], capture_output=True, text=True).stdout
    option = next((o for o in ("--kernel-name", "--filter") if o in help_text), None)
    only_ours = [option, "kns=conv2d"] if option else []  # the kernels with shared memory
    tests = [sys.executable, "-c", NO_POOL, "-q", "-p", "no:cacheprovider", "-m", "gpu",
             "tests/test_cuda_compile.py", "-k", SANITIZED]
    base = ["compute-sanitizer", "--error-exitcode", "1", "--print-limit", "20"]
    return [[*base, "--tool", "memcheck", *tests],
            [*base, "--tool", "racecheck", "--racecheck-report", "hazard", *only_ours, *tests],
            [*base, "--tool", "synccheck", *only_ours, *tests]]


STEPS = (
    Step("env", 20, lambda out: [_self("env", out)]),
    Step("install", 60, lambda out: [[sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                                      "--no-build-isolation", "--no-index", "-e", str(ROOT)]]),
    Step("precompile", 90, lambda out: [_self("precompile", out)]),
    Step("smoke", 60, lambda out: [_pytest("-m", "gpu", "tests/test_cuda_compile.py", "-k", SMOKE)]),
    Step("bench", 150, lambda out: [[sys.executable, "-m", "minitorch_resnext", "bench", "conv",
                                     "--device", "cuda", "--repeats", "10", "--out", str(out)]]),
    Step("variants", 100, lambda out: [_self("variants", out)]),
    Step("ncu", 60, _ncu, "ncu is not on PATH"),
    Step("sanitizers", 90, _sanitizers, "compute-sanitizer is not on PATH"),
    Step("gpu-tests", 240, lambda out: [_pytest("-m", "gpu", "tests")]),
)


def _run(step: Step, out: Path, deadline: float, log: Path) -> tuple[str, float]:
    """Run a step's commands (all of them, unless time runs out) within its limit and the
    deadline, their output appended to the log; the step's status and seconds."""
    start = time.monotonic()
    commands = step.command(out)
    if commands is None:
        return f"SKIPPED ({step.note})", 0.0
    env = {**os.environ, "MINITORCH_REQUIRE_GPU": "1", "PYTHONUNBUFFERED": "1"}
    failed = []
    for command in commands:
        left = min(step.limit_s - (time.monotonic() - start), deadline - time.monotonic())
        if left < 1:
            return "TIMEOUT", time.monotonic() - start
        print(f"=== {step.name} (limit {left:.0f} s): {' '.join(command)}", flush=True)
        with log.open("a") as f:
            f.write(f"\n=== {step.name}: {' '.join(command)}\n")
            f.flush()
            try:
                code = subprocess.run(command, cwd=ROOT, env=env, stdout=f,
                                      stderr=subprocess.STDOUT, timeout=left).returncode
            except subprocess.TimeoutExpired:
                return "TIMEOUT", time.monotonic() - start
            except OSError as e:
                f.write(f"{e}\n")
                code = e.strerror
        if code != 0:
            tool = next((a for a in command if a in ("memcheck", "racecheck", "synccheck")), "")
            failed.append(f"{tool} exit {code}".strip())
    status = f"FAILED ({'; '.join(failed)})" if failed else "ok"
    return status, time.monotonic() - start


def _summary(rows: list[tuple[str, str, float]], out: Path) -> str:
    lines = ["=== gpu_check summary", f"{'step':<12} {'status':<44} {'s':>5}"]
    lines += [f"{name:<12} {status:<44} {seconds:>5.0f}" for name, status, seconds in rows]
    bench = out / "conv-cuda.json"
    if bench.is_file():
        data = json.loads(bench.read_text())
        lines += ["", f"{'shape':<18} {'pass':<12} {'vs cuDNN':>9} {'% roof':>7}  target"]
        for t in data["targets"]:
            speedup = "-" if t["speedup"] is None else f"{t['speedup']:.2f}x"
            lines.append(f"{t['shape']:<18} {t['pass']:<12} {speedup:>9} "
                         f"{100 * t['roofline_fraction']:>6.1f}%  {t['target']}: {t['status']}")
    variants = out / "variants.json"
    if variants.is_file():
        lines += ["", f"{'shape':<18} {'pass':<12} {'variant':<28} {'b2b ms':>8} {'vs default':>10}"]
        for v in json.loads(variants.read_text())["rows"]:
            lines.append(f"{v['shape']:<18} {v['pass']:<12} {v['variant']:<28} "
                         f"{v['back_to_back_ms']:>8.3f} {v['speedup_vs_default']:>9.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all steps")
    parser.add_argument("--steps", help="comma-separated subset of: "
                        + ", ".join(s.name for s in STEPS))
    parser.add_argument("--run-step", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = (args.out or _out_dir()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.run_step:
        return IN_PROCESS[args.run_step](out)
    chosen = args.steps.split(",") if args.steps else [s.name for s in STEPS]
    unknown = set(chosen) - {s.name for s in STEPS}
    if unknown:
        parser.error(f"unknown step(s) {sorted(unknown)}")
    deadline = time.monotonic() + args.budget - RESERVE_S
    log = out / "log.txt"
    log.write_text(f"gpu_check {time.strftime('%Y-%m-%d %H:%M:%S')}, budget {args.budget:.0f} s\n")
    rows = []
    for step in (s for s in STEPS if s.name in chosen):
        if deadline - time.monotonic() < 1:
            rows.append((step.name, "SKIPPED (deadline)", 0.0))
            continue
        status, seconds = _run(step, out, deadline, log)
        rows.append((step.name, status, seconds))
    text = _summary(rows, out)
    (out / "summary.txt").write_text(text + "\n")
    print(text, flush=True)
    return 0 if all(s == "ok" or s.startswith("SKIPPED") for _, s, _ in rows) else 1


# --- the steps that run in this script's own process ------------------------------------------


def _env(out: Path) -> int:
    """Versions of everything the results depend on, into env.json."""
    from importlib import metadata

    def run(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=15).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unavailable: {e}"

    info = {
        "python": sys.version, "platform": platform.platform(),
        "gpu": run("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                   "--format=csv,noheader"),
        "tools": {t: run(t, "--version").splitlines()[-1:] if shutil.which(t) else None
                  for t in ("nvcc", "ncu", "compute-sanitizer")},
        "packages": {},
    }
    for module in ("minitorch-resnext", "numpy", "cupy", "torch", "numba", "pytest"):
        try:
            info["packages"][module] = metadata.version(module)
        except metadata.PackageNotFoundError:
            for dist in metadata.packages_distributions().get(module, ()):
                info["packages"][dist] = metadata.version(dist)
    (out / "env.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))
    return 0 if "cupy" in json.dumps(info["packages"]) else 1


def _geometries() -> list:
    """The benchmark's shapes at BATCH and the tests' model shapes."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cuda_compile import MODEL_SHAPES

    from minitorch_resnext.bench.conv import SHAPES

    return [s.geometry(BATCH) for s in SHAPES] + MODEL_SHAPES


def _compile(kernel) -> tuple:
    """(kernel, registers, local memory bytes, function attributes) of one kernel, compiled
    by NVRTC through CuPy, which keeps the binary in its cache for the later steps."""
    import cupy

    from minitorch_resnext.kernels.cuda.runtime import COMPILE_OPTIONS, kernel_source

    module = cupy.RawModule(code=kernel_source(kernel.source), options=COMPILE_OPTIONS,
                            name_expressions=(kernel.name,))
    function = module.get_function(kernel.name)
    return kernel, function.num_regs, function.local_size_bytes


def _precompile(out: Path) -> int:
    """Compile every planned kernel in parallel; check each plan's registers and occupancy."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import cupy

    from minitorch_resnext.kernels import cuda
    from minitorch_resnext.kernels.cuda import direct
    from minitorch_resnext.kernels.cuda.occupancy import blocks_per_sm
    from minitorch_resnext.kernels.cuda.runtime import cupy_runtime

    device = cupy_runtime().device
    geometries = _geometries()
    kernels = sorted({k for g in geometries for ctype in ("float", "double")
                      for k in cuda.planned_kernels(g, ctype, device)}, key=lambda k: k.name)
    start = time.monotonic()
    workers = min(16, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        compiled = {k: (regs, local) for k, regs, local in pool.map(_compile, kernels)}
    print(f"compiled {len(kernels)} kernels in {time.monotonic() - start:.0f} s on {workers} processes")
    occupancy = getattr(cupy.cuda.driver, "occupancyMaxActiveBlocksPerMultiprocessor", None)
    functions = {}
    plans, failures = [], 0
    for g in geometries:
        for ctype in ("float", "double"):
            for pass_ in ("forward", "grad_input", "grad_weight"):
                for params in direct.ALGORITHM.candidates(pass_, g):
                    launch = direct.plan(pass_, g, ctype, device, **params)
                    regs, local = compiled[launch.kernel]
                    assumed = blocks_per_sm(device, launch.block, launch.registers, launch.shared)
                    model = blocks_per_sm(device, launch.block, regs, launch.shared)
                    measured = None
                    if occupancy is not None:
                        if launch.kernel not in functions:
                            functions[launch.kernel] = _function(launch.kernel)
                        measured = occupancy(functions[launch.kernel].kernel.ptr, launch.block,
                                             launch.shared)
                    ok = regs <= launch.registers and local == 0 and model >= assumed
                    failures += not ok
                    plans.append({"geometry": str(g), "ctype": ctype, "pass": pass_,
                                  "params": params, "kernel": launch.kernel.name,
                                  "block": launch.block, "shared": launch.shared,
                                  "grid": launch.grid, "register_budget": launch.registers,
                                  "registers": regs, "local_bytes": local,
                                  "assumed_blocks_per_sm": assumed, "model_blocks_per_sm": model,
                                  "cuda_blocks_per_sm": measured, "ok": ok})
    (out / "kernels.json").write_text(json.dumps({
        "device": str(device), "kernels": {k.name: {"registers": r, "local_bytes": b}
                                           for k, (r, b) in compiled.items()},
        "plans": plans}, indent=1))
    for p in plans:
        if not p["ok"] or p["cuda_blocks_per_sm"] not in (None, p["model_blocks_per_sm"]):
            print(f"{'FAIL' if not p['ok'] else 'model != CUDA'}: {p}")
    print(f"{len(plans)} plans, {failures} fail their register budget or occupancy")
    return 1 if failures else 0


def _function(kernel):
    """The loaded cupy.RawKernel of a kernel (from CuPy's cache after the precompile)."""
    import cupy

    from minitorch_resnext.kernels.cuda.runtime import COMPILE_OPTIONS, kernel_source

    return cupy.RawModule(code=kernel_source(kernel.source), options=COMPILE_OPTIONS,
                          name_expressions=(kernel.name,)).get_function(kernel.name)


def _calls(shape_name: str):
    """(geometry, {pass: [(variant, call)]}) of a benchmark shape: every parameter value of the
    chosen algorithm of each pass, on float32 CuPy arrays of BATCH images."""
    import cupy
    import numpy as np

    from minitorch_resnext.bench.conv import SHAPES
    from minitorch_resnext.kernels import cuda
    from minitorch_resnext.kernels.selection import Choice

    g = next(s for s in SHAPES if s.name == shape_name).geometry(BATCH)
    rng = np.random.default_rng(0)
    x, w, gy = (cupy.asarray(rng.standard_normal(s, dtype=np.float32))
                for s in (g.input_shape, g.weight_shape, g.output_shape))
    run = {"forward": lambda c: cuda.conv2d_forward(x, w, None, g, c),
           "grad_input": lambda c: cuda.conv2d_grad_input(gy, w, g, c),
           "grad_weight": lambda c: cuda.conv2d_grad_weight(x, gy, g, c)}
    calls = {}
    for pass_, chosen in cuda.conv2d_algorithm(g):
        algorithm = cuda.ALGORITHMS[chosen.algorithm]
        calls[pass_] = [
            (f"{chosen.algorithm} {','.join(f'{k}={v}' for k, v in params.items()) or 'default'}",
             functools.partial(run[pass_], Choice(chosen.algorithm, params, "variant")))
            for params in algorithm.candidates(pass_, g)]
    return g, calls


def _variants(out: Path) -> int:
    """Time every variant of each pass of the benchmark's shapes side by side."""
    import cupy
    import numpy as np

    from minitorch_resnext.bench import _common as common
    from minitorch_resnext.bench.conv import SHAPES

    timer = common.cuda_event_timer(cupy)
    rows, bad = [], 0
    for shape in SHAPES:
        _, calls = _calls(shape.name)
        for pass_, variants in calls.items():
            candidates = [common.Candidate(name, fn, 10) for name, fn in variants]
            latency = common.time_interleaved(candidates, timer)
            b2b = common.time_interleaved([common.Candidate(c.name, c.fn, 5, warmup=0)
                                           for c in candidates], common.back_to_back(timer, 10))
            default = candidates[0]
            want = cupy.asnumpy(default.result)
            for c in candidates:
                err = float(np.max(np.abs(cupy.asnumpy(c.result) - want)) / max(np.max(np.abs(want)), 1e-30))
                bad += err > 1e-3
                rows.append({"shape": shape.name, "pass": pass_, "variant": c.name,
                             "latency_ms": latency[c.name].median * 1e3,
                             "back_to_back_ms": b2b[c.name].median * 1e3,
                             "speedup_vs_default": b2b[default.name].median / b2b[c.name].median,
                             "max_rel_err_vs_default": err})
                print(f"{shape.name:<18} {pass_:<12} {c.name:<28} {rows[-1]['latency_ms']:8.3f} ms "
                      f"{rows[-1]['back_to_back_ms']:8.3f} ms b2b  {rows[-1]['speedup_vs_default']:.2f}x",
                      flush=True)
    (out / "variants.json").write_text(json.dumps({"batch": BATCH, "dtype": "float32", "rows": rows},
                                                  indent=1))
    return 1 if bad else 0


def _ncu_driver(out: Path) -> int:
    """Each variant of each pass of the ncu shapes once, for Nsight Compute to measure."""
    import cupy

    for name in NCU_SHAPES:
        for variants in _calls(name)[1].values():
            for _, call in variants:
                call()
    cupy.cuda.Device().synchronize()
    return 0


IN_PROCESS = {"env": _env, "precompile": _precompile, "variants": _variants,
              "ncu-driver": _ncu_driver}

if __name__ == "__main__":
    sys.exit(main())
