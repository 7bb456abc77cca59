"""Numba CPU kernels: grouped convolution forward, grad_input and grad_weight.

Pure array-in/array-out functions with the contract of `minitorch_resnext.kernels.reference`;
`conv2d_algorithm` says which implementation (direct or im2col + GEMM) runs for a shape and why.
"""

from .conv import (
    ALGORITHMS,
    GEMM_MIN_CHANNELS,
    POINTWISE_GEMM_MIN_CHANNELS,
    conv2d_algorithm,
    conv2d_forward,
    conv2d_grad_input,
    conv2d_grad_weight,
)

__all__ = [
    "ALGORITHMS",
    "GEMM_MIN_CHANNELS",
    "POINTWISE_GEMM_MIN_CHANNELS",
    "conv2d_algorithm",
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
]
