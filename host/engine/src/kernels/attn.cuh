// One decoding step of attention for one key/value head and one split of the
// positions (flash-decoding), by a block of ATTN_THREADS threads for `block` =
// head * splits + split: RMSNorm and RoPE of the group's query heads and of
// the new key (rounded as MLX's rms_norm and rope round), the new key and value
// written into the caches at position `len` (by split 0), then softmax-weighted
// sums over this split's positions, written unnormalised with their max and
// sum; the last block of each key/value head to finish (counted in
// `counters`, which it resets to zero) joins them into the output rows of its
// query heads and returns true. A step is a chain of dependent memory round
// trips, so each link is kept to one: a split's first tile of keys and values
// (ATTN_TILE positions) is loaded before the wait, all at once, and the join
// loads every split's partial sums at once.
// Template constants: T, HD (% 64 == 0), NH, NKV; `splits` (at most
// ATTN_MAX_SPLITS) is the launch's.
// qkv: (NH + 2 NKV) * HD, read past L1 (it may come from the same launch,
// after `wait`); kc, vc: (1, NKV, cap, HD) caches, written in place;
// meta: [len, pos, ...] (cached positions, RoPE position), in device memory;
// counters: NKV zeros in device memory, left zero. Outputs: part (scratch,
// attn_part_floats), out (NH * HD). smem: sizeof(AttnShared<HD, G>) bytes.

// Threads per block (an even number of warps); a block scores a tile of
// ATTN_TILE positions at once, two threads per position (each half a key row).
#ifndef ATTN_THREADS
#define ATTN_THREADS 256
#endif
constexpr int ATTN_TILE = ATTN_THREADS / 2;
// The most splits per key/value head (the join's registers; attention.rs
// keeps to it).
constexpr int ATTN_MAX_SPLITS = 32;
static_assert(ATTN_MAX_SPLITS <= 32, "the join gives each lane one split");

// A compile-time flag passed as a value (to generic lambdas).
template <bool B>
struct Flag {
  static constexpr bool value = B;
};

template <int HD, int G>
struct AttnShared {
  float qs[G][HD];
  float ks[HD];
  float sc[G][ATTN_TILE];
  float mstate[G], lstate[G], corr[G];
  // Half the warps' value sums (the other half adds into them).
  float red[ATTN_THREADS / 64][G][HD];
  // The join's weight per split and 1 / sum of weights, per query head.
  float jw[G][ATTN_MAX_SPLITS];
  float jinv[G];
  int last;
};

