"""Which CUDA algorithm computes each pass of a convolution: one rule table per pass.

The first rule that holds and whose algorithm computes the pass on the geometry wins (see
`kernels.selection`); every table ends in a rule that always holds.
"""

from __future__ import annotations

from ..selection import ALWAYS, Rule, channels_at_most
from .direct import MAX_CHANNELS

_DIRECT = Rule(
    "direct", (channels_at_most(MAX_CHANNELS),),
    "memory-bound, so the direct kernels keep the group's weights and an input tile in shared "
    "memory and read the input once per tile")
_GEMM = Rule(
    "gemm", (ALWAYS,),
    "compute-bound, so cuBLAS does the arithmetic on the input itself (large 1x1) or on "
    "im2col columns")

FORWARD = (_DIRECT, _GEMM)
# grad_input and grad_weight move the same bytes and do the same multiply-adds as the forward.
GRAD_INPUT = FORWARD
GRAD_WEIGHT = FORWARD

TABLES = {"forward": FORWARD, "grad_input": GRAD_INPUT, "grad_weight": GRAD_WEIGHT}
