// One decoding step of attention for one key/value head by a thread-block
// cluster of C blocks of 256 threads (sm_90), block `rank` of the cluster
// taking the rank-th of C equal runs of the positions: RMSNorm and RoPE of the
// group's G query heads and of the new key (rounded as MLX's rms_norm and rope
// round, as attn.cuh does), the new key and value written into the caches at
// position `len` (by rank 0), then each block's softmax-weighted sums in its
// shared memory, joined across the cluster through distributed shared memory.
//
// Why: the flash-decoding kernel of attn.cuh joins its splits through global
// memory (partials written, an atomic count, the last block reading them
// back), and a block scores a tile of 128 positions with 128 threads after
// its wait: ~10 µs a layer at 200 positions against a floor near zero
// (bench/gpu/NOTES.md, stop 18). Here a block's cached keys and values do not
// depend on the step, so one bulk copy (TMA) brings them into shared memory
// before the wait for q/k/v; after it, the chain is one read of q/k/v, the
// scores and sums out of shared memory, two cluster barriers and one read of
// the other blocks' partials.
//
// Template constants: T, HD (% 64 == 0), NH, NKV, C (cluster size).
// qkv: (NH + 2 NKV) * HD, read past L1; kc, vc: (1, NKV, cap, HD) caches,
// written in place; meta: [len, pos, ...] (len + 1 <= cap). out: NH * HD.
// smem: attn_cluster_smem_bytes<T, HD, G, C>(cap) bytes of dynamic shared
// memory (the kernel traps if it has less).

constexpr int ACL_THREADS = 256;
constexpr int ACL_WARPS = ACL_THREADS / 32;

template <int HD, int G>
struct AclFixed {
  float qs[G][HD];                                   // scaled, rotated queries
  float part[G][HD];                                 // this block's unnormalised sums
  float red[ACL_THREADS / (HD / 2)][G][HD];          // the position groups' sums
  float m[G], l[G];                                  // this block's max and sum of e^(s - m)
  unsigned long long bar;                            // the bulk copies' mbarrier
};

// Positions a block holds at most for caches of `cap` positions.
__host__ __device__ constexpr int acl_positions(int cap, int c) { return (cap + c - 1) / c; }

template <typename T, int HD, int G, int C>
__host__ __device__ constexpr unsigned attn_cluster_smem_bytes(int cap) {
  return static_cast<unsigned>((sizeof(AclFixed<HD, G>) + 15) / 16 * 16) +
         static_cast<unsigned>(acl_positions(cap, C)) * (2u * HD * sizeof(T) + G * 4u);
}

__device__ __forceinline__ unsigned acl_smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Both halves of a cluster barrier: every block's earlier shared-memory writes
// are visible to the others after it (release / acquire).
__device__ __forceinline__ void acl_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// A float of block `rank`'s shared memory, at the address `p` has in this block's.
__device__ __forceinline__ float acl_remote_load(const float* p, unsigned rank) {
  unsigned remote;
  float v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(acl_smem_addr(p)), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
  return v;
}

