// The hook our device functions (qmv4.cuh, attn.cuh) take for work that must
// wait inside a launch: a functor run after a block's first loads are issued
// and before it reads its input. The engine's kernels wait for nothing
// (NoWait); bench/gpu/layer/ chains several phases in one launch with it.

// A phase that waits for nothing (a kernel of its own).
struct NoWait {
  static constexpr bool waits = false;
  __device__ void operator()() const {}
};

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// Whether a waiting GEMV block asks L2 for its rows before its wait.
#ifndef PHASE_PREFETCH
#define PHASE_PREFETCH 0
#endif
