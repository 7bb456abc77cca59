// Helpers shared by the convolution kernels: vector loads from shared memory, floor/ceil
// division for negative numerators, and the tile loader that stages a zero-padded window of
// an NCHW tensor in shared memory.
//
// Everything here is plain CUDA C++ that NVRTC compiles without host headers. The same
// sources also compile as host C++ through host_emulation.cuh (tests/test_cuda_compile.py),
// which defines MR_DYNAMIC_SHARED and the CUDA built-ins before including this file.
#pragma once

#ifndef MR_DYNAMIC_SHARED
// The block's dynamic shared memory as a T*; every kernel takes all its shared memory here
// (sized by the launcher), so the emulator can poison it and check its bounds.
#define MR_DYNAMIC_SHARED(T, name)                                    \
  extern __shared__ __align__(16) unsigned char mr_dynamic_smem_[];   \
  T* name = reinterpret_cast<T*>(mr_dynamic_smem_)
#endif

#ifndef MR_ALIGNED
// The address of a vector load; the emulator checks its alignment here.
#define MR_ALIGNED(pointer, alignment) (pointer)
#endif

namespace mr {

// N consecutive values loaded with one (or, above 16 bytes, a few) vector instructions.
// The address must be aligned to min(16, N * sizeof(T)) bytes.
template <typename T, int N>
struct alignas(N * sizeof(T) > 16 ? 16 : N * sizeof(T)) Vec {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, N>*>(MR_ALIGNED(p, alignof(Vec<T, N>)));
}

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a.
__device__ __forceinline__ int floor_div(int a, int b) {
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
__device__ __forceinline__ int ceil_div(int a, int b) { return -floor_div(-a, b); }

// Stage channels x rows x cols of `src` (planes of h x w, channel stride h * w), starting at
// (y0, x0) which may be negative, into dst[c * chan_pitch + r * pitch + col]; positions
// outside the image are zero (the convolution's zero padding). Threads sweep columns in
// groups of up to 32 so a warp reads one contiguous row segment.
template <typename T>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int channels, int h, int w,
                                          int y0, int x0, int rows, int cols, int pitch,
                                          int chan_pitch) {
  const int nt = blockDim.x;
  const int lx = nt < 32 ? nt : 32;
  const int ly = nt / lx;
  const int t = threadIdx.x;
  if (t >= lx * ly) return;
  const int tx = t % lx;
  for (int row = t / lx; row < channels * rows; row += ly) {
    const int c = row / rows;
    const int r = row - c * rows;
    const int iy = y0 + r;
    T* drow = dst + c * chan_pitch + r * pitch;
    if (iy < 0 || iy >= h) {
      for (int col = tx; col < cols; col += lx) drow[col] = T(0);
      continue;
    }
    const T* srow = src + (static_cast<long long>(c) * h + iy) * w;
    for (int col = tx; col < cols; col += lx) {
      const int ix = x0 + col;
      drow[col] = (ix >= 0 && ix < w) ? srow[ix] : T(0);
    }
  }
}

}  // namespace mr
