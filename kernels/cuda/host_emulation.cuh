// Host emulation of the CUDA features the convolution kernels use, so that the same .cu
// sources run as plain C++ on a CPU (tests/test_cuda_compile.py compiles them with g++ and
// checks them against the NumPy reference before any GPU sees them).
//
// Each CUDA thread of a block is a fiber (ucontext) with its own stack; blocks run one after
// another. Between two __syncthreads() the warps of a block run one at a time, each as far as
// it can go, in forward or reverse order (a launch option): a thread that reads shared memory
// another warp writes in the same phase then sees different data in the two orders, so a
// result that changes with the order reveals a race. __shfl_xor_sync waits for all 32 lanes
// of its warp, as a full-mask shuffle must.
//
// Asynchronous copies (cp_async) land at some unknown time between their issue and the wait
// for their group (cp_async_wait). The emulator takes the two extremes: with threads in
// forward order a copy lands at the wait, so a read of its destination before the wait sees
// what was there before (NaN, or the previous tile); in reverse order it lands at once, so a
// copy into a buffer that other warps still read shows. Either way the result must be the
// reference's, and the same.
//
// The emulator fails a launch when threads wait at different barriers or shuffles, when some
// exit while others wait at a barrier, when a shuffle is not reached by a whole warp, on a
// misaligned vector load or store or asynchronous copy, when a block writes outside its
// dynamic shared memory (an asynchronous copy's destination is checked when it is issued),
// when a thread exits with copies still in flight, when an argument's type differs from the
// kernel's parameter, or when a launch exceeds a GPU's limits (1024 threads, 48 KiB of dynamic
// shared memory, 65535 blocks in y and z). Shared memory starts as NaN bytes, so reading it
// before writing it poisons the result.
#pragma once

#include <ucontext.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define MR_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(mr_emu::state().smem)
#define __syncthreads() mr_emu::barrier(__LINE__)
#define __shfl_xor_sync(mask, value, lane_mask) mr_emu::shfl_xor(value, lane_mask, __LINE__)
#define MR_ALIGNED(pointer, alignment) mr_emu::aligned(pointer, alignment)
#define MR_HOST_EMULATION

namespace mr_emu {

constexpr std::size_t kStack = 1 << 16;
constexpr std::size_t kRedZone = 256;
constexpr std::size_t kMaxShared = 48 * 1024;

enum class Wait { kNone, kBlock, kWarp };

// One asynchronous copy in flight: its destination and the bytes it will write there.
struct Copy {
  unsigned char* dst;
  std::array<unsigned char, 16> bytes;
  int size;
};

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack = std::vector<char>(kStack);
  bool done = false;
  Wait wait = Wait::kNone;
  int line = 0;                            // source line of the barrier or shuffle it waits at
  std::vector<Copy> open;                  // copies issued since the last commit
  std::vector<std::vector<Copy>> groups;   // committed groups, oldest first
};

struct State {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  int current = 0;
  std::function<void()> body;
  std::vector<unsigned char> shared_buf;
  unsigned char* smem = nullptr;
  std::size_t smem_size = 0;
  bool eager = false;  // asynchronous copies land when issued (else at the wait)
  std::vector<std::uint64_t> slots;  // shuffle exchange, one per thread
  std::string error;                 // found inside a fiber, raised by the scheduler
};

inline State& state() {
  static State s;
  return s;
}

inline void wait(Wait kind, int line) {
  State& s = state();
  Fiber& f = s.fibers[s.current];
  f.wait = kind;
  f.line = line;
  swapcontext(&f.ctx, &s.scheduler);
}

inline void barrier(int line) { wait(Wait::kBlock, line); }

// A GPU faults on a misaligned vector access: record it, and use the aligned address below
// instead (the host's aligned vector instructions would fault too).
template <typename P>
P aligned(P p, std::size_t alignment) {
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(p);
  if (address % alignment == 0) return p;
  state().error = "misaligned vector access of " + std::to_string(alignment) + " bytes";
  return reinterpret_cast<P>(address - address % alignment);
}