template <typename T, int HD, int NH, int NKV, typename Wait>
__device__ __forceinline__ bool attn_decode_block(int block, int splits, const T* qkv, const T* qn, const T* kn,
                                                  T* kc, T* vc, int cap, const int* meta, int* counters, float* part,
                                                  T* out, float eps, float log2_base, float scale, float* smem,
                                                  Wait wait) {
  constexpr int G = NH / NKV;
  constexpr int THREADS = ATTN_THREADS;
  constexpr int TILE = ATTN_TILE;
  constexpr int NWARPS = THREADS / 32;
  static_assert(NWARPS % 2 == 0 && G <= NWARPS, "the reduction halves the warps; a warp joins a query head");
  constexpr int HALF = HD / 2;
  constexpr int PER = HD / 32;
  constexpr int KC = HALF / 8;          // 16-byte chunks of half a key row
  constexpr int VR = TILE / NWARPS;     // value rows of a tile per warp
  struct alignas(PER * sizeof(T)) Vec {
    T e[PER];
  };
  AttnShared<HD, G>& sh = *reinterpret_cast<AttnShared<HD, G>*>(smem);
  float(&qs)[G][HD] = sh.qs;
  float(&ks)[HD] = sh.ks;
  float(&sc)[G][TILE] = sh.sc;
  float(&mstate)[G] = sh.mstate;
  float(&lstate)[G] = sh.lstate;
  float(&corr)[G] = sh.corr;
  float(&red)[NWARPS / 2][G][HD] = sh.red;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // Two threads per position: `slot` in the tile, `half` of the key row.
  const int slot = tid >> 1, half = tid & 1;
  const int h = block / splits, split = block % splits;
  const int len = meta[0], pos = meta[1];
  const float neg_inf = __int_as_float(0xff800000);
  const int total = len + 1;
  const int chunk = (total + splits - 1) / splits;
  const int begin = split * chunk;
  const int end = min(begin + chunk, total);
  const T* kh = kc + static_cast<size_t>(h) * cap * HD;
  const T* vh = vc + static_cast<size_t>(h) * cap * HD;

  // The first tile's cached keys and values do not depend on this step's
  // q/k/v: their loads are issued first, so that their latency overlaps the
  // norms and RoPE below (a step is a chain of dependent memory round trips).
  // A thread holds half the key row of its position, a warp its VR value rows:
  // a tile (a split, up to 4096 positions) is all in flight at once.
  const int n0 = min(TILE, end - begin);
  uint4 k0[KC];
  if (slot < n0 && begin + slot != len) {
    const uint4* kr = reinterpret_cast<const uint4*>(kh + static_cast<size_t>(begin + slot) * HD + half * HALF);
  #pragma unroll
    for (int c = 0; c < KC; ++c) k0[c] = kr[c];
  }
  Vec v0[VR];
  #pragma unroll
  for (int b = 0; b < VR; ++b) {
    const int i = warp + NWARPS * b;
    if (i < n0 && begin + i != len) v0[b] = reinterpret_cast<const Vec*>(vh + static_cast<size_t>(begin + i) * HD)[lane];
  }
  wait();

  // 1. Norm and RoPE of G query rows and the new key; lane holds elements
  // lane + 32 j, so both halves of each rotated pair are in its registers.
  // A warp has up to RPW rows (G + 1 rows over NWARPS warps): all their loads,
  // and the new value row's, are issued before any arithmetic.
  constexpr int RPW = (G + NWARPS) / NWARPS;
  float xv[RPW][PER];
  T wv[RPW][PER];
  #pragma unroll
  for (int k = 0; k < RPW; ++k) {
    const int r = warp + k * NWARPS;
    if (r <= G) {
      const T* src = r < G ? qkv + (h * G + r) * HD : qkv + NH * HD + h * HD;
      const T* nw = r < G ? qn : kn;
  #pragma unroll
      for (int j = 0; j < PER; ++j) {
        xv[k][j] = static_cast<float>(__ldcg(src + lane + 32 * j));
        wv[k][j] = nw[lane + 32 * j];
      }
    }
  }
  Vec vnew;
  {
  const uint32_t* vw = reinterpret_cast<const uint32_t*>(qkv + (NH + NKV + h) * HD) + lane * (PER / 2);
  uint32_t* dw = reinterpret_cast<uint32_t*>(&vnew);
  #pragma unroll
  for (int j = 0; j < PER / 2; ++j) dw[j] = __ldcg(vw + j);
  }
  #pragma unroll
  for (int k = 0; k < RPW; ++k) {
    const int r = warp + k * NWARPS;
    if (r > G) continue;
    float ss = 0.f;
  #pragma unroll
    for (int j = 0; j < PER; ++j) ss = fmaf(xv[k][j], xv[k][j], ss);
    const float inv = rsqrtf(warp_sum(ss) / HD + eps);
  #pragma unroll
    for (int j = 0; j < PER / 2; ++j) {
      const int i = lane + 32 * j;
      const float a = static_cast<float>(wv[k][j] * static_cast<T>(xv[k][j] * inv));
      const float b = static_cast<float>(wv[k][j + PER / 2] * static_cast<T>(xv[k][j + PER / 2] * inv));
      const float d = static_cast<float>(i) / static_cast<float>(HALF);
      const float theta = static_cast<float>(pos) * exp2(-d * log2_base);
      const float c = cos(theta), s = sin(theta);
      const T r1 = static_cast<T>(a * c - b * s), r2 = static_cast<T>(a * s + b * c);
      if (r < G) {
        qs[r][i] = static_cast<float>(r1) * scale;
        qs[r][i + HALF] = static_cast<float>(r2) * scale;
      } else {
        ks[i] = static_cast<float>(r1);
        ks[i + HALF] = static_cast<float>(r2);
        if (split == 0) {
          T* dst = kc + (static_cast<size_t>(h) * cap + len) * HD;
          dst[i] = r1;
          dst[i + HALF] = r2;
        }
      }
    }
  }
  if (split == 0 && warp == 0) reinterpret_cast<Vec*>(vc + (static_cast<size_t>(h) * cap + len) * HD)[lane] = vnew;
  if (tid < G) {
    mstate[tid] = neg_inf;
    lstate[tid] = 0.f;
  }
  __syncthreads();

  // 2. This split's positions, a tile at a time: two threads score one
  // position for the G heads, a warp per head updates the running softmax,
  // and the warps share the value rows (a lane owns PER dimensions).
  float acc[G][PER];
  #pragma unroll
  for (int g = 0; g < G; ++g)
  #pragma unroll
    for (int j = 0; j < PER; ++j) acc[g][j] = 0.f;

  // dots[g] += q_g · (eight key values at dimension d).
  auto dot8 = [&](float(&dots)[G], const uint4& kv, int d) {
    const T* k8 = reinterpret_cast<const T*>(&kv);
  #pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float k = static_cast<float>(k8[j]);
  #pragma unroll
      for (int g = 0; g < G; ++g) dots[g] = fmaf(qs[g][d + j], k, dots[g]);
    }
  };
  // One tile of positions from t0; the first (Flag<true>) uses the rows
  // loaded up front. Two copies of the code, so that those registers are
  // free after the first tile.
  auto tile = [&](int t0, auto first_tile) {
    constexpr bool first = decltype(first_tile)::value;
    const int p = t0 + slot;
    const int d0 = half * HALF;
    float dots[G];
  #pragma unroll
    for (int g = 0; g < G; ++g) dots[g] = 0.f;
    if (p < end && p == len) {
  #pragma unroll 8
      for (int d = d0; d < d0 + HALF; ++d)
  #pragma unroll
        for (int g = 0; g < G; ++g) dots[g] = fmaf(qs[g][d], ks[d], dots[g]);
    } else if (p < end && first) {
  #pragma unroll
      for (int c = 0; c < KC; ++c) dot8(dots, k0[c], d0 + 8 * c);
    } else if (p < end && !first) {
      const uint4* kr = reinterpret_cast<const uint4*>(kh + static_cast<size_t>(p) * HD + d0);
      uint4 kv[KC];
  #pragma unroll
      for (int c = 0; c < KC; ++c) kv[c] = kr[c];
  #pragma unroll
      for (int c = 0; c < KC; ++c) dot8(dots, kv[c], d0 + 8 * c);
    }
  #pragma unroll
    for (int g = 0; g < G; ++g) dots[g] += __shfl_xor_sync(0xffffffffu, dots[g], 1);
    if (half == 0) {
  #pragma unroll
      for (int g = 0; g < G; ++g) sc[g][slot] = p < end ? dots[g] : neg_inf;
    }
    __syncthreads();
    for (int g = warp; g < G; g += NWARPS) {
      float m = neg_inf;
  #pragma unroll
      for (int i = lane; i < TILE; i += 32) m = fmaxf(m, sc[g][i]);
      m = warp_max(m);
      const float m_new = fmaxf(mstate[g], m);
      float sum = 0.f;
  #pragma unroll
      for (int i = lane; i < TILE; i += 32) {
        const float e = expf(sc[g][i] - m_new);
        sc[g][i] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float c = expf(mstate[g] - m_new);
        corr[g] = c;
        lstate[g] = lstate[g] * c + sum;
        mstate[g] = m_new;
      }
    }
    __syncthreads();
    const int n = min(TILE, end - t0);
  #pragma unroll
    for (int g = 0; g < G; ++g)
  #pragma unroll
      for (int j = 0; j < PER; ++j) acc[g][j] *= corr[g];
    // A warp takes every NWARPS-th position; a lane owns PER adjacent
    // dimensions, one vector load per value row, all of the tile in flight.
    Vec v[first ? 1 : VR];
    if constexpr (!first) {
  #pragma unroll
      for (int b = 0; b < VR; ++b) {
        const int i = warp + NWARPS * b;
        if (i < n && t0 + i != len) v[b] = reinterpret_cast<const Vec*>(vh + static_cast<size_t>(t0 + i) * HD)[lane];
      }
    }
  #pragma unroll
    for (int b = 0; b < VR; ++b) {
      const int i = warp + NWARPS * b;
      if (i < n) {
        const bool fresh = t0 + i == len;
        float vf[PER];
  #pragma unroll
        for (int j = 0; j < PER; ++j) vf[j] = static_cast<float>(fresh ? vnew.e[j] : first ? v0[b].e[j] : v[first ? 0 : b].e[j]);
  #pragma unroll
        for (int g = 0; g < G; ++g)
  #pragma unroll
          for (int j = 0; j < PER; ++j) acc[g][j] = fmaf(sc[g][i], vf[j], acc[g][j]);
      }
    }
    __syncthreads();
  };
  if (begin < end) tile(begin, Flag<true>{});
  for (int t0 = begin + TILE; t0 < end; t0 += TILE) tile(t0, Flag<false>{});

  // 3. Sum the warps' shares (the upper half of the warps into the lower
  // half's slots, then across those) and write this split's partial result.
  constexpr int RW = NWARPS / 2;
  if (warp >= RW) {
  #pragma unroll
    for (int g = 0; g < G; ++g)
  #pragma unroll
      for (int j = 0; j < PER; ++j) red[warp - RW][g][PER * lane + j] = acc[g][j];
  }
  __syncthreads();
  if (warp < RW) {
  #pragma unroll
    for (int g = 0; g < G; ++g)
  #pragma unroll
      for (int j = 0; j < PER; ++j) red[warp][g][PER * lane + j] += acc[g][j];
  }
  __syncthreads();
  if (splits == 1) {
    // The block holds the whole result: normalised here, as the join would
    // (acc * (1 / l), the same rounding), without the round trip.
    for (int e = tid; e < G * HD; e += THREADS) {
      const int g = e / HD, d = e % HD;
      float s = 0.f;
  #pragma unroll
      for (int w = 0; w < RW; ++w) s += red[w][g][d];
      out[(h * G + g) * HD + d] = static_cast<T>(s * (1.f / lstate[g]));
    }
    return true;
  }
  constexpr int STRIDE = G * (HD + 2);
  float* dst = part + static_cast<size_t>(h * splits + split) * STRIDE;
  for (int e = tid; e < G * HD; e += THREADS) {
    const int g = e / HD, d = e % HD;
    float s = 0.f;
  #pragma unroll
    for (int w = 0; w < RW; ++w) s += red[w][g][d];
    dst[g * (HD + 2) + d] = s;
  }
  if (tid < G) {
    dst[tid * (HD + 2) + HD] = mstate[tid];
    dst[tid * (HD + 2) + HD + 1] = lstate[tid];
  }

  // 4. The last block of this key/value head joins the splits:
  // out[q, d] = sum_s acc_s[d] e^(m_s - M) / sum_s l_s e^(m_s - M).
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    int* counter = counters + h;
    sh.last = atomicAdd(counter, 1) == splits - 1;
    if (sh.last) *counter = 0;
  }
  __syncthreads();
  if (!sh.last) return false;
  __threadfence();
  const float* base = part + static_cast<size_t>(h) * splits * STRIDE;
  // A thread's EPT outputs: their partial sums are loaded first (SB splits
  // at once), while a warp per query head turns the maxima and sums into
  // weights, so that both round trips overlap.
  constexpr int EPT = (G * HD + THREADS - 1) / THREADS;
  constexpr int SB = EPT >= 64 ? 1 : (64 / EPT < ATTN_MAX_SPLITS ? 64 / EPT : ATTN_MAX_SPLITS);
  const int e0 = tid * EPT;
  float pa[SB][EPT];
  auto load = [&](int s0) {
  #pragma unroll
    for (int s = 0; s < SB; ++s)
  #pragma unroll
      for (int k = 0; k < EPT; ++k) {
        const int e = e0 + k;
        if (s0 + s < splits && e < G * HD) pa[s][k] = __ldcg(base + (s0 + s) * STRIDE + (e / HD) * (HD + 2) + e % HD);
      }
  };
  load(0);
  if (warp < G) {
    const int g = warp;
    const bool in = lane < splits;  // ATTN_MAX_SPLITS <= 32: a split per lane
    const float m = in ? __ldcg(base + lane * STRIDE + g * (HD + 2) + HD) : neg_inf;
    const float l = in ? __ldcg(base + lane * STRIDE + g * (HD + 2) + HD + 1) : 0.f;
    const float m_max = warp_max(m);
    const float wgt = in ? expf(m - m_max) : 0.f;
    const float l_sum = warp_sum(l * wgt);
    sh.jw[g][lane] = wgt;
    if (lane == 0) sh.jinv[g] = 1.f / l_sum;
  }
  __syncthreads();
  float o[EPT];
  #pragma unroll
  for (int k = 0; k < EPT; ++k) o[k] = 0.f;
  for (int s0 = 0; s0 < splits; s0 += SB) {
    if (s0 > 0) load(s0);
  #pragma unroll
    for (int s = 0; s < SB; ++s)
  #pragma unroll
      for (int k = 0; k < EPT; ++k) {
        const int e = e0 + k;
        if (s0 + s < splits && e < G * HD) o[k] = fmaf(pa[s][k], sh.jw[e / HD][s0 + s], o[k]);
      }
  }
  #pragma unroll
  for (int k = 0; k < EPT; ++k) {
    const int e = e0 + k;
    if (e < G * HD) out[h * G * HD + e] = static_cast<T>(o[k] * sh.jinv[e / HD]);
  }
  return true;
}
