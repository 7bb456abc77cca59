"""`minitorch-resnext bench infer`: whole-model inference against ONNX Runtime and PyTorch.

For each model and batch size, this package's eval-mode forward (under `no_grad`) is timed
side by side with the same model exported to ONNX from its module tree (`_onnx.export`) and
run by ONNX Runtime (CPU execution provider, all graph optimisations), and with PyTorch's twin
of the model built module by module (`train.torch_twin`) when it is installed. Every engine
runs the model with its batch norms folded into the convolutions (`nn.utils.fuse_conv_bn`, what
ONNX Runtime's optimisations do to a Conv -> BatchNormalization pair anyway). This package
runs it as a frozen plan (`inference.freeze`), whose convolutions take the ReLUs and residual
additions after them as their epilogues, as ONNX Runtime fuses Conv -> Relu and Conv -> Add
-> Relu. The weights are the model's seed-0 initialisation, with BatchNorm statistics taken from one batch
of random images (so every BatchNorm normalises, as in a trained model); every engine loads
them from the same file and folds them itself.

Each engine runs in a process of its own with the same thread count (`_worker.py`). Before
anything is timed, each engine's logits on the benchmark batch are compared with this
package's, and the command stops if they differ by more than `REL_TOL`. The engines are then
timed in alternating turns of `TURN` forwards, the first of each turn untimed, and summarised
by their median.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import _common as common
from . import _onnx
from ._worker import Worker, interleave, set_worker_threads

HELP = "time whole-model inference (eval-mode forward) against ONNX Runtime and PyTorch"
PROJECT, TORCH, ONNXRT = "minitorch", "torch", _onnx.ONNXRT
OP_BY_OP = "minitorch-op-by-op"  # this package's folded model run op by op, not frozen
REL_TOL = 1e-3  # largest max|a - b| / max|b| accepted between two engines' logits
TURN = 4  # forwards per turn of an engine; the first re-warms caches and threads, untimed
MODELS = ("resnext50_32x4d", "resnet50", "resnext101_32x8d", "resnext29_8x64d", "resnext_small")
# per mode: models, batch sizes, timed forwards per engine
_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": dict(models=["resnext50_32x4d"], batch=[1, 8], repeats=10),
    "quick": dict(models=["resnext_small"], batch=[1, 2], repeats=2),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench infer` to its parser."""
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"models to time (default: resnext50_32x4d), of: {', '.join(MODELS)}")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 1 8)")
    parser.add_argument("--repeats", type=int, help="timed forwards per engine (default: 10)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads of every engine (default: numba.get_num_threads())")
    parser.add_argument("--op-by-op", action="store_true",
                        help="also time this package's folded model run op by op (the eager "
                             "forward, no fused epilogues) as an engine of its own")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: resnext_small on 16x16 images, batches 1 and 2, 2 repeats")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="directory for the JSON result (default: bench-results)")


def run(args: argparse.Namespace) -> int:
    """Run `bench infer`: time every model, engine and batch, print the table, write JSON."""
    default = _DEFAULTS["quick" if args.quick else "full"]
    names = args.models or default["models"]
    batches = args.batch or default["batch"]
    repeats = default["repeats"] if args.repeats is None else args.repeats
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"bench infer: unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    if min(repeats, *batches) < 1:
        raise SystemExit("bench infer: --repeats and --batch must be positive")
    threads = common.set_threads(args.threads, "bench infer")
    torch, torch_info = common.load_torch("cpu", threads)
    onnxrt, onnx_info = _onnx.load(threads)
    notes = [info["note"] for info in (torch_info, onnx_info) if "note" in info]
    for note in notes:
        print(f"note: {note}")
    engines = [PROJECT] + [OP_BY_OP] * args.op_by_op + [
        e for e, lib in ((ONNXRT, onnxrt), (TORCH, torch)) if lib is not None]
    machine = common.machine_info()
    print(f"bench infer on cpu: batches {', '.join(map(str, batches))}, median of {repeats} "
          f"forwards per engine, {threads} thread(s), engines {', '.join(engines)}"
          + (f"; load average {machine['load_average_1min']:.1f}" if machine["load_average_1min"] else ""))

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            weights = Path(tmp) / f"{name}.safetensors"
            _save_weights(name, weights)
            for batch in batches:
                rows = _bench_model(name, weights, batch, engines, repeats, threads)
                print(f"  {name} batch {batch}: " + ", ".join(
                    f"{r['engine']} {r['median_ms']:.4g} ms" for r in rows), flush=True)
                results += rows
    print()
    print(_table(results))

    path = args.out / f"infer-cpu{'-quick' if args.quick else ''}.json"
    common.write_json(path, {
        "benchmark": "infer",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": "cpu",
        "machine": machine,
        "threads": threads,
        "versions": common.package_versions(
            ["minitorch-resnext", "numpy", "numba", "threadpoolctl", "torch", "onnx", "onnxruntime"]),
        "settings": {"batches": batches, "repeats": repeats, "quick": args.quick, "rel_tol": REL_TOL,
                     "forward": "eval mode, no autograd; float32 NCHW; random images; this "
                                "package: a frozen plan (inference.freeze), ReLUs and residual "
                                "additions fused into the convolutions",
                     "batch_norm": "folded into the convolutions (nn.utils.fuse_conv_bn) in "
                                   "every engine",
                     "statistic": f"median of forwards timed in turns of {TURN - 1} after one "
                                  "untimed forward, engines alternating, one process each"},
        "torch": torch_info,
        "onnxruntime": onnx_info,
        "notes": notes,
        "results": results,
    })
    print(f"wrote {path}")
    return 0


