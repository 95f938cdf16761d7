// The decoder's q, k, v for a prefill from its fused q/k/v projection, one
// warp per head row: RMSNorm of each q and k head (as MLX's rms_norm rounds
// it: x * rsqrt(mean(x^2) + eps) rounded to T, times the weight in T), then
// rotate-half RoPE by per-row tables in T (x cos + rotate_half(x) sin, each
// product and the sum rounded to T, as the MLX operations round them); v
// copied. Outputs are (1, heads, n, HD), the layout the cache and attention
// take, instead of transposed views.
// Template constants: T, NH, NKV, HD (% 64 == 0), EPS_BITS (the epsilon's f32
// bits). qkv: (n, (NH + 2 NKV) HD); qn, kn: (HD); cos_t, sin_t: (n, HD) in T.
constexpr int SLOTS = NH + 2 * NKV, PER = HD / 32, HALF = HD / 2;
const int n = qkv_shape[0];
const size_t row = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
const int lane = threadIdx.x & 31;
if (row >= static_cast<size_t>(n) * SLOTS) return;
const int t = row / SLOTS, slot = row % SLOTS;
const T* src = qkv + static_cast<size_t>(t) * SLOTS * HD + slot * HD;
T xv[PER];
#pragma unroll
for (int j = 0; j < PER; ++j) xv[j] = src[lane + 32 * j];
if (slot >= NH + NKV) {
  T* dst = v + (static_cast<size_t>(slot - NH - NKV) * n + t) * HD;
#pragma unroll
  for (int j = 0; j < PER; ++j) dst[lane + 32 * j] = xv[j];
  return;
}
const bool is_q = slot < NH;
const T* nw = is_q ? qn : kn;
float ss = 0.f;
#pragma unroll
for (int j = 0; j < PER; ++j) ss = fmaf(static_cast<float>(xv[j]), static_cast<float>(xv[j]), ss);
#pragma unroll
for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
const float inv = rsqrtf(ss / HD + __int_as_float(EPS_BITS));
T y[PER];
#pragma unroll
for (int j = 0; j < PER; ++j) y[j] = nw[lane + 32 * j] * static_cast<T>(static_cast<float>(xv[j]) * inv);
const T* c = cos_t + static_cast<size_t>(t) * HD;
const T* s = sin_t + static_cast<size_t>(t) * HD;
T* dst = (is_q ? q : k) + (static_cast<size_t>(is_q ? slot : slot - NH) * n + t) * HD;
#pragma unroll
for (int j = 0; j < PER / 2; ++j) {
  const int i = lane + 32 * j;
  const T a = y[j], b = y[j + PER / 2];
  dst[i] = a * c[i] + (-b) * s[i];
  dst[i + HALF] = b * c[i + HALF] + a * s[i + HALF];
}
