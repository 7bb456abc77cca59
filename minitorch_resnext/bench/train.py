"""`minitorch-resnext bench train`: images/s of a training step, side by side with PyTorch.

A step is forward, cross-entropy, backward and an SGD update (momentum 0.9, weight decay
5e-4) on a fixed random batch, in train mode, ending with `loss.item()` (so the device has
finished). Each engine runs in a process of its own (Numba's and PyTorch's OpenMP runtimes
in one process slow each other down), is warmed up outside the timing (Numba compilation,
oneDNN/cuDNN set-up), and the two are timed in interleaved rounds with the same threads and
summarised by their median (rounds of `TURN` steps per engine, the first of each untimed).
The PyTorch model is a twin built from this package's model,
module by module, with the same weights (checked: both give the same logits on the
benchmark batch). Models: the default small ResNeXt on 16x16 digits, and
the paper's CIFAR ResNeXt-29 8x64d at a quarter of its width on 32x32 images. Each model is
timed at every thread count of `--threads` (default: 1 and all cores), and so is its batch
norm alone: forward and backward of every batch norm layer of the model, at the shapes the
step gives them.

`--profile` prints where this package's step goes (`minitorch_resnext.profile`) beside the
step totals. `--recipe` also runs the default training recipe (`minitorch-resnext train`)
end to end in both engines, from the same initial weights and the same data pipeline, and
reports wall time and test accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import _common as common
from ._worker import Worker, interleave, set_worker_threads

HELP = "time training steps (forward, backward, SGD) of ResNeXt models against PyTorch"
PROJECT, TORCH = "minitorch", "torch"
REL_TOL = 1e-3  # largest max|a - b| / max|b| accepted between the two engines' logits
# Steps per turn of an engine; the first of each turn is not timed: after the other engine's
# turn, caches are cold and OpenMP threads asleep, which costs PyTorch up to 2x on 2 cores.
TURN = 6
STEP, BATCH_NORM = "step", "batch norm"  # what a worker times


@dataclass(frozen=True)
class ModelCase:
    """A model and the input it is benchmarked on."""

    name: str
    description: str
    build: Callable[[], Any]
    image_shape: tuple[int, int, int]
    num_classes: int = 10


def _cases() -> tuple[ModelCase, ...]:
    from .. import models

    return (
        ModelCase("resnext_small", "the default model: ResNeXt 8x4d, 3 stages of 1 block, "
                  "outputs 64/128/256, 16x16 digits",
                  lambda: models.resnext_small(num_classes=10, in_channels=1), (1, 16, 16)),
        ModelCase("resnext29_8x16d", "ResNeXt-29 8x64d at 1/4 width: planes 16/32/64, d=16, "
                  "stem 16, outputs 64/128/256, 32x32 colour images",
                  lambda: models.build_resnext(29, cardinality=8, base_width=64, stem="cifar",
                                               planes=(16, 32, 64), stem_width=16,
                                               num_classes=10, in_channels=3), (3, 32, 32)),
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `bench train` to its parser."""
    names = [c.name for c in _cases()]
    parser.add_argument("--models", nargs="+", choices=names, default=names, metavar="NAME",
                        help=f"models to time (default: all): {', '.join(names)}")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=64, help="images per step (default: 64)")
    parser.add_argument("--repeats", type=int,
                        help="timed steps per engine (default: 10 on cpu, 30 on cuda)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--threads", type=int, nargs="+", metavar="N",
                        help="CPU threads for Numba, BLAS and PyTorch, one run each (default: 1 "
                             "and numba.get_num_threads())")
    parser.add_argument("--profile", action="store_true",
                        help="also print where this package's step goes, op by op")
    parser.add_argument("--recipe", action="store_true",
                        help="also run the default training recipe end to end in both engines "
                             "(on the largest --threads)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="directory for the JSON result (default: bench-results)")


def run(args: argparse.Namespace) -> int:
    """Run `bench train`: time training steps against PyTorch, print the table, write JSON."""
    import numba

    from ..backend import get_backend

    try:
        get_backend(args.device)
    except RuntimeError as e:
        raise SystemExit(f"bench train: {e}") from None
    repeats = args.repeats if args.repeats is not None else (10 if args.device == "cpu" else 30)
    if min(repeats, args.batch) < 1 or args.warmup < 0:
        raise SystemExit("bench train: --repeats and --batch must be positive, --warmup >= 0")
    all_threads = common.set_threads(None, "bench train")
    thread_counts = sorted(set(args.threads or [1, all_threads]))
    for n in thread_counts:
        common.set_threads(n, "bench train")
    torch, torch_info = common.load_torch(args.device, all_threads)
    if "note" in torch_info:
        print(f"note: {torch_info['note']}")
    engines = [PROJECT] + ([TORCH] if torch is not None else [])
    machine = common.machine_info()
    load = os.getloadavg()[0]  # other work on the machine skews both engines, multi-threaded most
    print(f"bench train on {args.device} ({machine['cpu']}, {machine['isa']}; "
          f"{numba.config.NUMBA_NUM_THREADS} cores): batch {args.batch}, median of {repeats} "
          f"steps after {args.warmup} warm-up steps, {' and '.join(map(str, thread_counts))} "
          f"thread(s), load average {load:.1f}")

    results, norms, profiles, recipe = [], [], {}, None
    for case in (c for c in _cases() if c.name in args.models):
        for threads in thread_counts:
            for subject, into in ((STEP, results), (BATCH_NORM, norms)):
                rows, report = _bench_case(case, subject, args, repeats, engines, threads)
                print(f"  {case.name} {subject}, {threads} thread(s): " + ", ".join(
                    f"{r['engine']} {r['median_ms']:.1f} ms" for r in rows), flush=True)
                into += rows
                if report:
                    profiles[f"{case.name}, {threads} thread(s)"] = report
    if args.recipe:
        recipe = _bench_recipe(args.device, engines, max(thread_counts))
    print()
    print(_table(results, "ms/step"))
    print()
    print("peak resident memory of each engine's process (imports included), and its growth "
          "over the steps")
    print(_memory_table(results))
    print()
    print("batch norm alone: forward + backward of all the model's batch norm layers, "
          "at their shapes in the step")
    print(_table(norms, "ms"))
    for title, report in profiles.items():
        print()
        print(report.replace("profile of the step", title, 1))
    if recipe is not None:
        print()
        print(_recipe_table(recipe))
    bad = [r for r in results if (r.get("max_rel_err") or 0) > REL_TOL]
    for r in bad:
        print(f"FAILED: {r['model']}: the engines' logits differ by {r['max_rel_err']:.2e} "
              f"(relative to max |logit|) > {REL_TOL:g}")

    path = args.out / f"train-{args.device}.json"
    common.write_json(path, {
        "benchmark": "train",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "machine": machine,
        "load_average_at_start": load,
        "threads": thread_counts,
        "versions": common.package_versions(
            ["minitorch-resnext", "numpy", "numba", "threadpoolctl", "torch", "cupy-cuda12x"]),
        "settings": {"batch": args.batch, "repeats": repeats, "warmup": args.warmup,
                     "step": "forward + cross_entropy + backward + SGD(momentum 0.9, wd 5e-4)",
                     "batch_norm": "F.batch_norm forward (training) + backward through autograd "
                                   "for each batch norm layer's input shape",
                     "statistic": f"median of steps timed in turns of {TURN - 1} after one "
                                  "untimed step, engines alternating, one process each"},
        "torch": torch_info,
        "results": results,
        "batch_norm": norms,
        "profiles": profiles,
        "recipe": recipe,
    })
    print(f"wrote {path}")
    return 1 if bad else 0


def torch_twin(model: Any, torch: ModuleType) -> Any:
    """A PyTorch module computing the same function as a ResNet/ResNeXt of this package,
    with the same structure, state-dict keys and weights."""
    from .. import nn as mnn
    from ..models import ResNet
    from ..models.resnext import Bottleneck

    tnn = torch.nn

    class TwinBottleneck(tnn.Module):
        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class TwinResNet(tnn.Module):
        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for i in range(1, self.num_stages + 1):
                x = getattr(self, f"layer{i}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def convert(m: Any) -> Any:
        if isinstance(m, mnn.Conv2d):
            return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                              m.dilation, m.groups, bias=m.bias is not None)
        if isinstance(m, mnn.BatchNorm2d):
            return tnn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum)
        if isinstance(m, mnn.Linear):
            return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        if isinstance(m, mnn.MaxPool2d):
            return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
        if isinstance(m, mnn.AdaptiveAvgPool2d):
            return tnn.AdaptiveAvgPool2d(m.output_size)
        if isinstance(m, mnn.ReLU):
            return tnn.ReLU()
        if isinstance(m, mnn.Identity):
            return tnn.Identity()
        if isinstance(m, mnn.Sequential):
            return tnn.Sequential(*(convert(c) for c in m.children()))
        if isinstance(m, Bottleneck | ResNet):
            twin = TwinBottleneck() if isinstance(m, Bottleneck) else TwinResNet()
            for name, child in m.named_children():
                setattr(twin, name, convert(child))
            if isinstance(m, Bottleneck) and m.downsample is None:
                twin.downsample = None
            if isinstance(m, ResNet):
                twin.num_stages = m.num_stages
            return twin
        raise TypeError(f"torch_twin: no PyTorch counterpart for {type(m).__name__}")

    twin = convert(model)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return twin.train(model.training)


