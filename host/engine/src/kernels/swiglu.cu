// silu(g) * u over rows of the fused gate/up projection y = [g | u], one
// element per thread, as Hugging Face computes it: silu in f32 rounded to T
// once, then the product rounded to T. Template constants: T, I (width of g).
// y: (rows, 2 I); out: (rows, I).
const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
if (idx >= static_cast<size_t>(y_shape[0]) * I) return;
const size_t row = idx / I, col = idx % I;
const float g = static_cast<float>(y[row * 2 * I + col]);
const T act = static_cast<T>(g / (1.f + expf(-g)));
out[idx] = static_cast<T>(static_cast<float>(act) * static_cast<float>(y[row * 2 * I + I + col]));
