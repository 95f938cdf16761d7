// One launch of qmv4_rows (qmv4.cuh), a block per 16 rows of w (8 gate/up
// pairs for SwiGLU; with PERSIST, fewer blocks each taking several). Template
// constants: T, K, N, WARPS, U, PERSIST; defines NORM
// (EPS_BITS: its epsilon's f32 bits), RESID, SWIGLU pick the inputs; ARGMAX
// (the LM head) also leaves the argmax of out in pick (a u64 that is 0
// before; the next step's embedding lookup reads and clears it) and
// advances meta's [len, pos]. Launched early (phases.cuh), a block issues
// its first weight loads before it waits.
pdl_trigger();
extern __shared__ unsigned xp[];
#if NORM
const T* norm_w = nw;
const float eps = __int_as_float(EPS_BITS);
#else
const T* norm_w = nullptr;
const float eps = 0.f;
#endif
#if RESID
const T* resid = res;
#else
const T* resid = nullptr;
#endif
#if ARGMAX
unsigned long long* pick_at = reinterpret_cast<unsigned long long*>(pick);
#else
unsigned long long* pick_at = nullptr;
#endif
qmv4_rows<T, K, N, WARPS, U, NORM, RESID, SWIGLU, PERSIST, GridWait, ARGMAX>(blockIdx.x, x, norm_w, eps, w, scales,
                                                                             biases, resid, out, xp, GridWait{},
                                                                             pick_at);
#if ARGMAX
// Every launch before this one is done (each waited for its own before
// ending), so no attention of this step reads [len, pos] any more.
if (blockIdx.x == 0 && threadIdx.x == 0) {
  meta[0] += 1;
  meta[1] += 1;
}
#endif
