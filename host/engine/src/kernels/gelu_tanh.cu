// Tanh-approximate GELU, V elements per thread, in f32 rounded to T once (as
// PyTorch's gelu(approximate="tanh") computes it):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Template constants: T, V
// (divides the element count).
struct alignas(2 * V) Vec {
  T e[V];
};
const size_t idx = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
if (idx >= static_cast<size_t>(x_shape[0])) return;
const Vec in = *reinterpret_cast<const Vec*>(x + idx);
Vec r;
#pragma unroll
for (int i = 0; i < V; ++i) {
  const float v = static_cast<float>(in.e[i]);
  const float inner = 0.7978845608f * (v + 0.044715f * v * v * v);
  r.e[i] = static_cast<T>(0.5f * v * (1.f + tanhf(inner)));
}
*reinterpret_cast<Vec*>(out + idx) = r;
