"""`minitorch-resnext tune MODEL`: time the CPU convolution algorithms of a model ahead of time.

Tuning otherwise happens on first use (bounded per run, see `kernels.cpu.tune`); this measures
every convolution of a model at a batch size now, so that later runs find every choice in the
cache. The model's convolutions are collected on the meta device, without running it.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from . import CommandError, positive_int

if TYPE_CHECKING:
    from ..kernels.selection import Choice

NAME = "tune"
HELP = "time the CPU convolution algorithms of a model's convolutions ahead of time (cached)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `tune` to its parser."""
    parser.add_argument("model", metavar="MODEL", help="model name, e.g. resnext50_32x4d")
    parser.add_argument("--batch", type=positive_int, default=32,
                        help="images per batch (default: 32)")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="input height and width (default: the model's own, 224 for "
                             "ImageNet models; 16 for the digits that `train` uses)")
    parser.add_argument("--forward-only", action="store_true",
                        help="tune the forward pass only (inference)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads to tune for, Numba's and BLAS's (default: "
                             "numba.get_num_threads()); choices are kept per thread count")


def run(args: argparse.Namespace) -> int:
    """Tune every distinct convolution of the model and print the choices; the exit status."""
    import numpy as np

    from ..bench._common import blas_threads, format_table, set_threads
    from ..kernels import cpu
    from ..kernels.cpu import tune
    from ..kernels.cpu.conv import ruled
    from ..kernels.cpu.target import cpu_model
    from ..kernels.selection import PASSES
    from ..models import MODELS, get_model
    from ..models.summary import conv_geometries

    if args.model not in MODELS:
        raise CommandError(f"unknown model {args.model!r}; known models: "
                           f"{', '.join(sorted(MODELS))}")
    threads = set_threads(args.threads, "tune")
    model = get_model(args.model)
    size = args.input_size or model.input_size
    geometries = conv_geometries(model, (args.batch, model.in_channels, size, size))
    unique = list(dict.fromkeys(geometries))
    passes = ("forward",) if args.forward_only else PASSES
    print(f"tune {args.model} on {args.batch}x{model.in_channels}x{size}x{size}, {args.dtype}, "
          f"{threads} thread(s): {len(geometries)} convolutions, {len(unique)} distinct")
    print(f"CPU {cpu_model()}, kernels compiled for {cpu.TARGET.describe()}")
    rows, start = [], time.perf_counter()
    # the GEMM on as many threads as the kernels; tuning asked for, whatever MINITORCH_TUNE says
    with blas_threads(threads), tune.enabled(True):
        print(f"choices kept in {tune.cache_file(tune.machine())}")
        for i, g in enumerate(unique, 1):
            began = time.perf_counter()
            choices = cpu.tune_conv2d(g, np.dtype(args.dtype), passes)
            for pass_, choice in choices.items():
                rule = ruled(pass_, g)
                rows.append([str(g) if pass_ == passes[0] else "", pass_, choice.algorithm,
                             ", ".join(f"{k}={v}" for k, v in choice.params.items()),
                             choice.source, _ms(choice, choice), _ms(choice, rule)])
            print(f"[{i}/{len(unique)}] {g}: {time.perf_counter() - began:.1f} s", flush=True)
    print()
    print(format_table(["convolution", "pass", "algorithm", "params", "chosen by", "ms",
                        "rule ms"], rows, right=[False] * 5 + [True] * 2))
    print(f"\ntuned in {time.perf_counter() - start:.1f} s; convolutions under "
          f"{tune.MIN_MACS:,} multiply-adds run the rules untuned")
    return 0


def _ms(tuned: Choice, candidate: Choice) -> str:
    """The measured time of `candidate` (a Choice) among those of a tuned choice, or '-'."""
    return next((f"{m.ms:.3g}" for m in tuned.measured if m.algorithm == candidate.algorithm
                 and dict(m.params) == dict(candidate.params)), "-")
