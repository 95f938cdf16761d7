// The vision tower's q, k, v from its fused projection, one thread per
// rotated pair (j, j + HD/2) of one head row: RoPE on q and k computed in f32
// and rounded to T once, as Hugging Face does (rotate_half: the first half
// takes -x2 sin, the second x1 sin; no fused multiply-add, so each product is
// rounded as two f32 operations round it); v copied. The outputs are
// (1, HEADS, n, HD), the layout attention reads, instead of transposed views.
// Template constants: T, HEADS, HD (even). qkv: (n, 3 HEADS HD); cos_t, sin_t: (n, HD) f32.
constexpr int H2 = HD / 2;
const int n = qkv_shape[0];
const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
if (idx >= static_cast<size_t>(n) * 3 * HEADS * H2) return;
const int j = idx % H2;
size_t r = idx / H2;
const int h = r % HEADS;
r /= HEADS;
const int part = r % 3;
const int t = r / 3;
const T* src = qkv + (static_cast<size_t>(t) * 3 * HEADS + part * HEADS + h) * HD;
T* dst = (part == 0 ? q : part == 1 ? k : v) + (static_cast<size_t>(h) * n + t) * HD;
if (part == 2) {
  dst[j] = src[j];
  dst[j + H2] = src[j + H2];
  return;
}
const float a = static_cast<float>(src[j]), b = static_cast<float>(src[j + H2]);
const float* c = cos_t + static_cast<size_t>(t) * HD;
const float* s = sin_t + static_cast<size_t>(t) * HD;
dst[j] = static_cast<T>(__fadd_rn(__fmul_rn(a, c[j]), __fmul_rn(-b, s[j])));
dst[j + H2] = static_cast<T>(__fadd_rn(__fmul_rn(b, c[j + H2]), __fmul_rn(a, s[j + H2])));
