"""Choosing each convolution's algorithm by timing the candidates on this machine (the idea of
`torch.backends.cudnn.benchmark`), with the choices kept on disk.

The rule tables (`rules.py`) were set by timing on one CPU, and what is fastest on another
differs. For a geometry, dtype and pass, the tuner runs every candidate, i.e. each algorithm
that computes the pass with each combination of its tuning parameters
(`ConvAlgorithm.candidates`), on random inputs of that shape: a warm-up call and a timed one
each, then only the candidates within `CUT` of the fastest for
`ROUNDS - 1` more interleaved rounds; the lowest median wins, and the rule's own choice
keeps its place unless another beats it by `MARGIN` (closer than that is timing noise). The
choice says it was tuned and lists what was measured (`Choice.measured`).

When it runs, with users in mind:

- Off by default, as `torch.backends.cudnn.benchmark` is: timing every candidate compiles
  every algorithm's kernels, which a first run would pay for (a fresh `resnext_small` first
  step compiled for 145 s with tuning, where the rules' kernels take about 50). On with
  `MINITORCH_TUNE=1`, `set_enabled(True)` or ``with enabled():``, for convolutions of at
  least `MIN_MACS` multiply-adds (below that the candidates differ by microseconds and the
  rules are fine); `minitorch-resnext tune MODEL --batch N` tunes a model ahead of time.
- A pass is tuned the first time it runs on a geometry, i.e. in the first step of training or
  the warm-up call of a benchmark, never in a timed call that has been warmed up. The first
  tuning of a process is announced once on stderr. Tuning on first use stops after `BUDGET_S`
  seconds per process (the rest then runs the rules and is tuned by a later run);
  `minitorch-resnext tune MODEL --batch N` tunes a whole model ahead of time, unbounded.
- Choices are kept in one JSON file per machine and setting: CPU model, ISA and code
  generation, Numba's and BLAS's thread counts (im2col + GEMM runs on BLAS's when Numba has
  one thread), package and Numba versions and the kernels' sources name it, so a change of any
  of them measures again. The file is in ``$MINITORCH_CACHE_DIR/tuning`` (default
  ``~/.cache/minitorch-resnext``, or under ``$XDG_CACHE_HOME``), written atomically (a
  temporary file renamed over it, entries of other processes merged first); unreadable or
  foreign files are ignored, never unpickled or executed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import astuple
from importlib import metadata
from pathlib import Path
from typing import Any

import numba
import numpy as np

from ..geometry import Conv2dGeometry
from ..selection import Choice, ConvAlgorithm, Measurement, Pass
from .blas_threads import blas_thread_count
from .target import TARGET, cpu_model

ENV = "MINITORCH_TUNE"  # "0", "off", "false" or "no": rules only
CACHE_ENV = "MINITORCH_CACHE_DIR"
MIN_MACS = 1 << 22  # tuned from this many multiply-adds per pass (about 0.1 ms of work)
BUDGET_S = 30.0  # tuning on first use per process, compilation included
ROUNDS = 3  # timed rounds of the candidates that survive the first
CUT = 1.5  # after the first round, candidates slower than CUT x the fastest stop
MARGIN = 1.05  # the rule's choice stays unless another candidate is this much faster

# run(pass_, geometry, choice, *operands): one candidate (a forced choice) of a pass
Run = Callable[..., Any]


def switched_on(value: str | None) -> bool:
    """Whether a value of MINITORCH_TUNE turns tuning on (unset: off)."""
    return (value or "").strip().lower() not in ("", "0", "off", "false", "no")


_state: dict[str, Any] = {
    "enabled": switched_on(os.environ.get(ENV)),
    "spent_s": 0.0,  # tuning on first use in this process
    "announced": False,
    "unsaved": False,  # a write failed (said once)
}
# this process's choices, by (pass, geometry, dtype, Numba's threads, BLAS's threads)
_memory: dict[tuple, Choice] = {}


def is_enabled() -> bool:
    """Whether convolutions run measured choices (else the rule tables' alone)."""
    return bool(_state["enabled"])


def set_enabled(on: bool) -> None:
    """Turn tuning on or off for this process (the default comes from MINITORCH_TUNE)."""
    _state["enabled"] = bool(on)


@contextlib.contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Tuning on (or off) inside the block."""
    saved = _state["enabled"]
    _state["enabled"] = bool(on)
    try:
        yield
    finally:
        _state["enabled"] = saved


def worth_tuning(geometry: Conv2dGeometry) -> bool:
    """Whether a convolution is large enough for its candidates to differ (`MIN_MACS`)."""
    return geometry.macs >= MIN_MACS


# --- the choices on disk -------------------------------------------------------------------

def cache_dir() -> Path:
    """Where tuned choices are kept (module docstring)."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "minitorch-resnext"
    return root / "tuning"


@functools.cache
def _sources() -> str:
    """A digest of the CPU kernels' sources: a changed kernel is measured again."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def _versions() -> dict[str, str]:
    versions = {}
    for name in ("minitorch-resnext", "numba", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def machine() -> dict[str, Any]:
    """What the choices depend on besides the convolution: the file's header."""
    return {"cpu": cpu_model(), "isa": TARGET.describe(), "features": TARGET.features,
            "threads": numba.get_num_threads(), "blas_threads": blas_thread_count(),
            "versions": _versions(), "sources": _sources()}


def cache_file(header: Mapping[str, Any]) -> Path:
    """The file of the choices made under `header` (`machine()`): one per machine and setting."""
    name = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"conv-{name}.json"


def _read(path: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a choices file, or none if it is missing, unreadable or not ours."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("machine") != header:
        return {}
    entries = data.get("choices")
    return entries if isinstance(entries, dict) else {}


def _write(path: Path, header: Mapping[str, Any], entries: Mapping[str, Any]) -> None:
    """Merge `entries` into the file (another process may have added its own) and replace it
    in one rename; a cache that cannot be written only costs a measurement next time."""
    merged = {**_read(path, header), **entries}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"machine": header, "choices": merged}, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        if not _state["unsaved"]:
            print(f"minitorch-resnext: could not save tuned choices to {path} ({e}); they are "
                  f"measured again in every run (set {CACHE_ENV} to a writable folder)",
                  file=sys.stderr)
        _state["unsaved"] = True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _key(pass_: Pass, geometry: Conv2dGeometry, dtype: np.dtype) -> str:
    return json.dumps([pass_, dtype.name, astuple(geometry)])


def _to_json(choice: Choice) -> dict[str, Any]:
    return {"algorithm": choice.algorithm, "params": dict(choice.params),
            "reason": choice.reason,
            "measured": [[m.algorithm, dict(m.params), m.ms] for m in choice.measured]}


def _from_json(entry: Any, algorithms: Mapping[str, ConvAlgorithm], pass_: Pass,
               geometry: Conv2dGeometry) -> Choice | None:
    """The stored choice, if it still names a candidate of this pass and geometry."""
    try:
        choice = Choice(entry["algorithm"], dict(entry["params"]), str(entry["reason"]), "tuned",
                        tuple(Measurement(a, dict(p), float(ms)) for a, p, ms in entry["measured"]))
    except (KeyError, TypeError, ValueError):
        return None
    algorithm = algorithms.get(choice.algorithm)
    if algorithm is None or dict(choice.params) not in list(algorithm.candidates(pass_, geometry)):
        return None
    return choice


# --- measuring -----------------------------------------------------------------------------

def _operands(pass_: Pass, geometry: Conv2dGeometry, dtype: np.dtype
              ) -> list[np.ndarray | None]:
    """Random inputs of the pass, in its kernel's order (forward: x, w and no bias)."""
    rng = np.random.default_rng(0)
    shapes = {"forward": (geometry.input_shape, geometry.weight_shape),
              "grad_input": (geometry.output_shape, geometry.weight_shape),
              "grad_weight": (geometry.input_shape, geometry.output_shape)}[pass_]
    arrays: list[np.ndarray | None] = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return arrays + [None] if pass_ == "forward" else arrays


def measure(calls: Sequence[Callable[[], Any]], rounds: int = ROUNDS, cut: float = CUT
            ) -> list[float]:
    """Median seconds of each call: a first call each that is not a sample (it may compile,
    load the kernel from Numba's cache or fault in the output's pages: seconds where a warm
    call takes milliseconds), a second that is, then `rounds` - 1 interleaved rounds for
    those within `cut` of the fastest (the others keep their one time)."""
    samples = []
    for call in calls:
        call()
        samples.append([_seconds(call)])
    best = min(s[0] for s in samples)
    survivors = [i for i, s in enumerate(samples) if s[0] <= cut * best]
    for _ in range(rounds - 1):
        for i in survivors:
            samples[i].append(_seconds(calls[i]))
    return [float(np.median(s)) for s in samples]


def _seconds(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def tune(pass_: Pass, geometry: Conv2dGeometry, dtype: np.dtype, rule: Choice,
         algorithms: Mapping[str, ConvAlgorithm], run: Run) -> Choice:
    """Measure every candidate of this pass (`run` calls one on operands) and return the
    fastest as a tuned choice; the rule's choice wins ties within MARGIN."""
    candidates = [Choice(name, params, "", "forced")
                  for name, algorithm in algorithms.items()
                  for params in algorithm.candidates(pass_, geometry)]
    operands = _operands(pass_, geometry, dtype)
    times = measure([lambda c=c: run(pass_, geometry, c, *operands) for c in candidates])
    measured = sorted((Measurement(c.algorithm, c.params, round(t * 1e3, 4))
                       for c, t in zip(candidates, times)), key=lambda m: m.ms)
    best = measured[0]
    ruled = [m for m in measured if (m.algorithm, dict(m.params)) == (rule.algorithm,
                                                                      dict(rule.params))]
    if ruled and ruled[0].ms <= MARGIN * best.ms:
        best = ruled[0]
    where = (f"{TARGET.isa.name}, {numba.get_num_threads()} thread(s), BLAS on "
             f"{blas_thread_count()}")
    reason = (f"fastest of {len(measured)} candidates timed on this machine ({where}); the "
              f"rules would run {rule.algorithm}")
    return Choice(best.algorithm, best.params, reason, "tuned", tuple(measured))


def choice(pass_: Pass, geometry: Conv2dGeometry, dtype: np.dtype, rule: Choice,
           algorithms: Mapping[str, ConvAlgorithm], run: Run, bounded: bool = True) -> Choice:
    """The tuned choice of this pass: from this process, the file, or measured now (and
    stored); the rule's if tuning is off, the convolution is small, there is only one
    candidate, or (`bounded`) this process's tuning time on first use is spent."""
    dtype = np.dtype(dtype)
    if not is_enabled() or not worth_tuning(geometry):
        return rule
    memo = (pass_, geometry, dtype.name, numba.get_num_threads(), blas_thread_count())
    if memo in _memory and (bounded or _memory[memo].source == "tuned"):
        return _memory[memo]
    header = machine()
    path, key = cache_file(header), _key(pass_, geometry, dtype)
    found = _from_json(_read(path, header).get(key), algorithms, pass_, geometry)
    if found is None:
        single = sum(1 for a in algorithms.values() for _ in a.candidates(pass_, geometry)) < 2
        if single or (bounded and _state["spent_s"] >= BUDGET_S):
            _memory[memo] = rule  # for this process: a later one may tune it
            return rule
        _announce(path, bounded)
        start = time.perf_counter()
        found = tune(pass_, geometry, dtype, rule, algorithms, run)
        if bounded:
            _state["spent_s"] += time.perf_counter() - start
            if _state["spent_s"] >= BUDGET_S:
                print(f"minitorch-resnext: {BUDGET_S:g} s of tuning spent in this run; the "
                      "convolutions not yet measured run the rules until a later run or "
                      "`minitorch-resnext tune` measures them", file=sys.stderr, flush=True)
        _write(path, header, {key: _to_json(found)})
    _memory[memo] = found
    return found


def _announce(path: Path, bounded: bool) -> None:
    if _state["announced"] or not bounded:
        return
    _state["announced"] = True
    print(f"minitorch-resnext: timing the CPU convolution algorithms on this machine, once per "
          f"shape (choices kept in {path.parent}; {ENV}=0 uses the built-in rules)...",
          file=sys.stderr, flush=True)


def forget() -> None:
    """Start over as a new process would (the file stays): no choice in memory, no tuning time
    spent, nothing announced yet."""
    _memory.clear()
    _state.update(spent_s=0.0, announced=False, unsaved=False)
