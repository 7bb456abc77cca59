"""Helpers shared by the benchmarks: interleaved timing, the measured roofline, tables, output files.

Every benchmark follows the same method (DESIGN.md, "Performance model"): warm each candidate
up outside the timing, time the candidates side by side in interleaved rounds (A B A B ...)
so that a noisy neighbour slows all of them alike, summarise each by its median (and
quartiles), and place every result against a roofline measured in the same run with the same
threads. Heavy modules (matplotlib, threadpoolctl, CuPy) are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

# A timer runs a callable once and returns the seconds that one call took.
Timer = Callable[[Callable[[], Any]], float]


def wall_timer(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes on the host clock (for CPU work, which is synchronous)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cuda_event_timer(cupy: ModuleType) -> Timer:
    """A timer that brackets one call with CUDA events on the current stream and waits for it.

    Work launched by another library on the legacy default stream (PyTorch's default) is
    ordered with these events too, so the same timer serves both.
    """

    def timer(fn: Callable[[], Any]) -> float:
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return cupy.cuda.get_elapsed_time(start, stop) / 1e3

    return timer


@dataclass(frozen=True)
class Stats:
    """Summary of repeated timings, in seconds."""

    median: float
    q1: float
    q3: float
    min: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no timing samples")
        s = sorted(samples)
        q1, q3 = (s[0], s[0]) if len(s) == 1 else statistics.quantiles(s, n=4, method="inclusive")[::2]
        return cls(statistics.median(s), q1, q3, s[0], tuple(samples))

    def to_json(self) -> dict[str, Any]:
        """Milliseconds, rounded to the nanosecond."""

        def ms(seconds: float) -> float:
            return round(seconds * 1e3, 6)

        return {"median_ms": ms(self.median), "q1_ms": ms(self.q1), "q3_ms": ms(self.q3),
                "min_ms": ms(self.min), "samples_ms": [ms(v) for v in self.samples]}


@dataclass
class Candidate:
    """One implementation to time: `fn` runs it once on prepared inputs.

    After timing, `result` holds what the last warm-up call returned, to check what was timed.
    """

    name: str
    fn: Callable[[], Any]
    repeats: int
    warmup: int = 1
    samples: list[float] = field(default_factory=list)
    result: Any = None


def time_interleaved(
    candidates: Sequence[Candidate], timer: Timer = wall_timer, settle_s: float = 0.0
) -> dict[str, Stats]:
    """Warm every candidate up, then time them in rounds A B C A B C ...; a candidate with fewer
    repeats than the others takes part in the first rounds only. Returns their Stats by name.

    `settle_s` is slept before each timed call, so that thread pools which spin after their work
    (OpenBLAS's do for ~0.1 s) are idle again and do not steal cores from the next candidate.
    """
    for c in candidates:
        for _ in range(c.warmup):
            c.result = c.fn()
    for r in range(max(c.repeats for c in candidates)):
        for c in candidates:
            if r < c.repeats:
                time.sleep(settle_s)
                c.samples.append(timer(c.fn))
    return {c.name: Stats.of(c.samples) for c in candidates if c.samples}


@dataclass(frozen=True)
class Roofline:
    """Measured peak FLOP/s and memory bandwidth (bytes/s) of the device, and how."""

    peak_flops: float
    bandwidth: float
    method: dict[str, Any]

    @property
    def balance(self) -> float:
        """FLOP per byte at which a kernel stops being memory-bound."""
        return self.peak_flops / self.bandwidth

    def attainable(self, flops: float, nbytes: float) -> float:
        """FLOP/s the roofline allows at this arithmetic intensity: min(peak, AI * bandwidth)."""
        return min(self.peak_flops, flops / nbytes * self.bandwidth)

    def to_json(self) -> dict[str, Any]:
        return {"peak_gflops": self.peak_flops / 1e9, "bandwidth_gbs": self.bandwidth / 1e9,
                "balance_flop_per_byte": self.balance, "method": self.method}


def measure_roofline(
    xp: ModuleType,
    timer: Timer = wall_timer,
    *,
    threads: int = 1,
    matmul_n: int = 2048,
    copy_bytes: int = 256 * 2**20,
    repeats: int = 5,
    settle_s: float = 0.0,
    matmuls: dict[str, Callable[[Any, Any], Any]] | None = None,
    probes: dict[str, tuple[Callable[[], Any], float]] | None = None,
) -> Roofline:
    """Peak FLOP/s from a `matmul_n`-square float32 matmul and bandwidth from copying a
    `copy_bytes` array (bytes moved = read + write), best of `repeats` after one warm-up, timed
    interleaved with `settle_s` as in `time_interleaved`.

    `xp` is NumPy or CuPy. On NumPy the caller limits BLAS to `threads` (the matmul) and the
    copy is split over `threads` host threads, since one `np.copyto` uses a single core.
    `matmuls` adds other libraries' matmuls of the same two `xp` arrays (e.g. PyTorch's, whose
    BLAS may use wider vectors than NumPy's); `probes` adds (call, FLOPs) pairs, e.g. a vector
    FMA loop on cached operands (`kernels.cpu.peak_probe`). The peak is the fastest of them all.
    """
    rng = xp.random.default_rng(0)
    a = rng.standard_normal((matmul_n, matmul_n), dtype=xp.float32)
    b = rng.standard_normal((matmul_n, matmul_n), dtype=xp.float32)
    products = [Candidate(name, lambda f=f: f(a, b), repeats)
                for name, f in {xp.__name__: xp.matmul, **(matmuls or {})}.items()]
    flops = dict.fromkeys((c.name for c in products), 2 * matmul_n**3)
    for name, (call, n_flops) in (probes or {}).items():
        products.append(Candidate(name, call, repeats))
        flops[name] = n_flops
    src = xp.ones(copy_bytes // 4, dtype=xp.float32)
    dst = xp.empty_like(src)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        if xp.__name__ == "numpy" and threads > 1:
            chunks = list(zip(xp.array_split(dst, threads), xp.array_split(src, threads)))
            copy = Candidate("copy", lambda: list(pool.map(lambda p: xp.copyto(*p), chunks)), repeats)
        else:
            copy = Candidate("copy", lambda: xp.copyto(dst, src), repeats)
        time_interleaved([*products, copy], timer, settle_s)
    rates = {c.name: flops[c.name] / min(c.samples) for c in products}
    return Roofline(
        peak_flops=max(rates.values()),
        bandwidth=2 * src.nbytes / min(copy.samples),
        method={"matmul": f"float32 {matmul_n}x{matmul_n} @ {matmul_n}x{matmul_n}, best of {repeats}, "
                          "the fastest library" + (f", or probe {', '.join(probes)}" if probes else ""),
                "matmul_gflops": {name: round(r / 1e9, 2) for name, r in rates.items()},
                "copy": f"copy of {src.nbytes / 2**20:.0f} MiB float32 (read + write), "
                        f"{threads} thread(s), best of {repeats}"},
    )


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit the BLAS and OpenMP pools of the process (NumPy's matmul included) to `n` threads."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


def cpu_model() -> str:
    """The CPU's marketing name where the OS says it, else the architecture."""
    from ..kernels.cpu.target import cpu_model  # imports Numba: not at the CLI's start

    return cpu_model()


def compiled_isa() -> str:
    """The CPU LLVM compiles the Numba kernels for (the host's, unless NUMBA_CPU_NAME says
    otherwise) and its widest vector instructions, e.g. 'znver4, AVX-512'."""
    import numba
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    widest = next((isa for flag, isa in (("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                          ("avx", "AVX"), ("sse4.2", "SSE4.2"))
                   if features.get(flag)), "scalar")
    return f"{numba.config.CPU_NAME or binding.get_host_cpu_name()}, {widest}"


def blas() -> str:
    """NumPy's BLAS, its kernels and their vector width where it says (the rules read them)."""
    from ..kernels.cpu import blas_threads

    return blas_threads.describe()


def machine_info() -> dict[str, Any]:
    """Host facts for the JSON record, with the load average (other work skews timings)."""
    return {"hostname": platform.node(), "os": platform.platform(), "cpu": cpu_model(),
            "isa": compiled_isa(), "blas": blas(),
            "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Installed versions of the named distributions, or of those that provide a named import
    package (e.g. "cupy" -> cupy-cuda13x, whichever CUDA build is installed); absent ones are
    left out. Imports nothing."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            for distribution in metadata.packages_distributions().get(name, ()):
                found[distribution] = metadata.version(distribution)
    return found


def back_to_back(timer: Timer, calls: int) -> Timer:
    """A timer of `calls` calls in a row within one measurement, per call: on a GPU the calls
    queue behind each other, so this is the device's throughput without the host's per-call
    planning and launch gaps, which a single call's latency includes."""

    def timed(fn: Callable[[], Any]) -> float:
        return timer(lambda: [fn() for _ in range(calls)]) / calls

    return timed


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain-text table; column i is right-aligned where right[i] (numbers), else left."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if r else str(c).ljust(w)
                         for c, w, r in zip(cells, widths, right)).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path` (unique to this process, created with the usual
    permissions by whoever writes it); on success it replaces `path` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


@dataclass
class BarPanel:
    """One panel of grouped bars: one bar per series in each category (None leaves a gap)."""

    title: str
    ylabel: str
    categories: list[str]
    series: dict[str, list[float | None]]
    log: bool = True
    # short horizontal marks per category (e.g. a roofline or a target), drawn over the bars
    marks: dict[str, list[float | None]] = field(default_factory=dict)
    hline: float | None = None
    group: int = 1  # categories per group: a thin separator is drawn between groups


def plot_bars(path: Path, panels: Sequence[BarPanel], title: str) -> None:
    """Save stacked grouped-bar panels as a PNG, atomically (matplotlib's Agg, no pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    width = max(8.0, 0.22 * max(len(p.categories) * max(len(p.series), 1) for p in panels) + 3)
    fig = Figure(figsize=(width, 4.2 * len(panels)), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels):
        bar_w = 0.8 / max(len(p.series), 1)
        x = range(len(p.categories))
        for k, (name, values) in enumerate(p.series.items()):
            keep = [(i - 0.4 + bar_w * (k + 0.5), v) for i, v in zip(x, values) if v is not None and v > 0]
            ax.bar([xi for xi, _ in keep], [v for _, v in keep], width=bar_w, label=name)
        for (name, values), color in zip(p.marks.items(), ["black", "tab:red", "tab:purple"]):
            keep = [(i, v) for i, v in zip(x, values) if v is not None and v > 0]
            ax.scatter([i for i, _ in keep], [v for _, v in keep], color=color, marker="_",
                       s=400, linewidths=2.5, zorder=3, label=name)
        if p.hline is not None:
            ax.axhline(p.hline, color="grey", linewidth=1, linestyle="--")
        for edge in range(p.group, len(p.categories), p.group) if p.group > 1 else ():
            ax.axvline(edge - 0.5, color="lightgrey", linewidth=1)
        if p.log:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(p.title)
        ax.set_ylabel(p.ylabel)
        ax.set_xticks(list(x), p.categories, rotation=60, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(p.categories) - 0.4)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def set_threads(requested: int | None, command: str) -> int:
    """Set Numba's thread count (BLAS and PyTorch follow it) and return it; errors name
    `command`."""
    import numba

    n = numba.get_num_threads() if requested is None else requested
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise SystemExit(f"{command}: --threads must be between 1 and NUMBA_NUM_THREADS="
                         f"{numba.config.NUMBA_NUM_THREADS}")
    numba.set_num_threads(n)
    return n


def load_torch(device: str, threads: int) -> tuple[ModuleType | None, dict[str, Any]]:
    """PyTorch set up for a fair comparison, or None and a note saying why it is skipped."""
    try:
        import torch
    except ImportError:
        return None, {"available": False,
                      "note": "PyTorch is not installed: the comparison with PyTorch is skipped"}
    torch.set_num_threads(threads)
    info: dict[str, Any] = {"available": True, "version": torch.__version__,
                            "threads": torch.get_num_threads()}
    if device == "cpu":
        info["library"] = "oneDNN" if torch.backends.mkldnn.is_available() else "ATen"
        return torch, info
    if not torch.cuda.is_available():
        return None, info | {"available": False,
                             "note": "this PyTorch build has no CUDA: the comparison is skipped"}
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch, info | {"library": f"cuDNN {torch.backends.cudnn.version()}", "tf32": False,
                          "cudnn_benchmark": True}