template <typename T, int HD, int NH, int NKV, int C, typename Wait>
__device__ __forceinline__ void attn_cluster_block(int block, const T* qkv, const T* qn, const T* kn, T* kc, T* vc,
                                                   int cap, const int* meta, T* out, float eps, float log2_base,
                                                   float scale, unsigned char* smem, Wait wait) {
  constexpr int G = NH / NKV;
  constexpr int HALF = HD / 2;
  constexpr int PER = HD / 32;  // elements of a row per lane in the norms
  constexpr int LP = HD / 16;   // lanes per position in the scores: 16 elements each
  constexpr int PPW = 32 / LP;  // positions a warp scores at once
  constexpr int DP = HD / 2;    // value elements in pairs, one pair per thread
  constexpr int VQ = ACL_THREADS / DP;  // groups of positions in the sums
  static_assert(HD % 64 == 0 && G >= 1 && G <= 8 && (G * HD) % C == 0 && ACL_THREADS % DP == 0, "layout");
  struct alignas(PER * sizeof(T)) Vec {
    T e[PER];
  };
  AclFixed<HD, G>& fx = *reinterpret_cast<AclFixed<HD, G>*>(smem);
  const int pmax = acl_positions(cap, C);
  T* ks = reinterpret_cast<T*>(smem + (sizeof(AclFixed<HD, G>) + 15) / 16 * 16);
  T* vs = ks + static_cast<size_t>(pmax) * HD;
  float* sc = reinterpret_cast<float*>(vs + static_cast<size_t>(pmax) * HD);  // [position][G]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = block / C, rank = block % C;
  const int len = meta[0], pos = meta[1];
  const float neg_inf = __int_as_float(0xff800000);
  const int total = len + 1;
  const int chunk = (total + C - 1) / C;
  const int begin = min(rank * chunk, total);
  const int n = min(begin + chunk, total) - begin;  // positions of this block, maybe 0
  const int copied = max(0, min(n, len - begin));   // those already in the caches
  const size_t head_row = static_cast<size_t>(h) * cap;

  // The cached rows do not depend on this step: one bulk copy each for keys
  // and values, issued before the wait, completing on the mbarrier.
  if (tid == 0) {
    unsigned dyn;
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
    if (dyn < attn_cluster_smem_bytes<T, HD, G, C>(cap) || chunk > pmax) __trap();
    const unsigned bar = acl_smem_addr(&fx.bar);
    const unsigned bytes = static_cast<unsigned>(copied) * HD * sizeof(T);
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(2 * bytes) : "memory");
    if (bytes > 0) {
      const T* ksrc = kc + (head_row + begin) * HD;
      const T* vsrc = vc + (head_row + begin) * HD;
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                       acl_smem_addr(ks)),
                   "l"(ksrc), "r"(bytes), "r"(bar)
                   : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                       acl_smem_addr(vs)),
                   "l"(vsrc), "r"(bytes), "r"(bar)
                   : "memory");
    }
  }
  wait();

  // 1. Norm and RoPE of G query rows and the new key (attn.cuh's helpers). The block holding position `len`
  // puts the new key and value in its rows; rank 0 writes them to the caches.
  constexpr int RPW = (G + ACL_WARPS) / ACL_WARPS;
  float xv[RPW][PER];
  T wv[RPW][PER];
  attn_load_qk<T, HD, NH, NKV, ACL_WARPS, RPW>(qkv, qn, kn, h, warp, lane, xv, wv);
  const bool owns_new = len >= begin && len < begin + n;
  T* knew = ks + static_cast<size_t>(len - begin) * HD;  // valid if owns_new
  if (warp == 0 && (owns_new || rank == 0)) {
    Vec vnew;
    const uint32_t* vw = reinterpret_cast<const uint32_t*>(qkv + (NH + NKV + h) * HD) + lane * (PER / 2);
    uint32_t* dw = reinterpret_cast<uint32_t*>(&vnew);
#pragma unroll
    for (int j = 0; j < PER / 2; ++j) dw[j] = __ldcg(vw + j);
    if (owns_new) reinterpret_cast<Vec*>(vs + static_cast<size_t>(len - begin) * HD)[lane] = vnew;
    if (rank == 0) reinterpret_cast<Vec*>(vc + (head_row + len) * HD)[lane] = vnew;
  }
#pragma unroll
  for (int k = 0; k < RPW; ++k) {
    const int r = warp + k * ACL_WARPS;
    if (r > G) continue;
    attn_norm_rope<T, HD>(xv[k], wv[k], eps, log2_base, pos, lane, [&](int i, T r1, T r2) {
      if (r < G) {
        fx.qs[r][i] = static_cast<float>(r1) * scale;
        fx.qs[r][i + HALF] = static_cast<float>(r2) * scale;
      } else {
        if (owns_new) {
          knew[i] = r1;
          knew[i + HALF] = r2;
        }
        if (rank == 0) {
          T* dst = kc + (head_row + len) * HD;
          dst[i] = r1;
          dst[i + HALF] = r2;
        }
      }
    });
  }
  __syncthreads();
  {
    unsigned done = 0;
    const unsigned bar = acl_smem_addr(&fx.bar);
    while (!done)
      asm volatile(
          "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\nselp.u32 %0, 1, 0, p;\n}"
          : "=r"(done)
          : "r"(bar)
          : "memory");
  }

  // 2. Scores: LP lanes per position, a lane taking the 8-element chunks
  // sub and sub + LP of the row (each quarter-warp reads 128 contiguous bytes
  // of shared memory), its share of the queries in registers.
  const int sub = lane % LP, slot = lane / LP;
  float qf[G][16];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      qf[g][j] = fx.qs[g][sub * 8 + j];
      qf[g][8 + j] = fx.qs[g][(sub + LP) * 8 + j];
    }
  for (int p0 = warp * PPW; p0 < n; p0 += ACL_WARPS * PPW) {
    const int p = p0 + slot;
    float dots[G];
#pragma unroll
    for (int g = 0; g < G; ++g) dots[g] = 0.f;
    if (p < n) {
      const uint4* row = reinterpret_cast<const uint4*>(ks + static_cast<size_t>(p) * HD);
      const uint4 lo = row[sub], hi = row[sub + LP];
      auto dot8 = [&](const uint4& kv, int c) {
        const T* k8 = reinterpret_cast<const T*>(&kv);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float k = static_cast<float>(k8[j]);
#pragma unroll
          for (int g = 0; g < G; ++g) dots[g] = fmaf(qf[g][c * 8 + j], k, dots[g]);
        }
      };
      dot8(lo, 0);
      dot8(hi, 1);
    }
