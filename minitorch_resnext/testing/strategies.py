"""Hypothesis strategies shared by the tests and `minitorch-resnext gradcheck`.

Imported only where hypothesis is installed (the `dev` extra).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def shapes(draw: st.DrawFn, min_dims: int = 0, max_dims: int = 4, min_side: int = 1,
           max_side: int = 5) -> tuple[int, ...]:
    """A shape of min_dims..max_dims axes, each min_side..max_side long."""
    n = draw(st.integers(min_dims, max_dims))
    return tuple(draw(st.integers(min_side, max_side)) for _ in range(n))


@st.composite
def broadcastable_shapes(draw: st.DrawFn, max_dims: int = 4,
                         max_side: int = 4) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast together (axes set to 1 or dropped on either side)."""
    full = draw(shapes(min_dims=0, max_dims=max_dims, max_side=max_side))

    def derive() -> tuple[int, ...]:
        drop = draw(st.integers(0, len(full)))
        return tuple(1 if draw(st.booleans()) else n for n in full[drop:])

    return derive(), derive()


def divisors(n: int) -> list[int]:
    """The positive divisors of n, in increasing order."""
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def arrays(draw: st.DrawFn, shape: tuple[int, ...], dtype: str = "float64",
           contiguous: bool | None = None, low: float = -2.0, high: float = 2.0,
           ) -> np.ndarray:
    """Random values of `shape`; when not `contiguous`, a strided view with that shape
    (a transposed or every-other-element view of a larger buffer)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if contiguous is None:
        contiguous = draw(st.booleans())
    if contiguous or len(shape) == 0:
        return rng.uniform(low, high, size=shape).astype(dtype)
    if draw(st.booleans()) and len(shape) >= 2:
        # the transpose of a contiguous array with the last two axes swapped
        swapped = shape[:-2] + (shape[-1], shape[-2])
        return rng.uniform(low, high, size=swapped).astype(dtype).swapaxes(-1, -2)
    big = rng.uniform(low, high, size=shape[:-1] + (2 * shape[-1],)).astype(dtype)
    return big[..., ::2]
