"""Which CPU algorithm computes each pass of a convolution: one rule table per pass.

A rule is conditions on the geometry, an algorithm (and parameters) and the reason; the first
rule that holds and whose algorithm computes the pass on that geometry wins (see
`kernels.selection`). The thresholds were set by timing the algorithms against each other on
both sides of each one on an AVX-512 machine; the measurements are in docs/benchmarks.md ("How
the CPU rules were set") and its JSON. The thresholds that count lanes are stated in lanes of
the target's tiles, so they scale with its vector width. Every table ends in a rule that always
holds. Where tuning is on (`tune`), measurements on the machine at hand replace these rules.
"""

from __future__ import annotations

from ..selection import (
    ALWAYS,
    DEPTHWISE,
    POINTWISE,
    STRIDED,
    TRANSPOSABLE,
    Condition,
    Rule,
    channels_at_least,
    image_macs_at_least,
    input_channels_at_least,
    output_pixels_at_most,
)
from . import blas_threads
from .implicit import NARROW_TILE, PLANES_SPREAD, ROW_LANES, ROWS_FIT, TILE
from .target import ISA

# A 1x1 unpadded convolution is a GEMM without im2col: from this many channels per group.
POINTWISE_GEMM_MIN_CHANNELS = 8
# Where BLAS runs narrower vectors, the pointwise kernel (forward, grad_input) and the implicit
# one (grad_weight) take the 1x1 convolutions of at least this many multiply-adds per image.
# They take 11 s and 44 s to compile on first use; below this (resnext_small's have 0.26M to
# 1.05M) the pointwise kernel's 1.07-1.10x faster training step would not earn that back in
# the default training job. ResNeXt-50's have 25.7M and more.
POINTWISE_MIN_IMAGE_MACS = 1 << 22
# im2col + BLAS overtakes the direct and register-tiled kernels from this many channels per
# group, where the reductions are long enough to pay for the 9x larger columns.
GEMM_MIN_CHANNELS = 96
# At stride 1 the register-tiled kernel beats the direct one from this many channels per group
# (with fewer, the convolution is memory-bound and the direct kernel's single pass wins).
TILED_MIN_CHANNELS = 8
# The implicit GEMM (output channels on the lanes, no padding, no junk pixels) beats the tiled
# kernel on small images from a full lane tile of channels per group (32 with AVX-512) ...
IMPLICIT_MIN_CHANNELS = TILE.lanes
IMPLICIT_MAX_PIXELS = 16 * 16  # ... up to this many output pixels per image.
# The implicit kernel's row tiles beat the tiled kernel from 3/4 of their ROW_LANES output
# channels per group (12 of 16 with AVX-512); with half, they lose. With more channels than
# their lanes they take a pass per register of them, and still beat the planned tiles.
ROW_MIN_CHANNELS = ROW_LANES * 3 // 4
# Strided, where the tiled kernel has no form, the implicit GEMM beats the direct kernel: the
# forward and grad_weight from this many channels per group (with 8, both lose on large
# images) ...
STRIDED_MIN_CHANNELS = 12
# ... and grad_input, whose tiles reduce over 9/4 taps per input pixel on average at stride 2
# (not 9), from this many, on input planes that spread its stores (`PLANES_SPREAD`);
STRIDED_GRAD_INPUT_MIN_CHANNELS = 24
# each on convolutions of at least this many multiply-adds per image. The implicit kernels take
# about 100 s to compile on first use (the direct one 27 s, the tiled one 22 s where nothing else
# needs it); below this (resnext_small's strided convolutions have 0.3M) the direct kernel costs
# a few milliseconds more per step, and a short run such as the default training job would not
# earn the compilation back.
STRIDED_MIN_IMAGE_MACS = 1 << 20
# Strided, below those, the tiled kernel's forward on a copy of the input split into stride
# phases beats the direct kernel from this many channels per group (1.2-1.9x from 8 on one
# core; 1.0-1.6x with 4; with 2, a loss on large images).
STRIDED_TILED_MIN_CHANNELS = 4
# grad_weight: the implicit kernel's reduction beats the direct kernel from 5/8 of its narrow
# tile's lanes of input channels per group (10 of 16 with AVX-512): the lanes hold input
# channels, so fewer leave them idle.
IMPLICIT_WEIGHT_MIN_CHANNELS = NARROW_TILE.lanes * 5 // 8

