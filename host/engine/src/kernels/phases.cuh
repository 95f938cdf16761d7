// The hook our device functions (qmv4.cuh, attn.cuh) take for work that must
// wait inside a launch: a functor run after a block's first loads are issued
// and before it reads its input. The engine's kernels wait for nothing
// (NoWait); bench/gpu/layer/ chains several phases in one launch with it.

// A phase that waits for nothing (a kernel of its own).
struct NoWait {
  __device__ void operator()() const {}
};


// Programmatic dependent launch (sm_90 on): a kernel launched with it may
// start while the previous launch drains. pdl_wait() blocks until that launch
// has finished and its writes are visible; it is a no-op in a kernel launched
// without it (MLX's launches). pdl_trigger() lets the next launch start once
// every block of this one has called it.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#ifdef VLM_TIMELINE
  vlm_tl_mark_wait();
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// A kernel of its own that may have started early: waits for the previous launch.
struct GridWait {
  __device__ void operator()() const { pdl_wait(); }
};
