"""`minitorch-resnext bench conv`: the grouped-convolution kernels against PyTorch and the roofline.

For each shape, the forward, grad_input and grad_weight passes of this project's kernels
(through the device backend) are timed side by side with PyTorch (`F.conv2d` and
`torch.nn.grad.conv2d_input/conv2d_weight`, i.e. oneDNN on CPU and cuDNN on GPU, with the
same thread count) when it is installed, on CPU with ONNX Runtime (forward only: a one-node
Conv model, see `_onnx.py`) when it is installed, and on CPU with the NumPy reference
(`kernels/reference.py`). Every candidate is warmed up once (Numba / NVRTC compilation, cuDNN
autotuning) and its warm-up result is checked against PyTorch (else the reference, else this
project's result); the candidates are then timed in interleaved rounds and summarised by their
median. Targets are ratios to the faster of PyTorch and ONNX Runtime.

The reference is slow (seconds per call on the large shapes), so it is timed in the first
`--baseline-repeats` rounds only (default: 3, or every round with `--quick`); `--no-baseline`
skips it. It runs on the CPU, so `--device cuda` never times it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..kernels.geometry import Conv2dGeometry
from . import _common as common
from . import _onnx

HELP = "time grouped-conv forward/grad_input/grad_weight against PyTorch, NumPy and the roofline"

PASSES = ("forward", "grad_input", "grad_weight")
PROJECT, TORCH, BASELINE, ONNXRT = "minitorch", "torch", "numpy-ref", _onnx.ONNXRT
COMPARED = (TORCH, ONNXRT)  # the libraries the targets compare with
BACK_TO_BACK_CALLS = 20  # calls per measurement of a GPU's back-to-back throughput
# largest max|a - b| / max|b| accepted between two float32 implementations of one pass
REL_TOL = 1e-3

Shape4 = tuple[int, int, int, int]


@dataclass(frozen=True)
class BenchShape:
    """A square k x k convolution with C_in = C_out, one row of the benchmark's shape table."""

    name: str
    channels: int
    hw: int
    groups: int
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    kernel: int = 3
    note: str = ""

    @property
    def channels_per_group(self) -> int:
        return self.channels // self.groups

    def geometry(self, batch: int) -> Conv2dGeometry:
        """The convolution on a batch of `batch` images."""
        return Conv2dGeometry.of(
            (batch, self.channels, self.hw, self.hw),
            (self.channels, self.channels_per_group, self.kernel, self.kernel),
            self.stride, self.padding, self.dilation, self.groups)


SHAPES = (
    BenchShape("rx50_s1_g32x4", 128, 56, 32, note="ResNeXt-50 stage 1"),
    BenchShape("rx50_s2_g32x8_s2", 256, 56, 32, stride=2, note="ResNeXt-50 stage 2, stride 2"),
    BenchShape("rx50_s3_g32x16", 512, 14, 32, note="ResNeXt-50 stage 3"),
    BenchShape("rx50_s4_g32x32", 1024, 7, 32, note="ResNeXt-50 stage 4"),
    BenchShape("rx29_s1_g8x64", 512, 32, 8, note="ResNeXt-29 8x64d stage 1"),
    BenchShape("dense_128", 128, 56, 1, note="dense control for rx50_s1_g32x4"),
    BenchShape("dw_144", 144, 56, 144, note="depthwise"),
    BenchShape("dw_96_s2_d2", 96, 112, 96, stride=2, padding=2, dilation=2,
              note="depthwise, stride 2, dilation 2"),
)
# --quick: the same code paths (few channels per group, depthwise with stride and dilation,
# many channels per group) on shapes small enough for a smoke test
QUICK_SHAPES = (
    BenchShape("tiny_g4x4", 16, 10, 4, note="4 channels per group"),
    BenchShape("tiny_dw_s2_d2", 8, 12, 8, stride=2, padding=2, dilation=2, note="depthwise, stride 2"),
    BenchShape("tiny_g2x32", 64, 6, 2, note="32 channels per group"),
)


def conv_flops(geometry: Conv2dGeometry) -> int:
    """FLOPs of one pass, 2 per multiply-add (`Conv2dGeometry.macs`), the same for forward,
    grad_input and grad_weight (bias not counted)."""
    return 2 * geometry.macs


