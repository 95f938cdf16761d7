// One decoding step of attention for one key/value head and one split of the
// positions (flash-decoding), by a block of 128 threads for `block` =
// head * SPLITS + split: RMSNorm and RoPE of the group's query heads and of
// the new key (rounded as MLX's rms_norm and rope round), the new key and value
// written into the caches at position `len` (by split 0), then softmax-weighted
// sums over this split's positions, written unnormalised with their max and
// sum; the last block of each key/value head to finish (counted in
// `counters`, which it resets to zero) joins them into the output rows of its
// query heads and returns true. Loads are batched (unrolled loops over
// registers, every load of a batch issued before its arithmetic): a step is
// bound by memory latency, not bandwidth.
// Template constants: T, HD (% 64 == 0), NH, NKV, SPLITS.
// qkv: (NH + 2 NKV) * HD, read past L1 (it may come from the same launch,
// after `wait`); kc, vc: (1, NKV, cap, HD) caches, written in place;
// meta: [len, pos, ...] (cached positions, RoPE position), in device memory;
// counters: NKV zeros in device memory, left zero. Outputs: part (scratch,
// attn_part_floats), out (NH * HD). smem: sizeof(AttnShared<HD, G>) bytes.

// Threads per block, and positions a block scores at once.
#ifndef ATTN_THREADS
#define ATTN_THREADS 128
#endif
constexpr int ATTN_TILE = ATTN_THREADS;
// Value rows a warp loads at once (bench/gpu/layer/ sets 8 to save registers).
#ifndef ATTN_VB
#define ATTN_VB 16
#endif

// atomicAdd with acquire-release semantics at GPU scope; returns the old value.
__device__ __forceinline__ int atomic_add_acq_rel_gpu(int* p, int v) {
  int old;
  asm volatile("atom.add.acq_rel.gpu.s32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
  return old;
}

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
  float red[ATTN_TILE / 32][G][HD];
};

// Step 1 of both decode attentions (this file's and attn_cluster.cuh's): the
// rows a warp normalises are rows warp + k NW (k < RPW) of G query rows from
// query head q0 on and, as row G, key/value head h's new key; a lane holds
// elements lane + 32 j, so both halves of each rotated pair are in its
// registers. Loads past L1 (q/k/v may come from the same launch, after its
// wait).
template <typename T, int HD, int NH, int G, int NW, int RPW>
__device__ __forceinline__ void attn_load_qk(const T* qkv, const T* qn, const T* kn, int h, int q0, int warp,
                                             int lane, float (&xv)[RPW][HD / 32], T (&wv)[RPW][HD / 32]) {
  constexpr int PER = HD / 32;
  #pragma unroll
  for (int k = 0; k < RPW; ++k) {
    const int r = warp + k * NW;
    if (r <= G) {
      const T* src = r < G ? qkv + (q0 + r) * HD : qkv + NH * HD + h * HD;
      const T* nw = r < G ? qn : kn;
  #pragma unroll
      for (int j = 0; j < PER; ++j) {
        xv[k][j] = static_cast<float>(__ldcg(src + lane + 32 * j));
        wv[k][j] = nw[lane + 32 * j];
      }
    }
  }
}

// RMSNorm of a row (x by its weights w) with eps, rounded as MLX's rms_norm,
// then RoPE at `pos` as MLX's rope rounds it: put(i, r1, r2) for each of the
// lane's rotated pairs (i, i + HD / 2). The whole warp calls it (a warp sum).
template <typename T, int HD, typename Put>
__device__ __forceinline__ void attn_norm_rope(const float (&x)[HD / 32], const T (&w)[HD / 32], float eps,
                                               float log2_base, int pos, int lane, Put put) {
  constexpr int PER = HD / 32, HALF = HD / 2;
  float ss = 0.f;
  #pragma unroll
  for (int j = 0; j < PER; ++j) ss = fmaf(x[j], x[j], ss);
  const float inv = rsqrtf(warp_sum(ss) / HD + eps);
  #pragma unroll
  for (int j = 0; j < PER / 2; ++j) {
    const int i = lane + 32 * j;
    const float a = static_cast<float>(w[j] * static_cast<T>(x[j] * inv));
    const float b = static_cast<float>(w[j + PER / 2] * static_cast<T>(x[j + PER / 2] * inv));
    const float d = static_cast<float>(i) / static_cast<float>(HALF);
    const float theta = static_cast<float>(pos) * exp2(-d * log2_base);
    const float c = cos(theta), s = sin(theta);
    put(i, static_cast<T>(a * c - b * s), static_cast<T>(a * s + b * c));
  }
}

