// Helpers shared by the convolution kernels: vector loads and stores, floor/ceil division for
// negative numerators, walks over a grid of elements without a division per element,
// asynchronous copies from global to shared memory, and the tile loader that stages a
// zero-padded window of an NCHW tensor in shared memory.
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
// The address of a vector load or store; the emulator checks its alignment here.
#define MR_ALIGNED(pointer, alignment) (pointer)
#endif

namespace mr {

#ifndef MR_HOST_EMULATION
// Asynchronous copies (sm_80+): cp_async<BYTES> starts copying BYTES (4, 8 or 16) from global
// to shared memory, or writes BYTES zeros when `valid` is false (nothing is read then);
// cp_async_commit closes the thread's group of copies started since the last commit, and
// cp_async_wait<N> waits until at most the N newest committed groups are still in flight. A
// copy is visible to the thread that issued it after the wait, to the block after a
// __syncthreads() that follows the wait. Below sm_80 the copy is a plain load and store.
template <int BYTES>
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned address;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }"
      : "=r"(address)
      : "l"(smem));
  if constexpr (BYTES == 16) {  // .cg: cached in L2 only, the data is used once per block
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(gmem),
                 "r"(valid ? 16 : 0)
                 : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(address), "l"(gmem),
                 "n"(BYTES), "r"(valid ? BYTES : 0)
                 : "memory");
  }
#else
  struct alignas(BYTES) Bytes { unsigned char b[BYTES]; };
  *static_cast<Bytes*>(smem) = valid ? *static_cast<const Bytes*>(gmem) : Bytes{};
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}
#endif

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

template <typename T, int N>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, N>& value) {
  *reinterpret_cast<Vec<T, N>*>(MR_ALIGNED(p, alignof(Vec<T, N>))) = value;
}

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }

// Calls f(i0, i1, i2) for the elements first, first + step, first + 2 * step, ... of a
// d0 x d1 x d2 grid in row-major order: the thread's share of a grid-stride loop, with the
// divisions done once per thread instead of once per element. An empty grid calls nothing.
template <typename F>
__device__ __forceinline__ void for_each_3d(int d0, int d1, int d2, int first, int step,
                                            F&& f) {
  if (d0 <= 0 || d1 <= 0 || d2 <= 0) return;
  int i2 = first % d2, i1 = (first / d2) % d1, i0 = first / d2 / d1;
  const int s2 = step % d2, s1 = (step / d2) % d1, s0 = step / d2 / d1;
  while (i0 < d0) {
    f(i0, i1, i2);
    i2 += s2;
    i1 += s1;
    i0 += s0;
    if (i2 >= d2) {
      i2 -= d2;
      ++i1;
    }
    if (i1 >= d1) {
      i1 -= d1;
      ++i0;
    }
  }
}

template <typename F>
__device__ __forceinline__ void for_each_2d(int d0, int d1, int first, int step, F&& f) {
  for_each_3d(1, d0, d1, first, step, [&](int, int i0, int i1) { f(i0, i1); });
}

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
