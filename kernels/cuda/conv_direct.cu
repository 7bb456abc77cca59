// Direct grouped convolution for few channels per group (<= 16) and depthwise.
//
// Such a convolution does ~9 FLOP per byte it must move, so it is memory-bound: each kernel
// reads its inputs from device memory once per tile and keeps everything it reuses on chip.
// A thread block owns one (image, group) and a tile of pixels: it stages the group's weights
// and a zero-padded window of the input (halo included) in shared memory, then every thread
// computes PY pixels down one column for OPT channels, so one shared-memory load of an input
// value feeds OPT fused multiply-adds and one vector load of OPT weights feeds PY of them.
// Threads run along the image width: global loads, shared loads and global stores are
// contiguous across a warp. Kernel size (KH, KW) is a template parameter so the tap loops
// unroll; UNIT (stride 1, dilation 1) makes the window offsets constants, which lets the
// compiler load each input value once for all the taps and rows that reuse it.
//
// Two forward kernels: conv2d_forward_direct stages one 2-D tile per block with a blocking
// loader; conv2d_forward_rows (below) walks a list of full-row strips with persistent blocks
// and a two-stage asynchronous pipeline. The planner (kernels/cuda/direct.py) chooses between
// them by a plan parameter, so one run can time both.
//
// Launch contract (kernels/cuda/direct.py plans every launch): 1-D blocks of at most 256
// threads, dynamic shared memory sized and laid out by the launcher, tensors C-contiguous.
// Kernels with a MIN_BLOCKS parameter are compiled with __launch_bounds__(256, MIN_BLOCKS),
// the occupancy the planner assumes; the others may use up to 255 registers.
#include "conv_common.cuh"

namespace mr {
constexpr int kMaxThreads = 256;
}

// y = conv(x, w) + bias. Block (tile, group, image); thread (column q, row group rg,
// channel slice cs) computes rows rg*PY .. rg*PY+PY-1 of column q for output channels
// cs*OPT .. cs*OPT+OPT-1 of the group. Shared memory: weights [cg][KH][KW][og] (output
// channel fastest, for vector loads), then the input window [chunk_c][tih][pitch] at x_off.
template <typename T, int KH, int KW, int OPT, int PY, bool UNIT>
__global__ void conv2d_forward_direct(
    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
    T* __restrict__ y, int c_in, int h, int wd, int c_out, int oh, int ow, int groups, int sh,
    int sw, int ph, int pw, int dh, int dw, int has_bias, int tile_w, int row_groups,
    int tiles_w, int chunk_c, int tih, int tiw, int pitch, int x_off) {
  const int s_h = UNIT ? 1 : sh, s_w = UNIT ? 1 : sw;
  const int d_h = UNIT ? 1 : dh, d_w = UNIT ? 1 : dw;
  const int cg = c_in / groups, og = c_out / groups;
  const int g = blockIdx.y, n = blockIdx.z;
  const int oy0 = (blockIdx.x / tiles_w) * row_groups * PY;
  const int ox0 = (blockIdx.x % tiles_w) * tile_w;
  const int t = threadIdx.x, nt = blockDim.x;
  const int q = t % tile_w, rg = (t / tile_w) % row_groups, cs = t / (tile_w * row_groups);

  MR_DYNAMIC_SHARED(T, smem);
  T* w_s = smem;
  T* x_s = smem + x_off;
  const int chan_pitch = tih * pitch;

  const T* wg = w + static_cast<long long>(g) * og * cg * KH * KW;
  for (int e = t; e < og * cg * KH * KW; e += nt) {
    const int o = e / (cg * KH * KW);
    w_s[(e - o * cg * KH * KW) * og + o] = wg[e];
  }

  T acc[PY][OPT];
#pragma unroll
  for (int py = 0; py < PY; ++py)
#pragma unroll
    for (int u = 0; u < OPT; ++u) acc[py][u] = T(0);

  const T* xg = x + (static_cast<long long>(n) * c_in + g * cg) * h * wd;
  const int row0 = rg * PY * s_h, col0 = q * s_w;
  for (int c0 = 0; c0 < cg; c0 += chunk_c) {
    const int cc = mr::imin(chunk_c, cg - c0);
    if (c0 > 0) __syncthreads();  // everyone is done with the previous chunk
    mr::load_tile(x_s, xg + static_cast<long long>(c0) * h * wd, cc, h, wd, oy0 * s_h - ph,
                  ox0 * s_w - pw, tih, tiw, pitch, chan_pitch);
    __syncthreads();
    for (int c = 0; c < cc; ++c) {
      const T* xc = x_s + c * chan_pitch + row0 * pitch + col0;
      const T* wc = w_s + (c0 + c) * KH * KW * og + cs * OPT;
#pragma unroll
      for (int i = 0; i < KH; ++i) {
#pragma unroll
        for (int j = 0; j < KW; ++j) {
          const mr::Vec<T, OPT> wv = mr::load_vec<T, OPT>(wc + (i * KW + j) * og);
#pragma unroll
          for (int py = 0; py < PY; ++py) {
            const T xv = xc[(py * s_h + i * d_h) * pitch + j * d_w];
#pragma unroll
            for (int u = 0; u < OPT; ++u) acc[py][u] += xv * wv.v[u];
          }
        }
      }
    }
  }

  const int ox = ox0 + q;
  if (ox >= ow) return;
#pragma unroll
  for (int py = 0; py < PY; ++py) {
    const int oy = oy0 + rg * PY + py;
    if (oy >= oh) break;
#pragma unroll
    for (int u = 0; u < OPT; ++u) {
      const int o = g * og + cs * OPT + u;
      y[((static_cast<long long>(n) * c_out + o) * oh + oy) * ow + ox] =
          acc[py][u] + (has_bias ? bias[o] : T(0));
    }
  }
}

