// One launch of qmv4_rows (qmv4.cuh), a block per 16 rows of w (8 gate/up
// pairs for SwiGLU; with PERSIST, fewer blocks each taking several). Template
// constants: T, K, N, WARPS, U, PERSIST; defines NORM
// (EPS_BITS: its epsilon's f32 bits), RESID, SWIGLU pick the inputs; ARGMAX
// (the LM head) also writes the argmax of out to tok[0] and advances meta's
// [len, pos], through pick (two u64, zero between launches). Launched early
// (phases.cuh), a block issues its first weight loads before it waits.
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
qmv4_pick_done(pick_at, tok, meta);
#endif