template <int BYTES>
void cp_async(void* smem, const void* gmem, bool valid) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
  State& s = state();
  unsigned char* dst = static_cast<unsigned char*>(smem);
  if (dst < s.smem || dst + BYTES > s.smem + s.smem_size) {
    s.error = "asynchronous copy outside dynamic shared memory";
    return;
  }
  if (reinterpret_cast<std::uintptr_t>(dst) % BYTES ||
      (valid && reinterpret_cast<std::uintptr_t>(gmem) % BYTES)) {
    s.error = "misaligned asynchronous copy of " + std::to_string(BYTES) + " bytes";
    return;
  }
  Copy copy{dst, {}, BYTES};
  if (valid) std::memcpy(copy.bytes.data(), gmem, BYTES);
  if (s.eager) {  // lands now; the wait still has to come
    std::memcpy(dst, copy.bytes.data(), BYTES);
    copy.size = 0;
  }
  s.fibers[s.current].open.push_back(copy);
}

inline void cp_async_commit() {
  Fiber& f = state().fibers[state().current];
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}

template <int N>
void cp_async_wait() {
  Fiber& f = state().fibers[state().current];
  while (f.groups.size() > static_cast<std::size_t>(N)) {
    for (const Copy& c : f.groups.front()) std::memcpy(c.dst, c.bytes.data(), c.size);
    f.groups.erase(f.groups.begin());
  }
}

inline bool copies_in_flight(const Fiber& f) {
  if (!f.open.empty()) return true;
  for (const auto& group : f.groups)
    if (!group.empty()) return true;
  return false;
}

// Every lane publishes its value, the warp meets, every lane reads its partner's, the warp
// meets again (so no slot is overwritten before it is read).
template <typename T>
T shfl_xor(T value, int lane_mask, int line) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffle of a value over 8 bytes");
  State& s = state();
  const int me = s.current;
  std::memcpy(&s.slots[me], &value, sizeof(T));
  wait(Wait::kWarp, line);
  T out;
  std::memcpy(&out, &s.slots[(me & ~31) | ((me & 31) ^ (lane_mask & 31))], sizeof(T));
  wait(Wait::kWarp, line);
  return out;
}

inline void fiber_entry() {
  State& s = state();
  s.body();
  Fiber& f = s.fibers[s.current];
  if (copies_in_flight(f)) s.error = "a thread exited with asynchronous copies in flight";
  f.done = true;  // returning resumes the scheduler through uc_link
}

// Runs one block of n threads to completion. Between two block barriers, warps run one after
// another (in forward or reverse order), each as far as it can go: its lanes run in turn up
// to the next barrier or shuffle, and a shuffle releases once all 32 lanes have reached it.
inline void run_block(int n, bool reverse) {
  State& s = state();
  s.fibers.resize(n);
  s.slots.assign(n, 0);
  s.error.clear();
  for (Fiber& f : s.fibers) {
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &s.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
    f.done = false;
    f.wait = Wait::kNone;
    f.open.clear();
    f.groups.clear();
  }
  const unsigned bx = blockDim.x, by = blockDim.y;
  const int warps = (n + 31) / 32;
  for (;;) {
    for (int k = 0; k < warps; ++k) {
      const int lo = 32 * (reverse ? warps - 1 - k : k), lanes = n - lo < 32 ? n - lo : 32;
      for (;;) {
        for (int l = 0; l < lanes; ++l) {
          const int t = lo + (reverse ? lanes - 1 - l : l);
          Fiber& f = s.fibers[t];
          if (f.done || f.wait != Wait::kNone) continue;
          s.current = t;
          threadIdx = dim3(t % bx, (t / bx) % by, t / (bx * by));
          swapcontext(&s.scheduler, &f.ctx);
        }
        if (!s.error.empty()) throw std::runtime_error(s.error);
        int at_shuffle = 0;
        for (int l = 0; l < lanes; ++l) {
          const Fiber& f = s.fibers[lo + l];
          if (f.wait != Wait::kWarp) continue;
          if (at_shuffle++ > 0 && f.line != s.fibers[lo].line)
            throw std::runtime_error("lanes of a warp at different shuffles");
        }
        if (at_shuffle == 0) break;
        if (at_shuffle != 32) throw std::runtime_error("a shuffle that not all 32 lanes reach");
        for (int l = 0; l < lanes; ++l) s.fibers[lo + l].wait = Wait::kNone;
      }
    }
    int waiting = 0, line = -1;
    for (const Fiber& f : s.fibers) {
      if (f.done) continue;
      if (waiting++ == 0) line = f.line;
      if (f.line != line) throw std::runtime_error("threads wait at different barriers");
    }
    if (waiting == 0) return;
    if (waiting != n) throw std::runtime_error("a barrier with exited threads");
    for (Fiber& f : s.fibers) f.wait = Wait::kNone;
  }
}