// y = conv(x, w) + bias over full-row strips, for memory-bound shapes: the block walks the
// items blockIdx.x, blockIdx.x + gridDim.x, ... of a fixed list of (image, group, strip of
// R = row_groups * PY output rows); the grid is sized to the GPU, so every block runs to the
// end. Each item's weights and input rows go to one of STAGES shared-memory stages by
// asynchronous copies (16 bytes where rows are aligned, else one element; rows above or below
// the image are zero-filled by the copy), issued by every thread without a division per
// element; with two stages the next item's copies are in flight while this one is computed.
// A stage holds weights [cg][KH][KW][og], then cg x win_rows rows of `pitch` elements; input
// column ix sits at column col0 + ix (col0 = the padding rounded up to a 16-byte boundary) and
// the columns around the image stay zero, written once. Thread (quad q, row group rg, slice
// cs) computes PY rows x 4 columns (4q .. 4q+3) x OPT output channels in registers and stores
// each row's 4 columns with one vector store. With UNIT (stride 1, dilation 1) it loads each
// input row segment once, as aligned vectors starting SHIFT = col0 - pw elements before the
// first column it reads, for all the taps and rows that use it.
template <typename T, int KH, int KW, int OPT, int PY, bool UNIT, int SHIFT, int STAGES,
          int MIN_BLOCKS>
