// A timeline of the step runner's launches (VLM_BENCH_TIMELINE, steps.rs).
// Every standalone kernel (step.rs) declares VLM_TL_PARAMS after its
// parameters and opens its body with VLM_TL_BEGIN; both are empty unless the
// engine defines VLM_TIMELINE. With it, a kernel takes two more parameters,
// and thread 0 of each block writes four u64 at slot vlm_tl_base + blockIdx.x
// of vlm_tl when it exits: when it started, when its wait for the previous
// launch returned (0: it did not wait), when it ended (%globaltimer, ns) and
// its SM. Measures the launches as they overlap, which Nsight Compute (one
// launch at a time) cannot. A kernel may mark phases too (VLM_TL_PHASES).
#ifdef VLM_TIMELINE
__device__ __forceinline__ unsigned long long vlm_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// Thread 0's time out of pdl_wait (phases.cuh).
__shared__ unsigned long long vlm_tl_waited;
__device__ __forceinline__ void vlm_tl_mark_wait() {
  if (threadIdx.x == 0) vlm_tl_waited = vlm_now();
}
struct VlmTimeline {
  unsigned long long* at;
  unsigned long long start;
  __device__ VlmTimeline(uint32_t* buf, int base)
      : at(reinterpret_cast<unsigned long long*>(buf) + 4 * (static_cast<size_t>(base) + blockIdx.x)),
        start(vlm_now()) {
    if (threadIdx.x == 0) vlm_tl_waited = 0;
  }
  // Runs at every return of thread 0 from the body.
  __device__ ~VlmTimeline() {
    if (threadIdx.x == 0) {
      unsigned sm;
      asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
      at[0] = start;
      at[1] = vlm_tl_waited;
      at[2] = vlm_now();
      at[3] = sm;
    }
  }
};
// Up to four times inside a block (thread 0's), at slot VLM_TL_PHASE_SLOT +
// vlm_tl_base + blockIdx.x: where a kernel's time goes after its wait
// (VLM_TL_PHASE_SLOT: the blocks the timeline holds, defined by step.rs).
struct VlmPhases {
  unsigned long long* at;
  __device__ void operator()(int i) const {
    if (threadIdx.x == 0) at[i] = vlm_now();
  }
};
#define VLM_TL_PARAMS , uint32_t *vlm_tl, int vlm_tl_base
#define VLM_TL_BEGIN VlmTimeline vlm_tl_guard(vlm_tl, vlm_tl_base);
#define VLM_TL_PHASES \
  VlmPhases { reinterpret_cast<unsigned long long*>(vlm_tl) + 4 * (static_cast<size_t>(VLM_TL_PHASE_SLOT) + vlm_tl_base + blockIdx.x) }
#else
struct VlmNoPhases {
  __device__ void operator()(int) const {}
};
#define VLM_TL_PARAMS
#define VLM_TL_BEGIN
#define VLM_TL_PHASES VlmNoPhases{}
#endif
