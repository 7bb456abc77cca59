"""Differentiable ops (`import minitorch_resnext.functional as F`), one module per op family.

Each op registers itself beside its definition (`registry.op`); importing the families fills
this namespace and the `Tensor` methods from the registry.
"""

from . import (  # noqa: F401  (importing a family registers its ops)
    activation,
    conv,
    dropout,
    elementwise,
    linalg,
    loss,
    normalization,
    pooling,
    reduce,
    shape,
)
from .registry import OPS

# importing a family binds its module name here; the op `dropout` must win over the module
globals().update({name: info.fn for name, info in OPS.items()})
__all__ = sorted(OPS)