__global__ void __launch_bounds__(mr::kMaxThreads, MIN_BLOCKS) conv2d_forward_rows(
    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
    T* __restrict__ y, int n_img, int c_in, int h, int wd, int c_out, int oh, int ow,
    int groups, int sh, int sw, int ph, int pw, int dh, int dw, int has_bias, int quads,
    int row_groups, int strips, int win_rows, int pitch, int col0, int w_elems,
    int stage_elems, int vec_in, int vec_out) {
  static_assert(STAGES == 1 || STAGES == 2, "one or two stages");
  constexpr int VEC = 16 / sizeof(T);  // elements per 16-byte copy or load
  constexpr int SEG = 4 + KW - 1;      // input columns a row of 4 outputs reads (UNIT)
  constexpr int NV = (SHIFT + SEG + VEC - 1) / VEC;
  const int s_h = UNIT ? 1 : sh, s_w = UNIT ? 1 : sw;
  const int d_h = UNIT ? 1 : dh, d_w = UNIT ? 1 : dw;
  const int cg = c_in / groups, og = c_out / groups;
  const int t = threadIdx.x, nt = blockDim.x;
  const int q = t % quads, rg = (t / quads) % row_groups, cs = t / (quads * row_groups);
  const int items = n_img * groups * strips;
  const int rows_in = cg * win_rows;
  const bool copy16 = vec_in && reinterpret_cast<unsigned long long>(x) % 16 == 0;
  const bool store16 = vec_out && reinterpret_cast<unsigned long long>(y) % 16 == 0;

  MR_DYNAMIC_SHARED(T, smem);
  // the zero columns left and right of the image, in every row of every stage
  mr::for_each_3d(STAGES, rows_in, pitch - wd, t, nt, [&](int stage, int row, int m) {
    smem[stage * stage_elems + w_elems + row * pitch + (m < col0 ? m : m + wd)] = T(0);
  });

  // Starts the copies of an item's weights and input rows into a stage.
  auto issue = [&](int item, T* stage) {
    const int ng = item / strips, strip = item - ng * strips;
    const int n = ng / groups, g = ng - n * groups;
    const T* wg = w + static_cast<long long>(g) * og * cg * KH * KW;
    mr::for_each_2d(og, cg * KH * KW, t, nt, [&](int o, int ck) {
      mr::cp_async<sizeof(T)>(stage + ck * og + o, wg + o * cg * KH * KW + ck, true);
    });
    const T* xg = x + (static_cast<long long>(n) * c_in + g * cg) * h * wd;
    const int iy0 = strip * row_groups * PY * s_h - ph;
    T* xs = stage + w_elems + col0;
    if (copy16) {
      mr::for_each_3d(cg, win_rows, wd / VEC, t, nt, [&](int c, int r, int k) {
        const int iy = iy0 + r;
        const bool inside = iy >= 0 && iy < h;
        mr::cp_async<16>(xs + (c * win_rows + r) * pitch + k * VEC,
                         xg + (c * h + (inside ? iy : 0)) * wd + k * VEC, inside);
      });
    } else {
      mr::for_each_3d(cg, win_rows, wd, t, nt, [&](int c, int r, int k) {
        const int iy = iy0 + r;
        const bool inside = iy >= 0 && iy < h;
        mr::cp_async<sizeof(T)>(xs + (c * win_rows + r) * pitch + k,
                                xg + (c * h + (inside ? iy : 0)) * wd + k, inside);
      });
    }
    mr::cp_async_commit();
  };

  int item = blockIdx.x;
  if (item < items) issue(item, smem);
  for (int k = 0; item < items; ++k, item += gridDim.x) {
    const int next = item + gridDim.x;
    T* stage = smem + (STAGES == 2 ? k % 2 : 0) * stage_elems;
    if (STAGES == 2) {
      if (next < items) {
        issue(next, smem + (k + 1) % 2 * stage_elems);
      } else {
        mr::cp_async_commit();  // an empty group: the wait below always leaves one
      }
      mr::cp_async_wait<1>();  // this item's copies have landed
    } else {
      mr::cp_async_wait<0>();
    }
    __syncthreads();  // ... everyone's, and the zero columns

    T acc[PY][4][OPT];
#pragma unroll
    for (int py = 0; py < PY; ++py)
#pragma unroll
      for (int cx = 0; cx < 4; ++cx)
#pragma unroll
        for (int u = 0; u < OPT; ++u) acc[py][cx][u] = T(0);
    const T* ws = stage + cs * OPT;
    const T* xrow = stage + w_elems + rg * PY * s_h * pitch + 4 * q * s_w;
    for (int c = 0; c < cg; ++c) {
      const T* xc = xrow + c * win_rows * pitch;
      const T* wc = ws + c * KH * KW * og;
      if (UNIT) {
#pragma unroll
        for (int r = 0; r < PY + KH - 1; ++r) {
          T seg[NV * VEC];
#pragma unroll
          for (int v = 0; v < NV; ++v) {
            const mr::Vec<T, VEC> part = mr::load_vec<T, VEC>(xc + r * pitch + v * VEC);
#pragma unroll
            for (int e = 0; e < VEC; ++e) seg[v * VEC + e] = part.v[e];
          }
#pragma unroll
          for (int i = 0; i < KH; ++i) {
            const int py = r - i;
            if (py < 0 || py >= PY) continue;
#pragma unroll
            for (int j = 0; j < KW; ++j) {
              const mr::Vec<T, OPT> wv = mr::load_vec<T, OPT>(wc + (i * KW + j) * og);
#pragma unroll
              for (int cx = 0; cx < 4; ++cx)
#pragma unroll
                for (int u = 0; u < OPT; ++u) acc[py][cx][u] += seg[SHIFT + cx + j] * wv.v[u];
            }
          }
        }
      } else {
#pragma unroll
        for (int i = 0; i < KH; ++i)
#pragma unroll
          for (int j = 0; j < KW; ++j) {
            const mr::Vec<T, OPT> wv = mr::load_vec<T, OPT>(wc + (i * KW + j) * og);
#pragma unroll
            for (int py = 0; py < PY; ++py)
#pragma unroll
              for (int cx = 0; cx < 4; ++cx) {
                const T xv = xc[(py * s_h + i * d_h) * pitch + cx * s_w + j * d_w + SHIFT];
#pragma unroll
                for (int u = 0; u < OPT; ++u) acc[py][cx][u] += xv * wv.v[u];
              }
          }
      }
    }

    const int ng = item / strips, strip = item - ng * strips;
    const int n = ng / groups, g = ng - n * groups;
    const int ox = 4 * q;
#pragma unroll
    for (int py = 0; py < PY; ++py) {
      const int oy = (strip * row_groups + rg) * PY + py;
      if (oy >= oh) break;
#pragma unroll
      for (int u = 0; u < OPT; ++u) {
        const int o = g * og + cs * OPT + u;
        const T b = has_bias ? bias[o] : T(0);
        T* yr = y + ((static_cast<long long>(n) * c_out + o) * oh + oy) * ow + ox;
        if (store16 && ox + 4 <= ow) {
          mr::Vec<T, 4> out;
#pragma unroll
          for (int cx = 0; cx < 4; ++cx) out.v[cx] = acc[py][cx][u] + b;
          mr::store_vec<T, 4>(yr, out);
        } else {
#pragma unroll
          for (int cx = 0; cx < 4; ++cx)
            if (ox + cx < ow) yr[cx] = acc[py][cx][u] + b;
        }
      }
    }
    __syncthreads();  // the stage is free for the item after next
    if (STAGES == 1 && next < items) issue(next, smem);
  }
}