def _engine(engine: str, case_name: str, subject: str, batch: int, device: str, threads: int
            ) -> tuple[Callable[[], None], Callable[[], np.ndarray], int]:
    """(one step, logits of the batch, parameter count) of `case_name` in `engine`, from
    seed-0 weights and a seed-0 random batch, so both engines start identical. The step is a
    training step, or for `subject` BATCH_NORM the batch norm layers alone."""
    import minitorch_resnext as mr

    case = next(c for c in _cases() if c.name == case_name)
    set_worker_threads(engine == PROJECT, threads, "bench train")
    mr.manual_seed(0)
    model = case.build()
    params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, *case.image_shape), dtype=np.float32)
    y_np = rng.integers(0, case.num_classes, batch)
    if engine == PROJECT:
        from .. import functional as F
        from .. import optim

        model.to(device)
        x, y = mr.tensor(x_np, device=device), mr.tensor(y_np, device=device)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step() -> None:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()

        def logits() -> np.ndarray:
            with mr.no_grad():
                return model(x).numpy()

        if subject == BATCH_NORM:
            step = _batch_norm_step(_batch_norm_inputs(model, x),
                                    lambda a: mr.tensor(a, device=device), F.batch_norm)
        return step, logits, params

    torch, _ = common.load_torch(device, threads)
    shapes = _batch_norm_inputs(model, mr.tensor(x_np)) if subject == BATCH_NORM else []
    twin = torch_twin(model, torch).to(device)
    tx, ty = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
    topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def torch_step() -> None:
        loss = torch.nn.functional.cross_entropy(twin(tx), ty)
        topt.zero_grad(set_to_none=True)
        loss.backward()
        topt.step()
        loss.item()

    def torch_logits() -> np.ndarray:
        with torch.no_grad():
            return twin(tx).cpu().numpy()

    if subject == BATCH_NORM:
        torch_step = _batch_norm_step(shapes, lambda a: torch.from_numpy(a).to(device),
                                      torch.nn.functional.batch_norm)
    return torch_step, torch_logits, params


