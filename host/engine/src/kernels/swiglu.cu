// silu(g) * u over rows of the fused gate/up projection y = [g | u], V
// elements per thread (16-byte loads when V is 8), as Hugging Face computes
// it: silu in f32 rounded to T once, then the product rounded to T.
// Template constants: T, I (width of g, % V == 0), V. y: (rows, 2 I); out: (rows, I).
struct alignas(2 * V) Vec {
  T e[V];
};
const size_t idx = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
if (idx >= static_cast<size_t>(y_shape[0]) * I) return;
const size_t row = idx / I, col = idx % I;
const Vec g = *reinterpret_cast<const Vec*>(y + row * 2 * I + col);
const Vec u = *reinterpret_cast<const Vec*>(y + row * 2 * I + I + col);
Vec r;
#pragma unroll
for (int i = 0; i < V; ++i) {
  const float gf = static_cast<float>(g.e[i]);
  const T act = static_cast<T>(gf / (1.f + expf(-gf)));
  r.e[i] = static_cast<T>(static_cast<float>(act) * static_cast<float>(u.e[i]));
}
*reinterpret_cast<Vec*>(out + idx) = r;
