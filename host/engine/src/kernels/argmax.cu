// The first index of the largest of V logits (MLX's argmax; NaNs never win),
// written to tok[0]; then the step's [len, pos] in meta advance for the next
// step. One block of THREADS threads. Template constants: T, V, THREADS.
pdl_trigger();
pdl_wait();
const float neg_inf = __int_as_float(0xff800000);
const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
float best = neg_inf;
int at = 0x7fffffff;
constexpr int VECS = V / 8;
#pragma unroll 4
for (int v = tid; v < VECS; v += THREADS) {
  const uint4 raw = __ldcg(reinterpret_cast<const uint4*>(logits) + v);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float f = static_cast<float>(e[j]);
    if (f > best) {
      best = f;
      at = v * 8 + j;
    }
  }
}
for (int i = VECS * 8 + tid; i < V; i += THREADS) {
  const float f = static_cast<float>(logits[i]);
  if (f > best || (f == best && i < at)) {
    best = f;
    at = i;
  }
}
// Among equal values the lower index wins, so the result is MLX's.
auto join = [&](float ob, int oi) {
  if (ob > best || (ob == best && oi < at)) {
    best = ob;
    at = oi;
  }
};
#pragma unroll
for (int o = 16; o > 0; o >>= 1) join(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, at, o));
__shared__ float sb[THREADS / 32];
__shared__ int si[THREADS / 32];
if (lane == 0) {
  sb[warp] = best;
  si[warp] = at;
}
__syncthreads();
if (warp == 0) {
  best = lane < THREADS / 32 ? sb[lane] : neg_inf;
  at = lane < THREADS / 32 ? si[lane] : 0x7fffffff;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) join(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, at, o));
  if (lane == 0) {
    tok[0] = at == 0x7fffffff ? 0u : static_cast<uint32_t>(at);
    meta[0] += 1;
    meta[1] += 1;
  }
}