#pragma unroll
    for (int off = LP / 2; off > 0; off >>= 1)
#pragma unroll
      for (int g = 0; g < G; ++g) dots[g] += __shfl_xor_sync(0xffffffffu, dots[g], off);
    if (sub == 0 && p < n)
#pragma unroll
      for (int g = 0; g < G; ++g) sc[p * G + g] = dots[g];
  }
  __syncthreads();

  // 3. Softmax per query head (a warp each): the block's max, then e^(s - m)
  // in place and their sum.
  if (warp < G) {
    const int g = warp;
    float m = neg_inf;
    for (int p = lane; p < n; p += 32) m = fmaxf(m, sc[p * G + g]);
    m = warp_max(m);
    float sum = 0.f;
    for (int p = lane; p < n; p += 32) {
      const float e = expf(sc[p * G + g] - m);
      sc[p * G + g] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    if (lane == 0) {
      fx.m[g] = m;
      fx.l[g] = sum;
    }
  }
  __syncthreads();

  // 4. Weighted sums of the value rows: a thread owns a pair of elements and
  // every VQ-th position (a warp's positions are the same, so the weights are
  // broadcast reads).
  {
    const int dp = tid % DP, q = tid / DP;
    float acc[G][2];
#pragma unroll
    for (int g = 0; g < G; ++g) acc[g][0] = acc[g][1] = 0.f;
#pragma unroll 4
    for (int p = q; p < n; p += VQ) {
      const unsigned pair = reinterpret_cast<const unsigned*>(vs + static_cast<size_t>(p) * HD)[dp];
      const float2 v = unpack2<T>(pair);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float w = sc[p * G + g];
        acc[g][0] = fmaf(w, v.x, acc[g][0]);
        acc[g][1] = fmaf(w, v.y, acc[g][1]);
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) *reinterpret_cast<float2*>(&fx.red[q][g][2 * dp]) = make_float2(acc[g][0], acc[g][1]);
  }
  __syncthreads();
  for (int e = tid; e < G * HD; e += ACL_THREADS) {
    const int g = e / HD, d = e % HD;
    float s = 0.f;
#pragma unroll
    for (int q = 0; q < VQ; ++q) s += fx.red[q][g][d];
    fx.part[g][d] = s;
  }

  // 5. The join: block `rank` writes the rank-th C-th of the G * HD outputs,
  // out = sum_r part_r e^(m_r - M) / sum_r l_r e^(m_r - M), reading the
  // other blocks' shared memory. The second barrier keeps every block's
  // shared memory alive until all have read it.
  acl_cluster_sync();
  constexpr int OUTS = G * HD / C;
  for (int o = tid; o < OUTS; o += ACL_THREADS) {
    const int e = rank * OUTS + o, g = e / HD, d = e % HD;
    float ms[C], ls[C], ps[C];
#pragma unroll
    for (int r = 0; r < C; ++r) {
      ms[r] = acl_remote_load(&fx.m[g], r);
      ls[r] = acl_remote_load(&fx.l[g], r);
      ps[r] = acl_remote_load(&fx.part[g][d], r);
    }
    float mx = neg_inf;
#pragma unroll
    for (int r = 0; r < C; ++r) mx = fmaxf(mx, ms[r]);
    float lsum = 0.f, o_sum = 0.f;
#pragma unroll
    for (int r = 0; r < C; ++r) {
      const float w = expf(ms[r] - mx);  // 0 for a block without positions
      lsum = fmaf(ls[r], w, lsum);
      o_sum = fmaf(ps[r], w, o_sum);
    }
    out[(h * G + g) * HD + d] = static_cast<T>(o_sum * (1.f / lsum));
  }
  acl_cluster_sync();
}
