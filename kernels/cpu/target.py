"""The CPU target the kernels are compiled for: its vector registers, and the code-generation
settings pinned for it.

Numba compiles every function of a process for one LLVM target: a CPU name (the host's, or
NUMBA_CPU_NAME) and a feature string (the host's instruction sets, or NUMBA_CPU_FEATURES).
The generated tiles (`codegen`) are sized from that target's vector registers (`ISA`), and two
settings that LLVM would otherwise take from its tuning tables for the CPU name are decided
here, before Numba creates its code generator (`configure`, run when `kernels.cpu` is
imported):

- **The preferred vector width.** LLVM tunes Intel's server cores (Skylake-SP to Emerald
  Rapids) to prefer 256-bit vectors, so its SLP vectoriser splits a tile of two 16-lane float32
  registers into four 8-lane halves and the FMA rate halves; AMD's Zen 4 is tuned for 512 bits.
  On an AVX-512 target the feature ``-prefer-256-bit`` is added, so every AVX-512 CPU gets the
  full-width tiles (docs/benchmarks.md has the measurements).
- **A named CPU's instruction sets.** Numba pairs NUMBA_CPU_NAME with the *host's* features,
  so ``NUMBA_CPU_NAME=haswell`` on an AVX-512 machine still emits AVX-512 code with Haswell's
  tuning. When the named CPU's vectors are narrower than the host's and NUMBA_CPU_FEATURES is
  not set, the named CPU's own features are used instead: ``NUMBA_CPU_NAME=haswell`` is an
  AVX2 build on any AVX2 or AVX-512 machine (a wider name than the host keeps the host's
  features, so nothing is emitted that the host cannot run).

Both change Numba's code generation for the whole process, which is one target by design; if
Numba compiled something before this module was imported, its code generator already exists
and the kernels are compiled as it is set (a warning says so). The ISA is not guessed from
names: a few vector operations are compiled for the target and the registers LLVM puts them
in are read from the assembly.

    python -m minitorch_resnext.kernels.cpu.target        # what this process compiles for
"""

from __future__ import annotations

import contextlib
import functools
import platform
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import llvmlite.binding as ll
import numpy as np
from numba.core import codegen, config, registry

# LLVM's tuning feature that makes an AVX-512 target vectorise with 256-bit halves; switched
# off (-prefer-256-bit) unless the user's NUMBA_CPU_FEATURES mention it (module docstring)
PREFER_256 = "prefer-256-bit"


class Isa(NamedTuple):
    """A vector instruction set as the tiles see it: register width and count."""

    name: str
    vector_bytes: int
    registers: int

    def lanes(self, dtype: np.dtype | type = np.float32) -> int:
        """Values of `dtype` in one vector register."""
        return self.vector_bytes // np.dtype(dtype).itemsize


AVX512 = Isa("avx512", 64, 32)
AVX2 = Isa("avx2", 32, 16)
AVX = Isa("avx", 32, 16)
SSE = Isa("sse", 16, 16)  # x86-64's baseline
OTHER = Isa("other", 16, 16)  # a safe default for other architectures (NEON and the like)

# (ISA, an operation on its widest vectors, the instruction that shows LLVM kept it whole):
# the first that compiles to one full-width instruction is the target's ISA
_PROBES = (
    (AVX512, "fmul", "<16 x float>", r"vmulps\s+%zmm"),
    (AVX2, "add", "<8 x i32>", r"vpaddd\s+%ymm"),
    (AVX, "fmul", "<8 x float>", r"vmulps\s+%ymm"),
)


@functools.cache
def probe_isa(cpu: str, features: str) -> Isa:
    """The ISA that LLVM compiles for with this CPU name and feature string ('' = the CPU's
    own features), read from the assembly of one vector operation per candidate ISA."""
    codegen.initialize_llvm()
    target = ll.Target.from_triple(ll.get_process_triple())
    if not target.name.startswith("x86"):
        return OTHER
    machine = target.create_target_machine(cpu=cpu, features=features, opt=2)
    for isa, op, vector, instruction in _PROBES:
        module = ll.parse_assembly(f"define {vector} @probe({vector} %a, {vector} %b) {{\n"
                                   f"  %c = {op} {vector} %a, %b\n  ret {vector} %c\n}}")
        module.triple = machine.triple
        if re.search(instruction, machine.emit_assembly(module)):
            return isa
    return SSE


@dataclass(frozen=True)
class Target:
    """What Numba compiles for in this process: the LLVM CPU name, the feature string ('' =
    the CPU's own features) and the ISA they give."""

    cpu: str
    features: str
    isa: Isa

    @property
    def full_width(self) -> bool:
        """Whether LLVM is told not to prefer narrower vectors than the registers (AVX-512 with
        -prefer-256-bit; every narrower ISA, whose tuning has no such preference)."""
        return self.isa != AVX512 or f"-{PREFER_256}" in self.features.split(",")

    def describe(self) -> str:
        """e.g. 'avx512 (znver4: 512-bit vectors, 32 registers, -prefer-256-bit)'."""
        width = (f", -{PREFER_256}" if self.isa == AVX512 and self.full_width else
                 "" if self.full_width else f", vector width left to LLVM's tuning for {self.cpu}")
        return (f"{self.isa.name} ({self.cpu}: {8 * self.isa.vector_bytes}-bit vectors, "
                f"{self.isa.registers} registers{width})")


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name where the OS says it, else the architecture."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _codegen_exists() -> bool:
    return "_toplevel_target_context" in vars(registry.cpu_target)


def _features(cpu_name: str | None, features: str | None) -> str:
    """The feature string for NUMBA_CPU_NAME / NUMBA_CPU_FEATURES (None: not set), with this
    module's settings (module docstring); a vector-width preference the user set is kept."""
    host_cpu = ll.get_host_cpu_name()
    if features is None:
        host = probe_isa(host_cpu, ll.get_host_cpu_features().flatten())
        narrower = cpu_name and probe_isa(cpu_name, "").vector_bytes < host.vector_bytes
        features = "" if narrower else codegen.get_host_cpu_features()
    named = {f.lstrip("+-") for f in features.split(",")}
    if probe_isa(cpu_name or host_cpu, features) == AVX512 and PREFER_256 not in named:
        features = ",".join(f for f in (features, f"-{PREFER_256}") if f)
    return features


def configure() -> Target:
    """Set Numba's target features (unless its code generator exists already) and return the
    target it compiles for."""
    existed = _codegen_exists()
    if not existed:
        config.CPU_FEATURES = _features(config.CPU_NAME, config.CPU_FEATURES)
    _, cpu, features = registry.cpu_target.target_context.codegen().magic_tuple()
    target = Target(cpu, features, probe_isa(cpu, features))
    if existed and not target.full_width:
        warnings.warn(
            "Numba compiled code before minitorch_resnext.kernels.cpu was imported, so the CPU "
            f"kernels are compiled without -{PREFER_256} and LLVM may split their AVX-512 tiles "
            "into 256-bit halves; import minitorch_resnext first, or add "
            f",-{PREFER_256} to NUMBA_CPU_FEATURES", stacklevel=2)
    return target


TARGET = configure()
ISA = TARGET.isa
