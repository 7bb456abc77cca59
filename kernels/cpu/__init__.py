"""Numba CPU kernels: grouped convolution forward, grad_input and grad_weight, and the fused
kernels around it (batch norm, ReLU, pooling, cross-entropy, SGD).

Array-in/array-out functions with the contract of `minitorch_resnext.kernels.reference` (and
`reference_ops` for the fused kernels around the convolutions); `conv2d_algorithm` says which
algorithm (depthwise, direct, register-tiled, implicit GEMM or im2col + GEMM) each pass runs for a
geometry, and why. The kernels are compiled for `TARGET` (the vector ISA and code-generation
settings of `target`). The first use of a kernel on a machine compiles it, which `notice`
announces and `compiling` follows kernel by kernel (it also stamps each kernel's cache with
its file and the files it imports from).
"""

# target first: it sets Numba's target features before any function here is decorated (a
# decorated function makes Numba create its code generator)
from . import memory, notice, target  # noqa: F401

memory.keep_freed_memory()  # a step's large arrays reuse the last step's pages

from . import compiling  # noqa: E402, F401
from .activation import relu_backward, relu_forward  # noqa: E402
from .batchnorm import batch_norm_backward, batch_norm_forward  # noqa: E402
from .conv import (  # noqa: E402
    ALGORITHMS,
    conv2d_algorithm,
    conv2d_forward,
    conv2d_grad_input,
    conv2d_grad_weight,
    tune_conv2d,
)
from .loss import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from .pooling import (  # noqa: E402
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from .sgd import sgd_plan, sgd_update  # noqa: E402
from .target import TARGET  # noqa: E402
from .tiled import peak_probe  # noqa: E402

__all__ = [
    "ALGORITHMS",
    "TARGET",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "conv2d_algorithm",
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "peak_probe",
    "relu_backward",
    "relu_forward",
    "sgd_plan",
    "sgd_update",
    "tune_conv2d",
]