def _batch_norm_inputs(model: Any, x: Any) -> list[tuple[int, ...]]:
    """The input shape of every batch norm layer in one forward of `model` on `x`."""
    from .. import nn
    from ..autograd import no_grad

    shapes: list[tuple[int, ...]] = []
    forward = nn.BatchNorm2d.forward

    def record(bn: Any, t: Any) -> Any:
        shapes.append(t.shape)
        return forward(bn, t)

    nn.BatchNorm2d.forward = record  # type: ignore[method-assign]
    try:
        with no_grad():
            model(x)
    finally:
        nn.BatchNorm2d.forward = forward  # type: ignore[method-assign]
    return shapes


def _batch_norm_step(shapes: list[tuple[int, ...]], as_tensor: Callable[[np.ndarray], Any],
                     batch_norm: Callable[..., Any]) -> Callable[[], None]:
    """Forward (training) and backward of batch norm at each of `shapes`, in one engine:
    `as_tensor` makes its tensors from float32 arrays, `batch_norm` is its functional form."""
    layers = []
    for seed, shape in enumerate(shapes):
        rng = np.random.default_rng(seed)
        c = shape[1]
        x, g = (as_tensor(rng.standard_normal(shape, dtype=np.float32)) for _ in range(2))
        w = as_tensor(rng.uniform(0.5, 2.0, c).astype(np.float32))
        b = as_tensor(rng.standard_normal(c, dtype=np.float32))
        stats = (as_tensor(np.zeros(c, np.float32)), as_tensor(np.ones(c, np.float32)))
        layers.append((x.requires_grad_(), g, w.requires_grad_(), b.requires_grad_(), stats))

    def step() -> None:
        for x, g, w, b, (mean, var) in layers:
            x.grad = w.grad = b.grad = None
            batch_norm(x, mean, var, w, b, training=True).backward(g)
        float(layers[-1][0].grad.sum())  # the device has finished

    return step