_DEPTHWISE = Rule(
    "depthwise", (DEPTHWISE,),
    "memory-bound; one plane at a time in a padded buffer, all taps of an output summed before "
    "it is stored once")
_DEPTHWISE_DIRECT = Rule(
    "direct", (DEPTHWISE,),
    "memory-bound; the direct kernel reads each input row once and keeps it in cache for all "
    "taps (at any stride)")
# The pointwise kernel (1x1, no BLAS) against a batched GEMM on a BLAS whose kernels use the
# target's vector width: on one core its forward ran at 0.90-1.39x the GEMM's and its
# grad_input at 0.69-1.19x, ahead only on 7x7 images and strided 14x14 ones, so the GEMM stays
# the rule there. Where the BLAS computes with narrower vectors (OpenBLAS held to its Haswell
# kernels by OPENBLAS_CORETYPE on an AVX-512 Zen 5) the pointwise kernel ran 1.3-2.1x the
# GEMM's forward and 1.1-3.1x its grad_input at batch 8 and at batch 1 on one thread (256 to
# 1024 channels, 7x7 to 56x56); at batch 1 on two threads, where both are fastest, 0.96-1.78x
# and 0.91-1.54x.
NARROW_BLAS = Condition(
    f"NumPy's BLAS on narrower vectors than the kernels' {ISA.vector_bytes * 8}-bit",
    lambda g: blas_threads.narrower_than(ISA.vector_bytes))
_POINTWISE_OWN = Rule(
    "pointwise", (POINTWISE, channels_at_least(POINTWISE_GEMM_MIN_CHANNELS), NARROW_BLAS,
                  image_macs_at_least(POINTWISE_MIN_IMAGE_MACS)),
    "the register-tiled 1x1 kernel runs the target's full vector width, where the BLAS would "
    "run half of it")
# grad_weight, which the pointwise kernel has not: the implicit kernel's reduction ran 1.0-2.3x
# the GEMM's speed there (256 to 1024 channels, 7x7 to 56x56, batch 8, 1 and 2 threads), at
# stride 2 0.93-1.5x (0.93x with 512 channels on 56x56).
_POINTWISE_WEIGHT_OWN = Rule(
    "implicit", _POINTWISE_OWN.when,
    "the implicit reduction puts input channels on the lanes at the target's full vector "
    "width, where the BLAS would run half of it")
_POINTWISE = Rule(
    "gemm", (POINTWISE, channels_at_least(POINTWISE_GEMM_MIN_CHANNELS)),
    "a plain batched GEMM on the NCHW arrays (no im2col; strided: on every stride-th pixel), "
    "so BLAS does all the work")
# Where NumPy's BLAS runs narrower vectors than the kernels, the implicit kernel beats im2col +
# GEMM from GEMM_MIN_CHANNELS too: on dense 3x3 convolutions of 96 to 256 channels on 14x14
# to 56x56 images, batch 8, 1 and 2 threads, it ran 2.1-3.3x faster forward, 2.1-3.0x in
# grad_input and 1.2-3.4x in grad_weight at stride 1, 1.3-2.9x, 1.4-2.7x and 1.1-3.3x at
# stride 2; at batch 1 (up to 512 channels, from 7x7) 1.8-2.5x, 1.1-2.1x and 1.3-2.4x.
_GEMM_OWN = Rule(
    "implicit", (channels_at_least(GEMM_MIN_CHANNELS), NARROW_BLAS),
    "compute-bound with long reductions; the implicit GEMM's tiles run the target's full "
    "vector width, where the BLAS would run half of it")
_GEMM = Rule(
    "gemm", (channels_at_least(GEMM_MIN_CHANNELS),),
    "compute-bound with long reductions, where im2col + BLAS GEMM per group is fastest")
