// Helpers shared by our kernels. 4-bit weights use MLX's affine format: uint32
// words of eight 4-bit codes, one bf16/f16 scale and bias per 64 codes.

// Shared-memory index of input element i: chunks of 32 floats padded to 33,
// so that lane l reading chunk (l + 32 m) hits bank (l + m) % 32.
__device__ __forceinline__ int q4_slot(int i) { return (i >> 5) * 33 + (i & 31); }

// This lane's part of one row's dot product with the input row in shared
// memory, from the row's 16-byte chunks (32 codes, half a group) that the
// caller loaded: chunk lane + 32 i is wv[i], with its group's scale and bias.
template <typename T, int K>
__device__ __forceinline__ float q4_chunks_dot(
    const uint4* wv, const T* sv, const T* bv, const float* xs, int lane) {
  constexpr int CHUNKS = K / 32;
  constexpr int PER_LANE = (CHUNKS + 31) / 32;
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < PER_LANE; ++i) {
    const int c = lane + 32 * i;
    if (CHUNKS % 32 != 0 && c >= CHUNKS) break;
    const float* xc = xs + c * 33;
    const unsigned words[4] = {wv[i].x, wv[i].y, wv[i].z, wv[i].w};
    float dot = 0.f, xsum = 0.f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int t = 0; t < 8; ++t) {
        const float xv = xc[j * 8 + t];
        dot = fmaf(xv, static_cast<float>((words[j] >> (4 * t)) & 0xFu), dot);
        xsum += xv;
      }
    }
    acc = fmaf(static_cast<float>(sv[i]), dot, fmaf(static_cast<float>(bv[i]), xsum, acc));
  }
  return acc;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
