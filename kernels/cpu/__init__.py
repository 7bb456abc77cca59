"""Numba CPU kernels: grouped convolution forward, grad_input and grad_weight.

Array-in/array-out functions with the contract of `minitorch_resnext.kernels.reference`;
`conv2d_algorithm` says which algorithm (direct, register-tiled, implicit GEMM or im2col +
GEMM) each pass runs for a geometry, and why. The kernels are compiled for `TARGET` (the
vector ISA and code-generation settings of `target`); the first use of a kernel on a machine
compiles it, which `notice` announces.
"""

import os

# Numba's OpenMP threads spin for a while after each parallel kernel by default, holding a core
# that the Python thread needs between kernels; on a machine with few cores the small models'
# training then waits on the spinning threads. It must be set before Numba starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# target first: it sets Numba's target features before any function here is decorated (a
# decorated function makes Numba create its code generator)
from . import notice, target  # noqa: E402, F401
from .conv import (  # noqa: E402
    ALGORITHMS,
    conv2d_algorithm,
    conv2d_forward,
    conv2d_grad_input,
    conv2d_grad_weight,
    tune_conv2d,
)
from .target import TARGET  # noqa: E402
from .tiled import peak_probe  # noqa: E402

__all__ = [
    "ALGORITHMS",
    "TARGET",
    "conv2d_algorithm",
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "peak_probe",
    "tune_conv2d",
]