// Launches kernel(args...) over the grid; args[i] points at the i-th argument's value, as in
// cudaLaunchKernel. kinds[i] is 'p' (pointer), 'i' (integer) or 'f' (floating) and sizes[i]
// its size in bytes: both are checked against the kernel's parameter types.
template <typename... A, std::size_t... I>
void launch_impl(void (*kernel)(A...), dim3 grid, dim3 block, std::size_t shared, bool reverse,
                 void** args, const char* kinds, const int* sizes, std::index_sequence<I...>) {
  const char expect[] = {(std::is_pointer<A>::value    ? 'p'
                          : std::is_integral<A>::value ? 'i'
                                                       : 'f')...,
                         0};
  const int expect_sizes[] = {static_cast<int>(sizeof(A))..., 0};
  if (std::strlen(kinds) != sizeof...(A))
    throw std::runtime_error("the kernel takes " + std::to_string(sizeof...(A)) +
                             " arguments, got " + std::to_string(std::strlen(kinds)));
  for (std::size_t k = 0; k < sizeof...(A); ++k)
    if (kinds[k] != expect[k] || sizes[k] != expect_sizes[k])
      throw std::runtime_error("argument " + std::to_string(k) + " has the wrong type");
  const std::tuple<A...> values{*static_cast<std::remove_reference_t<A>*>(args[I])...};
  const long long threads = static_cast<long long>(block.x) * block.y * block.z;
  if (threads < 1 || threads > 1024) throw std::runtime_error("block size out of range");
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535)
    throw std::runtime_error("grid size out of range");
  if (shared > kMaxShared) throw std::runtime_error("dynamic shared memory over 48 KiB");
  State& s = state();
  s.shared_buf.assign(shared + 2 * kRedZone, 0xFF);
  s.smem = s.shared_buf.data() + kRedZone;
  s.smem_size = shared;
  s.eager = reverse;
  s.body = [&] { kernel(std::get<I>(values)...); };
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = dim3(x, y, z);
        std::memset(s.smem, 0xFF, shared);
        run_block(static_cast<int>(threads), reverse);
        for (std::size_t k = 0; k < kRedZone; ++k)
          if (s.shared_buf[k] != 0xFF || s.shared_buf[kRedZone + shared + k] != 0xFF)
            throw std::runtime_error("write outside dynamic shared memory");
      }
}

// Returns 0, or 1 with the reason in err.
template <typename... A>
int launch(void (*kernel)(A...), const unsigned* grid, const unsigned* block,
           std::size_t shared, int reverse, void** args, const char* kinds, const int* sizes,
           char* err, int err_len) {
  try {
    launch_impl(kernel, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]),
                shared, reverse != 0, args, kinds, sizes, std::index_sequence_for<A...>{});
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = 0;
    return 1;
  }
  return 0;
}

}  // namespace mr_emu

namespace mr {
using mr_emu::cp_async;
using mr_emu::cp_async_commit;
using mr_emu::cp_async_wait;
}  // namespace mr
