"""The hand-written convolution kernels: `reference` (the NumPy oracle), `cpu` (Numba) and `cuda`
(CUDA C through CuPy)."""