def conv_min_bytes(geometry: Conv2dGeometry, itemsize: int = 4) -> int:
    """Least bytes one pass moves: it reads two of x, w, y (or their gradients) once and writes
    the third once, so every pass moves all three exactly once."""
    shapes = (geometry.input_shape, geometry.weight_shape, geometry.output_shape)
    return itemsize * sum(math.prod(s) for s in shapes)


@dataclass(frozen=True)
class Target:
    """What the project's kernel should reach on a shape and pass."""

    min_speedup: float  # time of the faster of PyTorch and ONNX Runtime / project time
    min_roofline: float | None = None  # fraction of the attainable FLOP/s

    def describe(self) -> str:
        roof = "" if self.min_roofline is None else f" & >={self.min_roofline:.0%} roof"
        return f">={self.min_speedup:g}x{roof}"

    def status(self, speedup: float | None, roofline: float) -> str:
        """'met', 'missed', or 'n/a' where only the missing PyTorch time could decide."""
        if self.min_roofline is not None and roofline < self.min_roofline:
            return "missed"
        if speedup is None:
            return "n/a"
        return "met" if speedup >= self.min_speedup else "missed"


def _same(target: Target) -> dict[str, Target]:
    return dict.fromkeys(PASSES, target)


# by device, then channels per group (<= 8 incl. depthwise / 16-32 / >= 64 incl. dense), then pass
TARGETS: dict[str, dict[str, dict[str, Target]]] = {
    "cpu": {
        "few": {"forward": Target(3, 0.15), "grad_input": Target(3, 0.15), "grad_weight": Target(2, 0.15)},
        "mid": _same(Target(1)),
        "many": _same(Target(0.8)),
    },
    "cuda": {
        "few": {"forward": Target(3, 0.40), "grad_input": Target(2), "grad_weight": Target(1.5)},
        "mid": _same(Target(1)),
        "many": _same(Target(0.5)),
    },
}
# the forward pass at small batches (inference, the tutorials) has targets of its own for few
# and for 16-32 channels per group (issue 15)
SMALL_BATCH, SMALL_BATCH_FORWARD = 8, {"cpu": {"few": Target(2), "mid": Target(1)}}


def target_for(device: str, channels_per_group: int, pass_: str, batch: int = 32) -> Target:
    """The speed target against PyTorch for a device, a channels-per-group tier, a pass and a
    batch size."""
    tier = "few" if channels_per_group <= 8 else "mid" if channels_per_group <= 32 else "many"
    small = SMALL_BATCH_FORWARD.get(device, {}) if pass_ == "forward" and batch <= SMALL_BATCH else {}
    return small.get(tier) or TARGETS[device][tier][pass_]


@dataclass(frozen=True)
class _Plan:
    """What one run measures and how, resolved from the command line and the device's defaults."""

    device: str
    backend: Any
    timer: common.Timer
    shapes: list[BenchShape]
    batch: int
    repeats: int
    baseline_repeats: int  # 0: the NumPy reference is not timed
    settle_s: float  # pause before each timed call (see common.time_interleaved)
    roofline_probe: dict[str, int]  # measure_roofline's size arguments
    quick: bool