def _bench_case(case: ModelCase, subject: str, args: argparse.Namespace, repeats: int,
                engines: list[str], threads: int) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of the timing of `subject` (a training step or the batch norm layers), and for a
    step with `--profile`, this package's profile."""
    workers = [Worker(e, _engine, (e, case.name, subject, args.batch, args.device, threads),
                      threads) for e in engines]
    report = None
    try:
        logits = [w.ask("output") for w in workers]  # same weights, before any update
        for w in workers:
            w.ask(args.warmup)
        samples = interleave(workers, repeats, TURN)
        memory = [w.ask("memory") if subject == STEP else {} for w in workers]
        if args.profile and subject == STEP:
            report = workers[0].ask(("profile", repeats))
    finally:
        for w in workers:
            w.close()
    max_rel_err = None
    if len(logits) == 2 and subject == STEP:
        max_rel_err = float(np.abs(logits[0] - logits[1]).max() / np.abs(logits[1]).max())
    base = {"model": case.name, "description": case.description, "params": workers[0].info,
            "input": list(case.image_shape), "batch": args.batch, "threads": threads}
    rows = []
    for (engine, times), used in zip(samples.items(), memory):
        stats = common.Stats.of(times)
        rows.append(base | {"engine": engine, "images_per_s": args.batch / stats.median,
                            "max_rel_err": max_rel_err if engine == PROJECT else None}
                    | used | stats.to_json())
    return rows, report