// grad_x = conv_transpose(grad_y, w), as a gather: each thread owns PY input pixels down one
// column for CPT input channels and sums over the output pixels and taps that read them, so
// every value of grad_x is written once, without atomics. Block (tile of grad_x, group,
// image). Shared memory: weights [og][KH][KW][cg] (input channel fastest), then the window of
// grad_y that the tile's pixels reach, [chunk_o][tgh][pitch] at gy_off, starting at output
// position (ty0, tx0) = ceil((tile origin + padding - (K-1) * dilation) / stride).
template <typename T, int KH, int KW, int CPT, int PY, bool UNIT>
__global__ void conv2d_grad_input_direct(
    const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx, int c_in, int h,
    int wd, int c_out, int oh, int ow, int groups, int sh, int sw, int ph, int pw, int dh,
    int dw, int tile_w, int row_groups, int tiles_w, int chunk_o, int tgh, int tgw, int pitch,
    int gy_off) {
  const int s_h = UNIT ? 1 : sh, s_w = UNIT ? 1 : sw;
  const int d_h = UNIT ? 1 : dh, d_w = UNIT ? 1 : dw;
  const int cg = c_in / groups, og = c_out / groups;
  const int g = blockIdx.y, n = blockIdx.z;
  const int iy0 = (blockIdx.x / tiles_w) * row_groups * PY;
  const int ix0 = (blockIdx.x % tiles_w) * tile_w;
  const int t = threadIdx.x, nt = blockDim.x;
  const int q = t % tile_w, rg = (t / tile_w) % row_groups, cs = t / (tile_w * row_groups);
  const int ty0 = mr::ceil_div(iy0 + ph - (KH - 1) * d_h, s_h);
  const int tx0 = mr::ceil_div(ix0 + pw - (KW - 1) * d_w, s_w);

  MR_DYNAMIC_SHARED(T, smem);
  T* w_s = smem;
  T* g_s = smem + gy_off;
  const int chan_pitch = tgh * pitch;

  const T* wg = w + static_cast<long long>(g) * og * cg * KH * KW;
  for (int e = t; e < og * cg * KH * KW; e += nt) {
    const int o = e / (cg * KH * KW);
    const int c = (e / (KH * KW)) % cg;
    w_s[(o * KH * KW + e % (KH * KW)) * cg + c] = wg[e];
  }

  // Where tap (i, j) of pixel py reads the grad_y window: row part roff[py][i] plus column
  // part coff[j], each -1 where the tap reads nothing (output position (iy + ph - i*dh) / sh
  // exists only when the division is exact).
  const int iy = iy0 + rg * PY, ix = ix0 + q;
  int roff[PY][KH], coff[KW];
#pragma unroll
  for (int py = 0; py < PY; ++py)
#pragma unroll
    for (int i = 0; i < KH; ++i) {
      const int num = iy + py + ph - i * d_h;
      roff[py][i] = (UNIT || num % s_h == 0) ? (num / s_h - ty0) * pitch : -1;
    }
#pragma unroll
  for (int j = 0; j < KW; ++j) {
    const int num = ix + pw - j * d_w;
    coff[j] = (UNIT || num % s_w == 0) ? num / s_w - tx0 : -1;
  }

  T acc[PY][CPT];
#pragma unroll
  for (int py = 0; py < PY; ++py)
#pragma unroll
    for (int u = 0; u < CPT; ++u) acc[py][u] = T(0);

  const T* gyg = gy + (static_cast<long long>(n) * c_out + g * og) * oh * ow;
  for (int o0 = 0; o0 < og; o0 += chunk_o) {
    const int oc = mr::imin(chunk_o, og - o0);
    if (o0 > 0) __syncthreads();
    mr::load_tile(g_s, gyg + static_cast<long long>(o0) * oh * ow, oc, oh, ow, ty0, tx0, tgh,
                  tgw, pitch, chan_pitch);
    __syncthreads();
    for (int o = 0; o < oc; ++o) {
      const T* gc = g_s + o * chan_pitch;
      const T* wo = w_s + (o0 + o) * KH * KW * cg + cs * CPT;
#pragma unroll
      for (int i = 0; i < KH; ++i) {
#pragma unroll
        for (int j = 0; j < KW; ++j) {
          const mr::Vec<T, CPT> wv = mr::load_vec<T, CPT>(wo + (i * KW + j) * cg);
#pragma unroll
          for (int py = 0; py < PY; ++py) {
            const bool ok = (roff[py][i] | coff[j]) >= 0;
            const T gv = gc[ok ? roff[py][i] + coff[j] : 0];
            const T gval = ok ? gv : T(0);
#pragma unroll
            for (int u = 0; u < CPT; ++u) acc[py][u] += gval * wv.v[u];
          }
        }
      }
    }
  }

  if (ix >= wd) return;
#pragma unroll
  for (int py = 0; py < PY; ++py) {
    if (iy + py >= h) break;
#pragma unroll
    for (int u = 0; u < CPT; ++u) {
      const int c = g * cg + cs * CPT + u;
      gx[((static_cast<long long>(n) * c_in + c) * h + iy + py) * wd + ix] = acc[py][u];
    }
  }
}

