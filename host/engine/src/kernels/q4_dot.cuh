// Helpers shared by our kernels. 4-bit weights use MLX's affine format: uint32
// words of eight 4-bit codes (code t at bits 4t), one bf16/f16 scale and bias
// per 64 codes.

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

// Two T values in one register, `lo` in the low half (the order mma fragments use).
__device__ __forceinline__ unsigned pack2(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return static_cast<unsigned>(__bfloat16_as_ushort(lo)) | (static_cast<unsigned>(__bfloat16_as_ushort(hi)) << 16);
}
__device__ __forceinline__ unsigned pack2(__half lo, __half hi) {
  return static_cast<unsigned>(__half_as_ushort(lo)) | (static_cast<unsigned>(__half_as_ushort(hi)) << 16);
}

// The two T values of a register as floats (low half first).
template <typename T>
__device__ __forceinline__ float2 unpack2(unsigned u);
template <>
__device__ __forceinline__ float2 unpack2<__nv_bfloat16>(unsigned u) {
  return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xFFFF0000u));
}
template <>
__device__ __forceinline__ float2 unpack2<__half>(unsigned u) {
  return make_float2(__half2float(__ushort_as_half(static_cast<unsigned short>(u & 0xFFFFu))),
                     __half2float(__ushort_as_half(static_cast<unsigned short>(u >> 16))));
}

// OR-ing a 4-bit code q into the mantissa of `bits` gives the value offset + q
// exactly (bf16: 128 + q; f16: 1024 + q).
template <typename T>
struct Q4Magic;
template <>
struct Q4Magic<__nv_bfloat16> {
  static constexpr unsigned bits = 0x43004300u;
  static constexpr float offset = 128.f;
};
template <>
struct Q4Magic<__half> {
  static constexpr unsigned bits = 0x64006400u;
  static constexpr float offset = 1024.f;
};

// Codes t and t + 4 of an 8-code word as two T values offset + q (one LOP3).
template <typename T>
__device__ __forceinline__ unsigned q4_pair(unsigned word, int t) {
  return ((word >> (4 * t)) & 0x000F000Fu) | Q4Magic<T>::bits;
}

// c += a · b on tensor cores: A 16x16 (row), B 16x8 (col), f32 accumulators;
// the last argument picks the input type.
__device__ __forceinline__ void mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1,
                                          __nv_bfloat16) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, __half) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