def _build(name: str) -> Any:
    from ..models import get_model

    return get_model(name)


def _input_shape(model: Any) -> tuple[int, int, int]:
    return model.in_channels, model.input_size, model.input_size


def _save_weights(name: str, path: Path) -> None:
    """Seed-0 weights of `name` with each BatchNorm's running statistics set to those of one
    batch of two random images, written to `path`."""
    import minitorch_resnext as mr

    from .. import io, nn

    mr.manual_seed(0)
    model = _build(name)
    norms = {m: m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    for m in norms:
        m.momentum = 1.0  # running statistics := this batch's
    x = np.random.default_rng(1).standard_normal((2, *_input_shape(model)), dtype=np.float32)
    with mr.no_grad():
        model.train()(mr.tensor(x))
    for m, momentum in norms.items():
        m.momentum = momentum
    io.save_state_dict(model, path)


def _engine(engine: str, name: str, weights: Path, batch: int, threads: int
            ) -> tuple[Callable[[], Any], Callable[[], np.ndarray], dict[str, Any]]:
    """(one forward, the logits of the benchmark batch, facts about the model) of model `name`
    with the weights in `weights`, in `engine`; runs in the engine's worker process."""
    import minitorch_resnext as mr

    from .. import inference, io, nn
    from ..models.summary import shape_and_macs

    set_worker_threads(engine in (PROJECT, OP_BY_OP), threads, "bench infer")
    model = _build(name)
    model.load_state_dict(io.load_state_dict(weights))
    model.eval()
    x = np.random.default_rng(0).standard_normal((batch, *_input_shape(model)), dtype=np.float32)
    _, macs = shape_and_macs(model, x.shape)
    info = {"params": sum(p.numel() for p in model.parameters()), "macs": macs}
    nn.utils.fuse_conv_bn(model, inplace=True)
    if engine == PROJECT:
        tx = mr.tensor(x)
        plan = inference.freeze(model, tx)

        def forward() -> np.ndarray:
            return plan(tx).numpy()

        return forward, forward, info
    if engine == OP_BY_OP:
        tx = mr.tensor(x)

        def op_by_op() -> np.ndarray:
            with mr.no_grad():
                return model(tx).numpy()

        return op_by_op, op_by_op, info
    if engine == ONNXRT:
        onnxrt, _ = _onnx.load(threads)
        session = onnxrt.session(_onnx.export(onnxrt.onnx, model, x.shape))
        return (lambda: session(x)), (lambda: session(x)), info
    from .train import torch_twin

    torch, _ = common.load_torch("cpu", threads)
    twin, tx = torch_twin(model, torch), torch.from_numpy(x)

    def torch_forward() -> np.ndarray:
        with torch.no_grad():
            return twin(tx).numpy()

    return torch_forward, torch_forward, info


def _bench_model(name: str, weights: Path, batch: int, engines: list[str], repeats: int,
                 threads: int) -> list[dict[str, Any]]:
    """Check that every engine's logits agree with this package's, then time the forwards."""
    workers: list[Worker] = []
    try:
        for e in engines:
            workers.append(Worker(e, _engine, (e, name, weights, batch, threads), threads))
    except RuntimeError as e:  # an engine could not set the model up (e.g. export failed)
        for w in workers:
            w.close()
        raise SystemExit(f"bench infer: {name} batch {batch}: {e}") from None
    try:
        outputs = {w.name: w.ask("output") for w in workers}
        ours = outputs[PROJECT]
        errors = {e: float(np.abs(y - ours).max() / np.abs(ours).max()) for e, y in outputs.items()
                  if e != PROJECT}
        for e, err in errors.items():
            if not err <= REL_TOL:
                raise SystemExit(f"bench infer: {name} batch {batch}: {e}'s logits differ from "
                                 f"{PROJECT}'s by {err:.2e} (relative to max |logit|) > {REL_TOL:g}; "
                                 "nothing was timed")
        samples = interleave(workers, repeats, TURN)
    finally:
        for w in workers:
            w.close()
    info = workers[0].info
    stats = {e: common.Stats.of(t) for e, t in samples.items()}
    rows = []
    for engine, s in stats.items():
        ours = engine == PROJECT
        rows.append({"model": name, "batch": batch, "engine": engine, **info,
                     "images_per_s": batch / s.median, "gflops": 2 * info["macs"] / s.median / 1e9,
                     # their time / ours, on this package's row (> 1: this package is faster)
                     **{f"speedup_vs_{e}": stats[e].median / s.median if ours else None
                        for e in engines if e != PROJECT},
                     "max_rel_err": errors.get(engine)} | s.to_json())
    return rows


def _table(results: list[dict[str, Any]]) -> str:
    """One row per (model, batch, engine); the other engines' rows say how this package compares."""
    ours = {(r["model"], r["batch"]): r for r in results if r["engine"] == PROJECT}
    header = ["model", "batch", "engine", "ms", "IQR ms", "img/s", "GFLOP/s", "their ms / ours",
              "max rel err"]
    rows, last = [], None
    for r in results:
        key = (r["model"], r["batch"])
        theirs = r["engine"] != PROJECT
        rows.append([r["model"] if key != last else "", str(r["batch"]) if key != last else "",
                     r["engine"], f"{r['median_ms']:.4g}", f"{r['q1_ms']:.4g}-{r['q3_ms']:.4g}",
                     f"{r['images_per_s']:.4g}", f"{r['gflops']:.3g}",
                     f"{ours[key]['speedup_vs_' + r['engine']]:.3g}" if theirs else "-",
                     f"{r['max_rel_err']:.1e}" if theirs else "-"])
        last = key
    return common.format_table(header, rows, right=[False, True, False] + [True] * 6)