// Partial grad_w, deterministically: block (chunk, group) sums over its fixed share of the
// (image, tile) work items and writes one partial per weight to
// partial[chunk][o][c][kh][kw]; sum_partials (conv_im2col.cu) adds the chunks in order.
// Thread (pixel lane pt, pair) holds acc[OPT][KH][KW] for OPT output channels (slice s) and one
// input channel c, pair = s * cg + c, and visits every npt-th pixel of each tile. Threads of
// one pair are npt consecutive lanes (npt a power of two), so the final sum over them is a
// fixed xor butterfly of shuffles within a warp, then a fixed-order sum over the pair's
// warps through shared memory. Shared memory: the input window [cg][tih][x_pitch] (channel
// pitch x_cpitch) at 0 and the grad_y tile [og][tile_h * tile_w] (channel pitch gy_cpitch)
// at gy_off; after the last tile, the cross-warp buffer at 0.
template <typename T, int KH, int KW, int OPT, bool UNIT, int MIN_BLOCKS>
__global__ void __launch_bounds__(mr::kMaxThreads, MIN_BLOCKS) conv2d_grad_weight_direct(
    const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ partial, int n_img,
    int c_in, int h, int wd, int c_out, int oh, int ow, int groups, int sh, int sw, int ph,
    int pw, int dh, int dw, int tile_h, int tile_w, int tiles_h, int tiles_w, int pairs,
    int npt, int tih, int tiw, int x_pitch, int x_cpitch, int gy_cpitch, int gy_off) {
  constexpr int K = OPT * KH * KW;
  const int s_h = UNIT ? 1 : sh, s_w = UNIT ? 1 : sw;
  const int d_h = UNIT ? 1 : dh, d_w = UNIT ? 1 : dw;
  const int cg = c_in / groups, og = c_out / groups;
  const int g = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
  const int t = threadIdx.x, nt = blockDim.x;
  const int pt = t % npt, pair = t / npt;
  const bool active = pair < pairs;
  const int s = active ? pair / cg : 0, c = active ? pair % cg : 0;

  MR_DYNAMIC_SHARED(T, smem);
  T* x_s = smem;
  T* g_s = smem + gy_off;

  T acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = T(0);

  const long long items = static_cast<long long>(n_img) * tiles_h * tiles_w;
  const long long first = items * chunk / chunks, last = items * (chunk + 1) / chunks;
  const int pixels = tile_h * tile_w;
  // the lane's first pixel (row r0, column col0) and its step of npt pixels (dr rows, dc
  // columns): the pixel loop advances both without a division
  const int r0 = pt / tile_w, col0 = pt - r0 * tile_w;
  const int dr = npt / tile_w, dc = npt - dr * tile_w;
  for (long long item = first; item < last; ++item) {
    const int n = static_cast<int>(item / (tiles_h * tiles_w));
    const int tile = static_cast<int>(item % (tiles_h * tiles_w));
    const int oy0 = (tile / tiles_w) * tile_h, ox0 = (tile % tiles_w) * tile_w;
    if (item > first) __syncthreads();
    mr::load_tile(x_s, x + (static_cast<long long>(n) * c_in + g * cg) * h * wd, cg, h, wd,
                  oy0 * s_h - ph, ox0 * s_w - pw, tih, tiw, x_pitch, x_cpitch);
    mr::load_tile(g_s, gy + (static_cast<long long>(n) * c_out + g * og) * oh * ow, og, oh, ow,
                  oy0, ox0, tile_h, tile_w, tile_w, gy_cpitch);
    __syncthreads();
    if (!active) continue;
    const T* xc = x_s + c * x_cpitch;
    const T* gs = g_s + s * OPT * gy_cpitch;
    for (int e = pt, r = r0, col = col0; e < pixels; e += npt) {
      const T* xp = xc + r * s_h * x_pitch + col * s_w;
      T gv[OPT];
#pragma unroll
      for (int u = 0; u < OPT; ++u) gv[u] = gs[u * gy_cpitch + e];
#pragma unroll
      for (int i = 0; i < KH; ++i)
#pragma unroll
        for (int j = 0; j < KW; ++j) {
          const T xv = xp[i * d_h * x_pitch + j * d_w];
#pragma unroll
          for (int u = 0; u < OPT; ++u) acc[(u * KH + i) * KW + j] += gv[u] * xv;
        }
      r += dr;
      col += dc;
      if (col >= tile_w) {
        col -= tile_w;
        ++r;
      }
    }
  }

  // Sum each pair's npt partials: butterfly within the warp, then across the pair's warps.
  const int seg = npt < 32 ? npt : 32;
#pragma unroll
  for (int k = 0; k < K; ++k)
    for (int off = seg / 2; off > 0; off /= 2) acc[k] += __shfl_xor_sync(0xffffffffu, acc[k], off);
  const int wpp = npt > 32 ? npt / 32 : 1;
  __syncthreads();  // the tiles are no longer read; reuse shared memory
  T* red = smem;
  if (active && pt % 32 == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) red[(pair * wpp + pt / 32) * K + k] = acc[k];
  }
  __syncthreads();
  for (int e = t; e < pairs * K; e += nt) {
    const int p = e / K, k = e - p * K;
    T sum = T(0);
    for (int v = 0; v < wpp; ++v) sum += red[(p * wpp + v) * K + k];
    const int o = g * og + (p / cg) * OPT + k / (KH * KW);
    partial[((static_cast<long long>(chunk) * c_out + o) * cg + p % cg) * KH * KW +
            k % (KH * KW)] = sum;
  }
}
