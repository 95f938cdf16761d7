// out = epilogue(prologue(x) · dequantize(w)ᵀ) for one input row.
// Template constants: T, K (input width, % 64 == 0), N (rows of w), WARPS, ROWS.
// Defines set per variant: NORM (RMSNorm of x by nw, eps first, rounded as
// MLX's rms_norm rounds), RESID (add res, as a separate add would), SWIGLU (rows
// [0, N/2) are the gate and [N/2, N) the up projection; out = silu(g) * u).
// EPS_BITS: the RMSNorm epsilon's f32 bits (a template constant, not an
// input: a small host-made array would be read across PCIe by every block).
// The weight rows' loads are issued first, so their latency overlaps the
// prologue: decoding is bound by memory latency as much as by bandwidth.
extern __shared__ float xs[];
const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
#if SWIGLU
constexpr int OUT = N / 2;
constexpr int MATS = 2;
#else
constexpr int OUT = N;
constexpr int MATS = 1;
#endif
constexpr int CHUNKS = K / 32;
constexpr int PL = (CHUNKS + 31) / 32;
constexpr int R = ROWS * MATS;
const int first = (blockIdx.x * WARPS + warp) * ROWS;
uint4 wv[R][PL];
T sv[R][PL], bv[R][PL];
#pragma unroll
for (int r = 0; r < R; ++r) {
  const int row = first + r % ROWS;
  const size_t n = static_cast<size_t>(row < OUT ? row : OUT - 1) + (r / ROWS) * OUT;
  const uint4* wr = reinterpret_cast<const uint4*>(w + n * (K / 8));
#pragma unroll
  for (int i = 0; i < PL; ++i) {
    const int c = lane + 32 * i;
    if (CHUNKS % 32 == 0 || c < CHUNKS) {
      wv[r][i] = wr[c];
      sv[r][i] = scales[n * (K / 64) + (c >> 1)];
      bv[r][i] = biases[n * (K / 64) + (c >> 1)];
    }
  }
}
constexpr int THREADS = WARPS * 32;
constexpr int XV = K / 8;
constexpr int XPT = (XV + THREADS - 1) / THREADS;
uint4 xr[XPT];
#pragma unroll
for (int j = 0; j < XPT; ++j) {
  const int v = tid + j * THREADS;
  xr[j] = (XV % THREADS == 0 || v < XV) ? reinterpret_cast<const uint4*>(x)[v] : make_uint4(0, 0, 0, 0);
}
#if NORM
__shared__ float partial[WARPS];
uint4 nr[XPT];
float ss = 0.f;
#pragma unroll
for (int j = 0; j < XPT; ++j) {
  const int v = tid + j * THREADS;
  nr[j] = (XV % THREADS == 0 || v < XV) ? reinterpret_cast<const uint4*>(nw)[v] : make_uint4(0, 0, 0, 0);
  const T* e = reinterpret_cast<const T*>(&xr[j]);
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    const float f = static_cast<float>(e[t]);
    ss = fmaf(f, f, ss);
  }
}
ss = warp_sum(ss);
if (lane == 0) partial[warp] = ss;
__syncthreads();
float total = 0.f;
#pragma unroll
for (int i = 0; i < WARPS; ++i) total += partial[i];
const float inv = rsqrtf(total / K + __int_as_float(EPS_BITS));
#endif
#pragma unroll
for (int j = 0; j < XPT; ++j) {
  const int v = tid + j * THREADS;
  if (XV % THREADS == 0 || v < XV) {
    const T* e = reinterpret_cast<const T*>(&xr[j]);
#if NORM
    const T* g = reinterpret_cast<const T*>(&nr[j]);
#endif
#pragma unroll
    for (int t = 0; t < 8; ++t) {
#if NORM
      const T y = g[t] * static_cast<T>(static_cast<float>(e[t]) * inv);
      xs[q4_slot(v * 8 + t)] = static_cast<float>(y);
#else
      xs[q4_slot(v * 8 + t)] = static_cast<float>(e[t]);
#endif
    }
  }
}
__syncthreads();

if (first >= OUT) return;
float acc[R];
#pragma unroll
for (int r = 0; r < R; ++r) acc[r] = warp_sum(q4_chunks_dot<T, K>(wv[r], sv[r], bv[r], xs, lane));
if (lane == 0) {
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int n = first + r;
    if (n < OUT) {
#if SWIGLU
      // As silu(g) * u over bf16 arrays: each op rounds to T.
      const T g = static_cast<T>(acc[r]);
      const T sig = static_cast<T>(1.f / (1.f + expf(-static_cast<float>(g))));
      out[n] = (g * sig) * static_cast<T>(acc[r + ROWS]);
#elif RESID
      out[n] = res[n] + static_cast<T>(acc[r]);
#else
      out[n] = static_cast<T>(acc[r]);
#endif
    }
  }
}
