// Layout kernels for the GEMM path (many channels per group, where a convolution is
// compute-bound and cuBLAS through cupy.matmul does the arithmetic), and the fixed-order sum
// that finishes the direct grad_weight. All are elementwise with a grid-stride loop whose
// fastest dimension is a row of pixels, so stores are coalesced, and 256-thread blocks of which
// at least four fit an SM (kernels/cuda/runtime.py: ELEMENTWISE_THREADS, ELEMENTWISE_MIN_BLOCKS).
//
// Two column layouts, a plan parameter of the GEMM path (kernels/cuda/gemm.py): 'groups'
// (im2col / col2im: group-major columns of many images, 64-bit index arithmetic with runtime
// kernel sizes) and 'images' (im2col_images / col2im_images: the layout each image's batched
// GEMM reads and writes in place, kernel size and unit stride at compile time, 32-bit indices,
// no division per element).
#include "conv_common.cuh"

#define MR_ELEMENTWISE __launch_bounds__(256, 4)

// cols[ci][i][j][n][p] = x[n][ci][oy*sh - ph + i*dh][ox*sw - pw + j*dw] (zero outside) for
// the m images of a chunk, p = oy * ow + ox, ci = g * cg + c: group-major, so that cols
// reshapes to (groups, cg * kh * kw, m * oh * ow) and each group's product with its weights is
// one large matmul whatever the image size.
template <typename T>
__global__ void MR_ELEMENTWISE im2col(const T* __restrict__ x, T* __restrict__ cols, long long total,
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
__global__ void MR_ELEMENTWISE col2im(const T* __restrict__ cols, T* __restrict__ gx, long long total,
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

// cols[plane][i][j][oy][ox] = x[plane][oy*sh - ph + i*dh][ox*sw - pw + j*dw] (zero outside)
// for the planes (image, input channel) of a chunk of images, plane = n * c_in + g * cg + c: per
// image, the (groups, cg * KH * KW, oh * ow) operand of one batched product with the weights,
// whose result is y itself. Element (plane, oy, ox) writes all KH x KW of its taps, each a
// coalesced row across the threads. Needs planes * KH * KW * oh * ow < 2^31.
template <typename T, int KH, int KW, bool UNIT>
__global__ void MR_ELEMENTWISE im2col_images(const T* __restrict__ x, T* __restrict__ cols,
                                             int planes, int h, int wd, int oh, int ow, int sh,
                                             int sw, int ph, int pw, int dh, int dw) {
  const int s_h = UNIT ? 1 : sh, s_w = UNIT ? 1 : sw;
  const int d_h = UNIT ? 1 : dh, d_w = UNIT ? 1 : dw;
  const int pixels = oh * ow;
  mr::for_each_3d(planes, oh, ow, blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x,
                  [&](int plane, int oy, int ox) {
                    const T* xp = x + plane * h * wd;
                    T* out = cols + plane * KH * KW * pixels + oy * ow + ox;
#pragma unroll
                    for (int i = 0; i < KH; ++i) {
                      const int iy = oy * s_h - ph + i * d_h;
#pragma unroll
                      for (int j = 0; j < KW; ++j) {
                        const int ix = ox * s_w - pw + j * d_w;
                        const bool inside = iy >= 0 && iy < h && ix >= 0 && ix < wd;
                        out[(i * KW + j) * pixels] = inside ? xp[iy * wd + ix] : T(0);
                      }
                    }
                  });
}

// grad_x[plane][iy][ix] = sum over taps (i, j) of cols[plane][i][j][oy][ox] where
// (oy, ox) = ((iy + ph - i*dh) / sh, (ix + pw - j*dw) / sw) divide exactly and lie in the
// output: the adjoint of im2col_images, as a gather (each value written once, no atomics).
template <typename T, int KH, int KW, bool UNIT>
__global__ void MR_ELEMENTWISE col2im_images(const T* __restrict__ cols, T* __restrict__ gx,
                                             int planes, int h, int wd, int oh, int ow, int sh,
                                             int sw, int ph, int pw, int dh, int dw) {
  const int s_h = UNIT ? 1 : sh, s_w = UNIT ? 1 : sw;
  const int d_h = UNIT ? 1 : dh, d_w = UNIT ? 1 : dw;
  const int pixels = oh * ow;
  mr::for_each_3d(planes, h, wd, blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x,
                  [&](int plane, int iy, int ix) {
                    const T* src = cols + plane * KH * KW * pixels;
                    T sum = T(0);
#pragma unroll
                    for (int i = 0; i < KH; ++i) {
                      const int ny = iy + ph - i * d_h;
                      if (ny < 0 || ny >= oh * s_h || (!UNIT && ny % s_h != 0)) continue;
#pragma unroll
                      for (int j = 0; j < KW; ++j) {
                        const int nx = ix + pw - j * d_w;
                        if (nx < 0 || nx >= ow * s_w || (!UNIT && nx % s_w != 0)) continue;
                        sum += src[(i * KW + j) * pixels + (ny / s_h) * ow + nx / s_w];
                      }
                    }
                    gx[(plane * h + iy) * wd + ix] = sum;
                  });
}

// out[e] = partial[0][e] + partial[1][e] + ... in that order: a deterministic sum of the
// per-block partials of conv2d_grad_weight_direct.
template <typename T>
__global__ void MR_ELEMENTWISE sum_partials(const T* __restrict__ partial, T* __restrict__ out, int chunks,
                             int size) {
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < size; e += gridDim.x * blockDim.x) {
    T sum = partial[e];
    for (int k = 1; k < chunks; ++k) sum += partial[static_cast<long long>(k) * size + e];
    out[e] = sum;
  }
}