_DIRECT = Rule(
    "direct", (ALWAYS,),
    "few FLOPs per byte, so the direct kernel's single pass over the input, four output "
    "channels by four taps per inner loop, beats copying it into im2col columns")
_FIRST = (_DEPTHWISE, _DEPTHWISE_DIRECT)  # what every pass decides first

_IMPLICIT = Rule(
    "implicit", (TRANSPOSABLE, channels_at_least(IMPLICIT_MIN_CHANNELS),
                 output_pixels_at_most(IMPLICIT_MAX_PIXELS)),
    "an implicit GEMM with output channels on the lanes reads the input in place and skips the "
    "taps that fall on padding, where a padded layout's junk pixels cost most",
    {"tiles": "planned"})
_ROWS = Rule(
    "implicit", (TRANSPOSABLE, ROWS_FIT, channels_at_least(ROW_MIN_CHANNELS)),
    "the implicit kernel's row tiles hold a row of output pixels (or a segment of it) by one "
    "register of output channels, so each input value is broadcast once for all the taps that "
    "read it",
    {"tiles": "rows"})
_TILED = Rule(
    "tiled", (TRANSPOSABLE, channels_at_least(TILED_MIN_CHANNELS)),
    "compute-bound, so a register-tiled micro-kernel multiplies the weights with a zero-padded "
    "copy of the input, no im2col")
_WEIGHT_WHY = ("the implicit reduction puts input channels on the lanes and broadcasts grad_out "
               "in place, over the in-bounds pixels of each tap only")
_STRIDED_WHY = ("the implicit GEMM reads the input at every stride-th pixel in place, where the "
                "tiled kernel first copies it into stride phases")


_STRIDED_TILED = Rule(
    "tiled", (STRIDED, channels_at_least(STRIDED_TILED_MIN_CHANNELS),
              image_macs_at_least(STRIDED_MIN_IMAGE_MACS)),
    "the register-tiled micro-kernel over a zero-padded copy of the input split into stride "
    "phases, in which every tap is again a shift")


def _strided(min_channels: int, *more: Condition, why: str = _STRIDED_WHY) -> Rule:
    """The implicit kernel for strided convolutions of `min_channels` channels per group and
    STRIDED_MIN_IMAGE_MACS multiply-adds per image (on planned tiles: row tiles need stride 1)."""
    return Rule("implicit", (STRIDED, channels_at_least(min_channels), *more,
                             image_macs_at_least(STRIDED_MIN_IMAGE_MACS)), why)


# The row tiles come before im2col + GEMM: dense 3x3 convolutions of 64 to 512 channels ran
# 1.3-1.5x faster on them with AVX-512, 1.0-1.3x with AVX2.
FORWARD = (*_FIRST, _POINTWISE_OWN, _POINTWISE, _ROWS, _GEMM_OWN, _GEMM, _IMPLICIT,
           _strided(STRIDED_MIN_CHANNELS), _STRIDED_TILED, _TILED, _DIRECT)

# grad_input is a convolution of the same cost as the forward (at stride 1, literally the
# forward convolution `Conv2dGeometry.transposed()`), so the same rules choose, except that
# strided, the implicit kernel needs more channels (its tiles reduce over fewer taps).
GRAD_INPUT = (*_FIRST, _POINTWISE_OWN, _POINTWISE, _ROWS, _GEMM_OWN, _GEMM, _IMPLICIT,
              _strided(STRIDED_GRAD_INPUT_MIN_CHANNELS, PLANES_SPREAD), _TILED, _DIRECT)

GRAD_WEIGHT = (
    *_FIRST, _POINTWISE_WEIGHT_OWN, _POINTWISE, _GEMM_OWN, _GEMM,
    _strided(STRIDED_MIN_CHANNELS, why=_WEIGHT_WHY),
    Rule("implicit", (TRANSPOSABLE, channels_at_least(TILED_MIN_CHANNELS),
                      input_channels_at_least(IMPLICIT_WEIGHT_MIN_CHANNELS)), _WEIGHT_WHY),
    _DIRECT,
)

TABLES = {"forward": FORWARD, "grad_input": GRAD_INPUT, "grad_weight": GRAD_WEIGHT}
