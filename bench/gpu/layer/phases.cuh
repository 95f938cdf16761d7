// Phases of one launch that depend on each other (layer_attn.cu, layer_mlp.cu). Blocks
// take tickets in the order they start (an atomic counter) and the ticket,
// not blockIdx, picks the work: a block then only ever waits for blocks with
// lower tickets, which are already running, so no order of scheduling can
// deadlock. A phase counts its finished blocks (release); the next waits for
// the count (acquire) and reads what they wrote past L1 (`__ldcg`), which is
// not coherent between SMs.

__device__ __forceinline__ int ld_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

#ifndef PHASE_SLEEP_NS
#define PHASE_SLEEP_NS 64
#endif

// Waits until *counter >= target (one thread polls; the block then goes on).
// `waited`, when set, gets the time the wait ended (bench/gpu/layer_lab.py).
struct WaitFor {
  const int* counter;
  int target;
  unsigned long long* waited = nullptr;
  __device__ void operator()() const {
    if (threadIdx.x == 0) {
      while (ld_acquire(counter) < target) __nanosleep(PHASE_SLEEP_NS);
      if (waited) *waited = global_ns();
    }
    __syncthreads();
  }
};

// Counts this block as done once all its threads' writes are made visible;
// returns the previous count in thread 0 (-1 in the others).
__device__ __forceinline__ int phase_done(int* counter) {
  __syncthreads();
  int old = -1;
  if (threadIdx.x == 0) {
    __threadfence();
    old = atomicAdd(counter, 1);
  }
  return old;
}

// Counts this block as done in the launch's last phase, `phase[last]`; the
// launch's last block (every block has taken its ticket and passed its wait
// by then) sets the ticket and phase counts phase[0..=last] back to zero for
// the next launch.
__device__ __forceinline__ void launch_done(int* phase, int last, int blocks) {
  if (phase_done(phase + last) == blocks - 1) {
    for (int i = 0; i <= last; ++i) phase[i] = 0;
  }
}

// This block's ticket: the order in which blocks of the launch started.
__device__ __forceinline__ int take_ticket(int* counter) {
  __shared__ int ticket;
  if (threadIdx.x == 0) ticket = atomicAdd(counter, 1);
  __syncthreads();
  return ticket;
}

// Per-block timeline for bench/gpu/layer_lab.py (LAYER_TRACE: the kernel has
// an output `trace` of 4 uint64 per block): phase | SM << 8, start, end of the
// wait, end. Empty otherwise.
#ifdef LAYER_TRACE
#define LAYER_TRACE_START const unsigned long long trace_start = global_ns();
#define LAYER_TRACE_TICKET(t)                                                  \
  unsigned long long* tr = reinterpret_cast<unsigned long long*>(trace) + (t) * 4; \
  if (threadIdx.x == 0) tr[1] = trace_start;
#define LAYER_TRACE_END(p)                                  \
  if (threadIdx.x == 0) {                                   \
    unsigned smid;                                          \
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));       \
    tr[0] = (static_cast<unsigned long long>(smid) << 8) | (p); \
    tr[3] = global_ns();                                    \
  }
#define LAYER_TRACE_WAITED tr + 2
#else
#define LAYER_TRACE_START
#define LAYER_TRACE_TICKET(t)
#define LAYER_TRACE_END(p)
#define LAYER_TRACE_WAITED nullptr
#endif