template <typename T, int HD, int NH, int NKV, int SPLITS, typename Wait>
__device__ __forceinline__ bool attn_decode_block(int block, const T* qkv, const T* qn, const T* kn, T* kc, T* vc,
                                                  int cap, const int* meta, int* counters, float* part, T* out,
                                                  float eps, float log2_base, float scale, float* smem, Wait wait) {
  constexpr int G = NH / NKV;
  constexpr int TILE = ATTN_TILE;
  constexpr int NWARPS = TILE / 32;
  constexpr int HALF = HD / 2;
  constexpr int PER = HD / 32;
  constexpr int VB = ATTN_VB;  // value rows a warp loads at once
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
  float(&red)[NWARPS][G][HD] = sh.red;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = block / SPLITS, split = block % SPLITS;
  const int len = meta[0], pos = meta[1];
  const float neg_inf = __int_as_float(0xff800000);
  const int total = len + 1;
  const int chunk = (total + SPLITS - 1) / SPLITS;
  const int begin = split * chunk;
  const int end = min(begin + chunk, total);
  const T* kh = kc + static_cast<size_t>(h) * cap * HD;
  const T* vh = vc + static_cast<size_t>(h) * cap * HD;

  // The first tile's cached keys and values do not depend on this step's
  // q/k/v: their loads are issued first, so that their latency overlaps the
  // norms and RoPE below (a step is a chain of dependent memory round trips).
  // A thread holds the key row of its position, a warp its first VB value rows.
  const int n0 = min(TILE, end - begin);
  uint4 k0[HD / 8];
  if (tid < n0 && begin + tid != len) {
    const uint4* kr = reinterpret_cast<const uint4*>(kh + static_cast<size_t>(begin + tid) * HD);
  #pragma unroll
    for (int c = 0; c < HD / 8; ++c) k0[c] = kr[c];
  }
  Vec v0[VB];
  #pragma unroll
  for (int b = 0; b < VB; ++b) {
    const int i = warp + NWARPS * b;
    if (i < n0 && begin + i != len) v0[b] = reinterpret_cast<const Vec*>(vh + static_cast<size_t>(begin + i) * HD)[lane];
  }
  wait();

  // 1. Norm and RoPE of G query rows and the new key (attn_load_qk): a warp
  // has up to RPW rows (G + 1 rows over NWARPS warps); all their loads, and
  // the new value row's, are issued before any arithmetic.
  constexpr int RPW = (G + NWARPS) / NWARPS;
  float xv[RPW][PER];
  T wv[RPW][PER];
  attn_load_qk<T, HD, NH, G, NWARPS, RPW>(qkv, qn, kn, h, h * G, warp, lane, xv, wv);
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
    attn_norm_rope<T, HD>(xv[k], wv[k], eps, log2_base, pos, lane, [&](int i, T r1, T r2) {
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
    });
  }
  if (split == 0 && warp == 0) reinterpret_cast<Vec*>(vc + (static_cast<size_t>(h) * cap + len) * HD)[lane] = vnew;
  if (tid < G) {
    mstate[tid] = neg_inf;
    lstate[tid] = 0.f;
  }
  __syncthreads();

  // 2. This split's positions, a tile of 128 at a time: a thread scores one
  // position for the G heads, a warp per head updates the running softmax, and
  // the warps share the value rows (a lane owns PER dimensions).
  float acc[G][PER];
  #pragma unroll
  for (int g = 0; g < G; ++g)
  #pragma unroll
    for (int j = 0; j < PER; ++j) acc[g][j] = 0.f;

  // dots[g] += q_g · (eight key values, chunk c of the row).
  auto dot8 = [&](float(&dots)[G], const uint4& kv, int c) {
    const T* k8 = reinterpret_cast<const T*>(&kv);
  #pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float k = static_cast<float>(k8[j]);
  #pragma unroll
      for (int g = 0; g < G; ++g) dots[g] = fmaf(qs[g][c * 8 + j], k, dots[g]);
    }
  };
  // One tile of positions from t0; the first (Flag<true>) uses the rows
  // loaded up front. Two copies of the code, so that those registers are
  // free after the first tile.
  auto tile = [&](int t0, auto first_tile) {
    constexpr bool first = decltype(first_tile)::value;
    const int p = t0 + tid;
    float dots[G];
  #pragma unroll
    for (int g = 0; g < G; ++g) dots[g] = 0.f;
    if (p < end && p == len) {
  #pragma unroll 8
      for (int d = 0; d < HD; ++d)
  #pragma unroll
        for (int g = 0; g < G; ++g) dots[g] = fmaf(qs[g][d], ks[d], dots[g]);
    } else if (p < end && first) {
  #pragma unroll
      for (int c = 0; c < HD / 8; ++c) dot8(dots, k0[c], c);
    } else if (p < end && !first) {
      const uint4* kr = reinterpret_cast<const uint4*>(kh + static_cast<size_t>(p) * HD);
      uint4 kv[HD / 8];
  #pragma unroll
      for (int c = 0; c < HD / 8; ++c) kv[c] = kr[c];
  #pragma unroll
      for (int c = 0; c < HD / 8; ++c) dot8(dots, kv[c], c);
    }
  #pragma unroll
    for (int g = 0; g < G; ++g) sc[g][tid] = p < end ? dots[g] : neg_inf;
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
    // dimensions, one vector load per value row, all of a batch in flight.
  #pragma unroll
    for (int b0 = 0; b0 < TILE / NWARPS; b0 += VB) {
      // The first tile's first batch is v0, loaded up front.
      const bool preloaded = first && b0 == 0;
      Vec v[VB];
  #pragma unroll
      for (int b = 0; b < VB; ++b) {
        const int i = warp + NWARPS * (b0 + b);
        if (!preloaded && i < n && t0 + i != len)
          v[b] = reinterpret_cast<const Vec*>(vh + static_cast<size_t>(t0 + i) * HD)[lane];
      }
  #pragma unroll
      for (int b = 0; b < VB; ++b) {
        const int i = warp + NWARPS * (b0 + b);
        if (i < n) {
          const bool fresh = t0 + i == len;
          float vf[PER];
  #pragma unroll
          for (int j = 0; j < PER; ++j) vf[j] = static_cast<float>(fresh ? vnew.e[j] : preloaded ? v0[b].e[j] : v[b].e[j]);
  #pragma unroll
          for (int g = 0; g < G; ++g)
  #pragma unroll
            for (int j = 0; j < PER; ++j) acc[g][j] = fmaf(sc[g][i], vf[j], acc[g][j]);
        }
      }
    }
    __syncthreads();
  };
  if (begin < end) tile(begin, Flag<true>{});
  for (int t0 = begin + TILE; t0 < end; t0 += TILE) tile(t0, Flag<false>{});

  // 3. Sum the warps' shares and write this split's partial result.
  #pragma unroll
  for (int g = 0; g < G; ++g)
  #pragma unroll
    for (int j = 0; j < PER; ++j) red[warp][g][PER * lane + j] = acc[g][j];
  __syncthreads();
  if constexpr (SPLITS == 1) {
    // The block holds the whole result: normalised here, as the join would
    // (acc * (1 / l), the same rounding), without the round trip.
    for (int e = tid; e < G * HD; e += TILE) {
      const int g = e / HD, d = e % HD;
      float s = 0.f;
  #pragma unroll
      for (int w = 0; w < NWARPS; ++w) s += red[w][g][d];
      out[(h * G + g) * HD + d] = static_cast<T>(s * (1.f / lstate[g]));
    }
    return true;
  }
  float* dst = part + static_cast<size_t>(h * SPLITS + split) * G * (HD + 2);
  for (int e = tid; e < G * HD; e += TILE) {
    const int g = e / HD, d = e % HD;
    float s = 0.f;
  #pragma unroll
    for (int w = 0; w < NWARPS; ++w) s += red[w][g][d];
    dst[g * (HD + 2) + d] = s;
  }
  if (tid < G) {
    dst[tid * (HD + 2) + HD] = mstate[tid];
    dst[tid * (HD + 2) + HD + 1] = lstate[tid];
  }

  // 4. The last block of this key/value head joins the splits:
  // out[q, d] = sum_s acc_s[d] e^(m_s - M) / sum_s l_s e^(m_s - M).
  // The count is one acquire-release atomic by thread 0 after a barrier: the
  // barrier orders the block's partial writes before its release, and the
  // last block's acquire before its reads (PTX memory model: causality
  // through bar.sync), without two sequentially consistent fences.
  __shared__ int last;
  __syncthreads();
  if (tid == 0) {
    int* counter = counters + h;
    last = atomic_add_acq_rel_gpu(counter, 1) == SPLITS - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  if (!last) return false;
  const float* base = part + static_cast<size_t>(h) * SPLITS * G * (HD + 2);
  constexpr int STRIDE = G * (HD + 2);
  constexpr int SPL = (SPLITS + 31) / 32;  // splits per lane
  for (int g = warp; g < G; g += NWARPS) {
    // Every load of the join is issued before the arithmetic that needs it.
    float m[SPL], l[SPL];
  #pragma unroll
    for (int k = 0; k < SPL; ++k) {
      const int s = lane + 32 * k;
      m[k] = s < SPLITS ? __ldcg(base + s * STRIDE + g * (HD + 2) + HD) : neg_inf;
      l[k] = s < SPLITS ? __ldcg(base + s * STRIDE + g * (HD + 2) + HD + 1) : 0.f;
    }
    float m_max = neg_inf;
  #pragma unroll
    for (int k = 0; k < SPL; ++k) m_max = fmaxf(m_max, m[k]);
    m_max = warp_max(m_max);
    float wgt[SPL], l_sum = 0.f;
  #pragma unroll
    for (int k = 0; k < SPL; ++k) {
      wgt[k] = lane + 32 * k < SPLITS ? expf(m[k] - m_max) : 0.f;
      l_sum = fmaf(l[k], wgt[k], l_sum);
    }
    const float inv = 1.f / warp_sum(l_sum);
    float o[PER];
  #pragma unroll
    for (int j = 0; j < PER; ++j) o[j] = 0.f;
    constexpr int SB = SPLITS < 16 ? SPLITS : 16;  // splits loaded at once
  #pragma unroll
    for (int s0 = 0; s0 < SPLITS; s0 += SB) {
      float pa[SB][PER];
  #pragma unroll
      for (int s = 0; s < SB; ++s)
  #pragma unroll
        for (int j = 0; j < PER; ++j) pa[s][j] = __ldcg(base + (s0 + s) * STRIDE + g * (HD + 2) + PER * lane + j);
  #pragma unroll
      for (int s = 0; s < SB; ++s) {
        const float ws = __shfl_sync(0xffffffffu, wgt[(s0 + s) / 32], (s0 + s) % 32);
  #pragma unroll
        for (int j = 0; j < PER; ++j) o[j] = fmaf(pa[s][j], ws, o[j]);
      }
    }
  #pragma unroll
    for (int j = 0; j < PER; ++j) out[(h * G + g) * HD + PER * lane + j] = static_cast<T>(o[j] * inv);
  }
  return true;
}
