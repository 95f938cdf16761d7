// The embedding row of the step's token from a 4-bit affine-quantized table
// (group 64), dequantized as MLX's affine_dequantize rounds it (scale * q +
// bias in T). The token: the previous step's argmax as the LM head left it
// in pick (qmv4_pick_key; cleared here), or tok[0] where pick is 0 (a
// request's first step: the prefill's token). One block; a
// thread turns 32-bit words (8 codes) into 8 values. The first launch of a
// step: the next may start early (phases.cuh). Template constants: T, H (row
// width, % 64 == 0).
pdl_trigger();
unsigned long long* pick_at = reinterpret_cast<unsigned long long*>(pick);
const unsigned long long key = *pick_at;
const size_t id = key != 0ull ? 0xFFFFFFFFu - static_cast<uint32_t>(key) : tok[0];
const uint32_t* wr = w + id * (H / 8);
const T* sr = scales + id * (H / 64);
const T* br = biases + id * (H / 64);
for (int i = threadIdx.x; i < H / 8; i += blockDim.x) {
  const uint32_t v = wr[i];
  const T s = sr[i / 8], b = br[i / 8];
  struct alignas(16) Row {
    T e[8];
  } r;
#pragma unroll
  for (int j = 0; j < 8; ++j) r.e[j] = s * static_cast<T>(static_cast<float>((v >> (4 * j)) & 15u)) + b;
  reinterpret_cast<Row*>(out)[i] = r;
}
__syncthreads();  // every thread has read pick
if (threadIdx.x == 0 && key != 0ull) *pick_at = 0ull;
