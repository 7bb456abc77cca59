"""The cases of tests/fixtures/torch_reference.npz: PyTorch's results for them, computed once in
float64 by scripts/make_torch_fixture.py, so that the suite compares with PyTorch where torch
is not installed (it is no dependency of the project).

Inputs and weights are a fixed formula of their position, rounded to float32 (so that they are
the same in any float type and need no random generator); the computation is float64."""

from __future__ import annotations

import numpy as np

from minitorch_resnext import models

FIXTURE = "fixtures/torch_reference.npz"  # beside this file
# a ResNeXt of two stages (grouped 3x3 convolutions, strided downsampling, batch norm)
MODEL = {"cardinality": 4, "base_width": 1, "planes": (4, 8), "layers": (1, 1),
         "stem_width": 8, "num_classes": 3}
# name: (input shape, weight shape, conv2d's keyword arguments)
CONVS = {
    "grouped": ((2, 6, 9, 8), (4, 3, 3, 2),
                {"stride": (2, 1), "padding": (1, 3), "dilation": 2, "groups": 2}),
    "depthwise": ((2, 4, 7, 7), (12, 1, 3, 3),
                  {"stride": 2, "padding": 2, "dilation": 2, "groups": 4}),
    "same": ((1, 4, 7, 6), (6, 2, 4, 2), {"padding": "same", "dilation": (1, 3), "groups": 2}),
    "resnext": ((1, 32, 4, 4), (32, 2, 3, 3), {"padding": 1, "groups": 16}),
}


def values(shape: tuple[int, ...], salt: float, low: float = -1.0, high: float = 1.0
           ) -> np.ndarray:
    """Values in [low, high] that look random, as float64 holding float32 numbers."""
    n = np.arange(int(np.prod(shape)), dtype=np.float64)
    unit = 0.5 + 0.5 * np.sin(0.7 * n + 1.3 * salt) * np.cos(0.31 * n + salt)
    return (low + (high - low) * unit).astype(np.float32).astype(np.float64).reshape(shape)


def model() -> models.ResNet:
    """The model in float64 with every parameter and statistic from `values` (variances and
    batch-norm weights positive)."""
    net = models.resnext_small(**MODEL).double()
    state = {}
    for k, (name, tensor) in enumerate(net.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = np.zeros_like(tensor)
        elif name.endswith("running_var") or (name.endswith("weight") and tensor.ndim == 1):
            state[name] = values(tensor.shape, k, 0.5, 1.5)
        else:
            state[name] = values(tensor.shape, k)
    net.load_state_dict(state)
    return net


def model_inputs() -> tuple[np.ndarray, np.ndarray]:
    """A batch of 3 one-channel 8x8 images and their labels."""
    return values((3, 1, 8, 8), 0.5), np.array([0, 2, 1])


def conv_inputs(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, w and bias of conv case `name`."""
    x_shape, w_shape, _ = CONVS[name]
    return values(x_shape, 1), values(w_shape, 2), values(w_shape[:1], 3)


def grad_out(shape: tuple[int, ...]) -> np.ndarray:
    return values(shape, 4)

