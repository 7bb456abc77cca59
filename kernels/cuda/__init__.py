"""Grouped convolution on the GPU: hand-written CUDA C kernels, planned and launched via CuPy.

Two algorithms, chosen per pass and geometry by `conv2d_algorithm` (rules.py):

- ``direct`` (direct.py, conv_direct.cu) for few channels per group, depthwise included:
  memory-bound, so a block stages a group's weights and a haloed input tile in shared memory.
- ``gemm`` (gemm.py, conv_im2col.cu) for many channels per group: compute-bound, so cuBLAS
  does the arithmetic, on im2col columns or on the input itself.

Planning is plain Python and needs no GPU; runtime.py launches kernels through CuPy, which is
imported on first use and compiles each template instantiation once with NVRTC.
"""

from .conv import (
    ALGORITHMS,
    conv2d_algorithm,
    conv2d_forward,
    conv2d_grad_input,
    conv2d_grad_weight,
    planned_kernels,
)

__all__ = [
    "ALGORITHMS",
    "conv2d_algorithm",
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "planned_kernels",
]
