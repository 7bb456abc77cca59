// Layout kernels for the GEMM path (many channels per group, where a convolution is
// compute-bound and cuBLAS through cupy.matmul does the arithmetic), and the fixed-order sum
// that finishes the direct grad_weight. All are elementwise with a grid-stride loop over a
// 64-bit index whose fastest dimension is a row of pixels, so stores are coalesced.
#include "conv_common.cuh"

// cols[ci][i][j][n][p] = x[n][ci][oy*sh - ph + i*dh][ox*sw - pw + j*dw] (zero outside) for
// the m images of a chunk, p = oy * ow + ox, ci = g * cg + c: group-major, so that cols
// reshapes to (groups, cg * kh * kw, m * oh * ow) and each group's product with its weights is
// one large matmul whatever the image size.
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, long long total,
                       int c_in, int m, int h, int wd, int kh, int kw, int oh, int ow, int sh,
                       int sw, int ph, int pw, int dh, int dw) {
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    const int p = static_cast<int>(e % (oh * ow));
    long long rest = e / (oh * ow);
    const int n = static_cast<int>(rest % m);
    rest /= m;
    const int j = static_cast<int>(rest % kw);
    rest /= kw;
    const int i = static_cast<int>(rest % kh);
    const long long ci = rest / kh;
    const int iy = (p / ow) * sh - ph + i * dh, ix = (p % ow) * sw - pw + j * dw;
    cols[e] = (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                  ? x[((static_cast<long long>(n) * c_in + ci) * h + iy) * wd + ix]
                  : T(0);
  }
}

// grad_x[n][ci][iy][ix] = sum over taps (i, j) of cols[ci][i][j][n][oy * ow + ox] where
// (oy, ox) = ((iy + ph - i*dh) / sh, (ix + pw - j*dw) / sw) divide exactly and lie in the
// output: the adjoint of im2col, as a gather (each value written once, no atomics).
template <typename T>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ gx, long long total,
                       int c_in, int m, int h, int wd, int kh, int kw, int oh, int ow, int sh,
                       int sw, int ph, int pw, int dh, int dw) {
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long plane = static_cast<long long>(h) * wd;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    const int ix = static_cast<int>(e % wd);
    const int iy = static_cast<int>((e / wd) % h);
    const long long ci = (e / plane) % c_in;
    const long long n = e / (plane * c_in);
    const T* src = cols + ci * kh * kw * m * oh * ow + n * oh * ow;
    T sum = T(0);
    for (int i = 0; i < kh; ++i) {
      const int ny = iy + ph - i * dh;
      if (ny < 0 || ny % sh != 0 || ny / sh >= oh) continue;
      for (int j = 0; j < kw; ++j) {
        const int nx = ix + pw - j * dw;
        if (nx < 0 || nx % sw != 0 || nx / sw >= ow) continue;
        sum += src[(static_cast<long long>(i * kw + j) * m * oh + ny / sh) * ow + nx / sw];
      }
    }
    gx[e] = sum;
  }
}

// out[e] = partial[0][e] + partial[1][e] + ... in that order: a deterministic sum of the
// per-block partials of conv2d_grad_weight_direct.
template <typename T>
__global__ void sum_partials(const T* __restrict__ partial, T* __restrict__ out, int chunks,
                             int size) {
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < size; e += gridDim.x * blockDim.x) {
    T sum = partial[e];
    for (int k = 1; k < chunks; ++k) sum += partial[static_cast<long long>(k) * size + e];
    out[e] = sum;
  }
}