# per device: batch, repeats, settle_s, roofline probe; --quick overrides them with its own
_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": dict(batch=32, repeats=10, settle_s=0.0,
                roofline_probe=dict(matmul_n=2048, copy_bytes=256 * 2**20, repeats=5)),
    "cuda": dict(batch=64, repeats=30, settle_s=0.0,
                 roofline_probe=dict(matmul_n=8192, copy_bytes=2**30, repeats=10)),
    "quick": dict(batch=2, repeats=2, settle_s=0.0,
                  roofline_probe=dict(matmul_n=256, copy_bytes=16 * 2**20, repeats=2)),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench conv` to its parser."""
    names = [s.name for s in SHAPES + QUICK_SHAPES]
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shapes", nargs="+", metavar="NAME", choices=names,
                        help=f"shapes to run (default: all full-size ones); one of {', '.join(names)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny shapes, batch 2, 2 repeats, small roofline probes")
    parser.add_argument("--batch", type=int, help="images per batch (default: 32 on cpu, 64 on cuda)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default: 10 on cpu, 30 on cuda)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for Numba, BLAS and PyTorch (default: numba.get_num_threads())")
    parser.add_argument("--no-baseline", action="store_true", help="do not time the NumPy reference")
    parser.add_argument("--baseline-repeats", type=int,
                        help="rounds in which the NumPy reference is timed (default: min(3, --repeats))")
    parser.add_argument("--settle", type=float, metavar="SECONDS",
                        help="pause before each timed call so other libraries' spinning threads go idle "
                             "(default: 0, calls back to back as in training; a pause also lets caches "
                             "and clocks go cold, which slows some libraries more than others)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="directory for the JSON and PNG results (default: bench-results)")


def run(args: argparse.Namespace) -> int:
    """Run `bench conv`: time every shape and pass, print the table, write JSON and PNG; returns the
    exit status."""
    plan = _plan(args)
    threads = common.set_threads(args.threads, "bench conv")
    torch, torch_info = common.load_torch(plan.device, threads)
    onnxrt, onnx_info = _onnx.load(threads)
    notes = [info["note"] for info in (torch_info, onnx_info) if "note" in info]
    if plan.device != "cpu" and not args.no_baseline:
        notes.append("the NumPy reference runs on the CPU only: not timed with --device cuda")
    if plan.device != "cpu" and onnxrt is not None:
        onnxrt = None
        notes.append("ONNX Runtime is timed on its CPU execution provider only: not with --device cuda")
    for note in notes:
        print(f"note: {note}")
    machine = common.machine_info() | _gpu_info(plan) | _cpu_target(plan)
    if plan.device == "cpu":
        print(f"CPU {machine['cpu']}: kernels compiled for {machine['cpu_target']}; NumPy's "
              f"BLAS {machine['blas']}; algorithms "
              + ("tuned on this machine (MINITORCH_TUNE=0: the rules alone)" if machine["tuning"]
                 else "chosen by the rules (MINITORCH_TUNE=1: tuned on this machine)"))
    print(f"bench conv on {plan.device}: batch {plan.batch}, {plan.repeats} repeats (median), "
          f"{threads} thread(s)"
          + (f", NumPy reference in {plan.baseline_repeats} round(s)" if plan.baseline_repeats else "")
          + (f"; load average {machine['load_average_1min']:.1f}" if machine["load_average_1min"] else ""))

    with common.blas_threads(threads):
        _compile(plan)
        _tune(plan)
        torch_mm = {} if torch is None else {TORCH: lambda a, b: torch.from_dlpack(a) @ torch.from_dlpack(b)}
        probe = getattr(plan.backend.kernels, "peak_probe", None)  # the CPU's vector FMA peak
        # probes are timed after a pause: OpenBLAS's threads spin for ~0.1 s after a matmul
        settle = max(plan.settle_s, 0.2 if plan.device == "cpu" else 0.0)
        roof = common.measure_roofline(plan.backend.xp, plan.timer, threads=threads, settle_s=settle,
                                       matmuls=torch_mm, probes={"fma probe": probe()} if probe else None,
                                       **plan.roofline_probe)
        matmuls = ", ".join(f"{k} {v:.1f}" for k, v in roof.method["matmul_gflops"].items())
        print(f"roofline: peak {roof.peak_flops / 1e9:.1f} GFLOP/s (best of: {matmuls}), bandwidth "
              f"{roof.bandwidth / 1e9:.1f} GB/s (copy), balance {roof.balance:.1f} FLOP/B")
        shapes, results = [], []
        for i, shape in enumerate(plan.shapes, 1):
            record, rows = _bench_shape(shape, plan, torch, onnxrt, roof)
            print(f"[{i}/{len(plan.shapes)}] {_describe(record)}", flush=True)
            shapes.append(record)
            results += rows

    targets = _targets(plan.device, shapes, results, plan.batch)
    print()
    print(_table(results, targets))
    counts = {s: sum(t["status"] == s for t in targets) for s in ("met", "missed", "n/a")}
    print(f"\ntargets vs the faster of PyTorch and ONNX Runtime ({plan.device}): {counts['met']} met, "
          f"{counts['missed']} missed, {counts['n/a']} n/a of {len(targets)}")
    bad = [r for r in results if r["max_rel_err"] is not None and r["max_rel_err"] > REL_TOL]
    for r in bad:
        print(f"FAILED: {r['implementation']} {r['shape']} {r['pass']} differs from the check "
              f"by {r['max_rel_err']:.2e} (relative to max |value|) > {REL_TOL:g}")

    stem = args.out / f"conv-{plan.device}{'-quick' if plan.quick else ''}"
    common.write_json(stem.with_suffix(".json"), {
        "benchmark": "conv",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": plan.device,
        "machine": machine,
        "threads": threads,
        "versions": common.package_versions(
            ["minitorch-resnext", "numpy", "numba", "threadpoolctl", "matplotlib", "torch",
             "cupy", "onnx", "onnxruntime"]),
        "settings": {"batch": plan.batch, "repeats": plan.repeats, "baseline_repeats": plan.baseline_repeats,
                     "settle_s": plan.settle_s, "quick": plan.quick, "rel_tol": REL_TOL,
                     "statistic": "median of interleaved rounds after 1 warm-up"},
        "torch": torch_info,
        "onnxruntime": onnx_info,
        "notes": notes,
        "roofline": roof.to_json(),
        "shapes": shapes,
        "results": results,
        "targets": targets,
    })
    _plot(stem.with_suffix(".png"), plan, shapes, results, targets)
    print(f"wrote {stem}.json and {stem.name}.png")
    return 1 if bad else 0


def _plan(args: argparse.Namespace) -> _Plan:
    from ..backend import get_backend

    try:
        backend = get_backend(args.device)
    except RuntimeError as e:
        raise SystemExit(f"bench conv: {e}") from None
    default = _DEFAULTS["quick" if args.quick else args.device]

    def given(name: str, value: Any) -> Any:
        return default[name] if value is None else value

    repeats = given("repeats", args.repeats)
    if args.no_baseline or args.device != "cpu":
        baseline_repeats = 0
    elif args.baseline_repeats is not None:
        baseline_repeats = args.baseline_repeats
    else:
        baseline_repeats = repeats if args.quick else min(3, repeats)
    plan = _Plan(
        device=args.device, backend=backend,
        timer=common.wall_timer if args.device == "cpu" else common.cuda_event_timer(backend.xp),
        shapes=[s for s in SHAPES + QUICK_SHAPES if s.name in args.shapes] if args.shapes
        else list(QUICK_SHAPES if args.quick else SHAPES),
        batch=given("batch", args.batch), repeats=repeats, baseline_repeats=baseline_repeats,
        settle_s=given("settle_s", args.settle), roofline_probe=default["roofline_probe"], quick=args.quick,
    )
    if min(plan.repeats, plan.batch) < 1 or min(plan.baseline_repeats, plan.settle_s) < 0:
        raise SystemExit("bench conv: --repeats and --batch must be positive, --baseline-repeats "
                         "and --settle not negative")
    return plan


def _cpu_target(plan: _Plan) -> dict[str, Any]:
    """What the CPU kernels were compiled for, and whether their algorithms are tuned."""
    if plan.device != "cpu":
        return {}
    kernels = plan.backend.kernels
    return {"cpu_target": kernels.TARGET.describe(), "llvm_cpu": kernels.TARGET.cpu,
            "llvm_features": kernels.TARGET.features, "tuning": kernels.tune.is_enabled()}


def _gpu_info(plan: _Plan) -> dict[str, Any]:
    if plan.device != "cuda":
        return {}
    cuda = plan.backend.xp.cuda
    props = cuda.runtime.getDeviceProperties(cuda.Device().id)
    return {"gpu": props["name"].decode(), "gpu_memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
            "cuda_runtime": cuda.runtime.runtimeGetVersion()}


def _conv_calls(kernels: Any, x: Any, w: Any, gy: Any, geometry: Conv2dGeometry
                ) -> dict[str, Callable[[], Any]]:
    """The three passes of a kernel set with the shared contract (the backend, or the reference)."""
    return {
        "forward": lambda: kernels.conv2d_forward(x, w, None, geometry),
        "grad_input": lambda: kernels.conv2d_grad_input(gy, w, geometry),
        "grad_weight": lambda: kernels.conv2d_grad_weight(x, gy, geometry),
    }


def _torch_calls(
    torch: ModuleType, x: Any, w: Any, gy: Any, geometry: Conv2dGeometry
) -> dict[str, Callable[[], Any]]:
    """The same three passes in PyTorch (each computes only its own gradient)."""
    stride, padding, dilation, groups = geometry.args
    f, grad = torch.nn.functional, torch.nn.grad
    return {
        "forward": lambda: f.conv2d(x, w, None, stride, padding, dilation, groups),
        "grad_input": lambda: grad.conv2d_input(x.shape, w, gy, stride, padding, dilation, groups),
        "grad_weight": lambda: grad.conv2d_weight(x, w.shape, gy, stride, padding, dilation, groups),
    }


def _compile(plan: _Plan) -> None:
    """Run every pass once on one image of each shape, so JIT compilation is never timed (the
    CPU kernels' tuning waits for the batch that is timed)."""
    print("compiling kernels (first run only)...", end=" ", flush=True)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    tune = getattr(plan.backend.kernels, "tune", None)
    with tune.enabled(False) if tune is not None else contextlib.nullcontext():
        for shape in plan.shapes:
            g = shape.geometry(1)
            arrays = [plan.backend.asarray(rng.standard_normal(s, dtype=np.float32))
                      for s in (g.input_shape, g.weight_shape, g.output_shape)]
            for call in _conv_calls(plan.backend, *arrays, g).values():
                plan.timer(call)
    print(f"done in {time.perf_counter() - start:.1f} s")


def _tune(plan: _Plan) -> None:
    """Tune every shape's passes at the timed batch (a no-op where tuning is off), before
    PyTorch or ONNX Runtime has run anything: between their calls this package's two-thread
    candidates run slower than alone, unevenly, and the tuner can keep the wrong one
    (docs/benchmarks.md, "Row tiles on any width")."""
    tune_ahead = getattr(plan.backend.kernels, "tune_conv2d", None)
    if tune_ahead is not None:
        for shape in plan.shapes:
            tune_ahead(shape.geometry(plan.batch))


def _host(array: Any) -> np.ndarray:
    """A NumPy copy of a NumPy, CuPy or PyTorch array."""
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _bench_shape(
    shape: BenchShape, plan: _Plan, torch: ModuleType | None, onnxrt: _onnx.Runtime | None,
    roof: common.Roofline,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Time every implementation of the three passes of one shape: its record and result rows."""
    from ..kernels import reference

    g = shape.geometry(plan.batch)
    x_shape, w_shape, y_shape = g.input_shape, g.weight_shape, g.output_shape
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s, dtype=np.float32) for s in (x_shape, w_shape, y_shape))
    bk = plan.backend
    impls = {PROJECT: (_conv_calls(bk, *map(bk.asarray, (x, w, gy)), g), plan.repeats)}
    if torch is not None:
        on = torch.device(plan.device)
        impls[TORCH] = (_torch_calls(torch, *(torch.as_tensor(a, device=on) for a in (x, w, gy)), g),
                        plan.repeats)
    if onnxrt is not None:
        ort_forward = onnxrt.session(_onnx.conv_model(onnxrt.onnx, x_shape, w, y_shape, *g.args))
        impls[ONNXRT] = ({"forward": lambda: ort_forward(x)}, plan.repeats)
    if plan.baseline_repeats:
        impls[BASELINE] = (_conv_calls(reference, x, w, gy, g), plan.baseline_repeats)

    flops, nbytes = conv_flops(g), conv_min_bytes(g)
    attainable = roof.attainable(flops, nbytes)
    choices = bk.conv2d_algorithm(g)  # tuned by `_tune` where tuning is on
    record = {"name": shape.name, "note": shape.note, "x": x_shape, "w": w_shape, "y": y_shape,
              "stride": shape.stride, "padding": shape.padding, "dilation": shape.dilation,
              "groups": shape.groups, "channels_per_group": shape.channels_per_group,
              "flops": flops, "min_bytes": nbytes, "intensity_flop_per_byte": flops / nbytes,
              "attainable_gflops": attainable / 1e9,
              "algorithm": {p: c.algorithm for p, c in choices},
              "algorithm_params": {p: dict(c.params) for p, c in choices},
              "algorithm_reason": {p: c.reason for p, c in choices},
              "algorithm_source": {p: c.source for p, c in choices},
              "algorithm_measured": {p: [[m.algorithm, dict(m.params), m.ms] for m in c.measured]
                                     for p, c in choices}}

    rows = []
    for pass_ in PASSES:
        candidates = [common.Candidate(name, calls[pass_], n) for name, (calls, n) in impls.items()
                      if pass_ in calls]
        with torch.no_grad() if torch is not None else contextlib.nullcontext():
            stats = common.time_interleaved(candidates, plan.timer, plan.settle_s)
            b2b = _back_to_back(candidates, plan)
        outputs = {c.name: _host(c.result) for c in candidates}
        check = next((outputs[c] for c in (TORCH, BASELINE, PROJECT) if c in outputs), None)
        for name, s in stats.items():
            rate = flops / s.median
            rows.append({
                "shape": shape.name, "pass": pass_, "implementation": name, **s.to_json(),
                "gflops": rate / 1e9, "roofline_fraction": rate / attainable,
                **{f"speedup_vs_{b}": stats[b].median / s.median if b in stats else None
                   for b in COMPARED},
                "max_rel_err": None if check is None or outputs[name] is check else
                float(np.max(np.abs(outputs[name] - check)) / max(np.max(np.abs(check)), 1e-30)),
            })
            if name in b2b:
                rows[-1] |= {
                    "back_to_back_ms": b2b[name].to_json()["median_ms"],
                    "back_to_back_roofline_fraction": flops / b2b[name].median / attainable,
                    "speedup_back_to_back": (b2b[TORCH].median / b2b[name].median
                                             if TORCH in b2b else None)}
    return record, rows


def _back_to_back(candidates: list[common.Candidate], plan: _Plan) -> dict[str, common.Stats]:
    """On a GPU, each candidate's time per call over BACK_TO_BACK_CALLS calls per measurement:
    the throughput of the kernels without the host's per-call gaps, beside the latency."""
    if plan.device != "cuda":
        return {}
    again = [common.Candidate(c.name, c.fn, c.repeats, warmup=0) for c in candidates]
    return common.time_interleaved(again, common.back_to_back(plan.timer, BACK_TO_BACK_CALLS),
                                   plan.settle_s)


def _describe(record: dict[str, Any]) -> str:
    x, y = record["x"], record["y"]
    return (f"{record['name']}: {x[0]}x{x[1]}x{x[2]}x{x[3]} -> {y[1]}x{y[2]}x{y[3]}, groups "
            f"{record['groups']} ({record['channels_per_group']} ch/group), "
            f"{record['flops'] / 1e9:.3g} GFLOP, {record['min_bytes'] / 1e6:.3g} MB, "
            f"AI {record['intensity_flop_per_byte']:.3g} FLOP/B, roofline "
            f"{record['attainable_gflops']:.3g} GFLOP/s; algorithms "
            + ", ".join(f"{_SHORT[p]} {a}" + (" (tuned)" if record["algorithm_source"][p] == "tuned"
                                              else "") for p, a in record["algorithm"].items()))


def _targets(
    device: str, shapes: list[dict[str, Any]], results: list[dict[str, Any]], batch: int = 32
) -> list[dict[str, Any]]:
    """The target of every (shape, pass) of the project's kernels and whether it was met, against
    the faster of the baselines timed on it (`baseline`, None where there was none)."""
    cg = {s["name"]: s["channels_per_group"] for s in shapes}
    out = []
    for r in results:
        if r["implementation"] != PROJECT:
            continue
        t = target_for(device, cg[r["shape"]], r["pass"], batch)
        if "back_to_back_ms" in r:  # a GPU: judged on back-to-back throughput (the kernels,
            # without the host's per-call gaps), against PyTorch
            basis, speedup = "back-to-back", r["speedup_back_to_back"]
            baseline, roofline = TORCH if speedup is not None else None, r[
                "back_to_back_roofline_fraction"]
        else:  # per-call latency, against the faster of the baselines
            speedups = {b: r[f"speedup_vs_{b}"] for b in COMPARED if r[f"speedup_vs_{b}"] is not None}
            baseline = min(speedups, key=speedups.__getitem__, default=None)
            basis, speedup, roofline = "latency", speedups.get(baseline), r["roofline_fraction"]
        out.append({"shape": r["shape"], "pass": r["pass"], "target": t.describe(),
                    "min_speedup": t.min_speedup, "min_roofline_fraction": t.min_roofline,
                    "baseline": baseline, "speedup": speedup, "roofline_fraction": roofline,
                    "basis": basis, "status": t.status(speedup, roofline)})
    return out


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _table(results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> str:
    """One row per (shape, pass, implementation); the target and its status on the project's rows."""
    by_key = {(t["shape"], t["pass"]): t for t in targets}
    b2b = any("back_to_back_ms" in r for r in results)  # GPU: back-to-back time per call too
    header = ["shape", "pass", "impl", "ms", "IQR ms", "GFLOP/s", "% roof", "vs torch", "vs onnxrt",
              *(["b2b ms", "b2b vs torch"] if b2b else []), "target", "status"]
    rows, last = [], (None, None)

    def vs_torch(r: dict[str, Any], speedup: float | None) -> str:
        return "-" if speedup is None or r["implementation"] == TORCH else f"{speedup:.2f}x"

    for r in results:
        key = (r["shape"], r["pass"])
        t = by_key[key] if r["implementation"] == PROJECT else None
        vs = [r[f"speedup_vs_{b}"] for b in COMPARED]
        rows.append([
            r["shape"] if key[0] != last[0] else "", r["pass"] if key != last else "", r["implementation"],
            _ms(r["median_ms"]), f"{_ms(r['q1_ms'])}-{_ms(r['q3_ms'])}", f"{r['gflops']:.3g}",
            f"{100 * r['roofline_fraction']:.1f}",
            *("-" if v is None or r["implementation"] in COMPARED else f"{v:.2f}x" for v in vs),
            *([_ms(r["back_to_back_ms"]), vs_torch(r, r["speedup_back_to_back"])] if b2b else []),
            (f"{t['target']}" + (f" vs {t['baseline']}" if t["baseline"] else "")) if t else "",
            t["status"] if t else "",
        ])
        last = key
    return common.format_table(header, rows, right=[False] * 3 + [True] * (6 + 2 * b2b) + [False] * 2)


_SHORT = {"forward": "fwd", "grad_input": "grad_in", "grad_weight": "grad_w"}


def _plot(path: Path, plan: _Plan, shapes: list[dict[str, Any]],
          results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    """GFLOP/s of every implementation against the roofline, and the speedup over each baseline."""
    keys = [(s["name"], p) for s in shapes for p in PASSES]
    categories = [f"{name} {_SHORT[p]}" for name, p in keys]
    value = {(r["shape"], r["pass"], r["implementation"]): r for r in results}
    impls = list(dict.fromkeys(r["implementation"] for r in results))
    attainable = {s["name"]: s["attainable_gflops"] for s in shapes}
    panels = [common.BarPanel(
        title="throughput (higher is better)", ylabel="GFLOP/s (log)", categories=categories,
        series={i: [value[(*k, i)]["gflops"] if (*k, i) in value else None for k in keys] for i in impls},
        marks={"roofline (attainable)": [attainable[name] for name, _ in keys]}, group=len(PASSES),
    )]
    baselines = [b for b in COMPARED if b in impls]
    if baselines:
        target = {(t["shape"], t["pass"]): t for t in targets}
        panels.append(common.BarPanel(
            title=f"{PROJECT} speedup over {' and '.join(baselines)} (> 1: faster)",
            ylabel="their time / ours (log)", categories=categories,
            series={f"{PROJECT} vs {b}": [value[(*k, PROJECT)][f"speedup_vs_{b}"] for k in keys]
                    for b in baselines},
            marks={"target (vs the faster)": [target[k]["min_speedup"] for k in keys]}, hline=1.0,
            group=len(PASSES),
        ))
    common.plot_bars(path, panels, title=f"bench conv on {plan.device}, batch {plan.batch}, fp32")