def _memory_table(results: list[dict[str, Any]]) -> str:
    """Peak resident set of each engine's process over its steps, and its growth from before
    the first step (the activations, gradients and buffers of a step)."""
    by_model: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in results:
        by_model.setdefault((r["model"], r["threads"]), {})[r["engine"]] = r
    rows = []
    for (name, threads), engines in by_model.items():
        cells = [name, str(threads)]
        for engine in (PROJECT, TORCH):
            r = engines.get(engine)
            cells += ([f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_mb'] - r['rss_before_steps_mb']:.0f}"]
                      if r else ["-", "-"])
        ours, theirs = engines[PROJECT], engines.get(TORCH)
        cells.append(f"{ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x" if theirs else "-")
        rows.append(cells)
    header = ["model", "threads", "peak RSS MB", "of which steps", "torch peak RSS MB",
              "of which steps", "ours / torch"]
    return common.format_table(header, rows, right=[False] + [True] * 6)


def _table(results: list[dict[str, Any]], unit: str) -> str:
    by_model: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in results:
        by_model.setdefault((r["model"], r["threads"]), {})[r["engine"]] = r
    rows = []
    for (name, threads), engines in by_model.items():
        ours, theirs = engines[PROJECT], engines.get(TORCH)
        shape = "x".join(map(str, ours["input"]))
        rows.append([name, f"{ours['params']:,}", shape, str(ours["batch"]), str(threads),
                     f"{ours['median_ms']:.1f}", f"{ours['images_per_s']:.1f}",
                     f"{theirs['median_ms']:.1f}" if theirs else "-",
                     f"{theirs['images_per_s']:.1f}" if theirs else "-",
                     f"{theirs['median_ms'] / ours['median_ms']:.2f}x" if theirs else "-"])
    header = ["model", "params", "input", "batch", "threads", unit, "img/s", f"torch {unit}",
              "torch img/s", "torch / ours"]
    return common.format_table(header, rows, right=[False, True, False] + [True] * 7)


def _bench_recipe(device: str, engines: list[str], threads: int) -> dict[str, Any]:
    """Wall time and test accuracy of the default recipe in each engine, each run in a fresh
    process (so each pays its own imports, dataset loading and compilation)."""
    from ..train import TrainConfig

    out: dict[str, Any] = {"config": dataclasses.asdict(TrainConfig(device=device)) | {
        "out_dir": None}, "threads": threads}
    ctx = multiprocessing.get_context("spawn")
    for engine in engines:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            out[engine] = pool.submit(_run_recipe, engine, device, threads).result()
        print(f"  recipe: {engine} {out[engine]['wall_s']:.1f} s, "
              f"{100 * out[engine]['test_acc']:.2f}%", flush=True)
    out["note"] = ("wall time from the start of training (dataset loading included, imports "
                   "not) to the last epoch's evaluation; minitorch also writes checkpoints, "
                   "metrics and curves, PyTorch does not")
    return out


def _run_recipe(engine: str, device: str, threads: int) -> dict[str, float]:
    from ..train import TrainConfig, train

    set_worker_threads(engine == PROJECT, threads, "bench train")
    with common.blas_threads(threads), tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(device=device, out_dir=tmp)
        if engine == PROJECT:
            start = time.perf_counter()
            acc = train(config, progress=False, log=lambda _: None).history[-1]["test_acc"]
        else:
            torch, _ = common.load_torch(device, threads)
            start = time.perf_counter()
            acc = _torch_recipe(config, torch)
        return {"wall_s": time.perf_counter() - start, "test_acc": acc}


def _torch_recipe(config: Any, torch: ModuleType) -> float:
    """The recipe of `config` in PyTorch: the same data, initial weights and schedule as
    `train(config)`; returns the final test accuracy."""
    import minitorch_resnext as mr
    from minitorch_resnext import data
    from minitorch_resnext import train as trainer

    mr.manual_seed(config.seed)
    train_set, test_set = trainer.load_datasets(config)
    dev = "cuda" if config.device == "cuda" else "cpu"
    model = torch_twin(trainer.build_model(config, train_set), torch).to(dev)
    loader = data.DataLoader(train_set, config.batch_size, shuffle=True, seed=config.seed,
                             transform=trainer.train_transform(train_set, config.augment))
    test_loader = data.DataLoader(test_set, config.eval_batch_size,
                                  transform=data.transforms.Normalize(train_set.mean, train_set.std))
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=config.nesterov)
    sched = trainer.make_scheduler(config, opt, len(loader), torch.optim.lr_scheduler)
    acc = 0.0
    for epoch in range(config.epochs):
        model.train()
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(x.numpy()).to(dev)), torch.from_numpy(y.numpy()).to(dev),
                label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss.item()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                pred = model(torch.from_numpy(x.numpy()).to(dev)).argmax(1).cpu().numpy()
                correct += int((pred == y.numpy()).sum())
        acc = correct / len(test_set)
    return acc


def _recipe_table(recipe: dict[str, Any]) -> str:
    c = recipe["config"]
    rows = [[engine, f"{r['wall_s']:.1f}", f"{100 * r['test_acc']:.2f}%"]
            for engine, r in recipe.items() if engine in (PROJECT, TORCH)]
    title = (f"default recipe on {recipe['threads']} thread(s): {c['model']} on {c['dataset']}, "
             f"{c['epochs']} epochs, batch "
             f"{c['batch_size']}, lr {c['lr']} ({c['warmup_epochs']:g} warm-up epoch(s), then "
             f"{c['schedule']}), label smoothing {c['label_smoothing']}\n")
    return title + common.format_table(["engine", "wall s", "test acc"], rows, [False, True, True])
