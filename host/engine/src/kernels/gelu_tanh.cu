// Tanh-approximate GELU, one element per thread, in f32 rounded to T once
// (as PyTorch's gelu(approximate="tanh") computes it):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Template constant: T.
const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
if (idx >= static_cast<size_t>(x_shape[0])) return;
const float v = static_cast<float>(x[idx]);
const float inner = 0.7978845608f * (v + 0.044715f * v * v * v);
out[idx] = static_cast<T>(0.5f * v * (1.f + tanhf(inner)));
