// One decoding step of attention for one key/value head by a thread-block
// cluster of C blocks of 256 threads (sm_90), block `rank` of the cluster
// taking the rank-th of C equal runs of the positions (with QS > 1, QS
// clusters per key/value head, each for its QS-th of the head's query
// heads): RMSNorm and RoPE of the cluster's G query heads and of the new key
// (rounded as MLX's rms_norm and rope round, as attn.cuh does), the new key
// and value written into the caches at position `len` (by rank 0 of the
// head's first cluster), then each block's softmax-weighted sums in its
// shared memory, joined across the cluster through distributed shared memory:
// every block stores into each block the sums of the outputs that block writes.
//
// Why: the flash-decoding kernel of attn.cuh joins its splits through global
// memory (partials written, an atomic count, the last block reading them
// back), and a block scores a tile of 128 positions with 128 threads after
// its wait: ~10 µs a layer at 200 positions against a floor near zero
// (docs/experiments.md, "Thread-block clusters per key/value head"). Here a block's cached keys and values do not
// depend on the step, so one bulk copy (TMA) brings them into shared memory
// before the wait for q/k/v; after it, the chain is one read of q/k/v, the
// scores and sums out of shared memory, stores into the other blocks' shared
// memory and one cluster barrier.
//
// With LV (late values) a block holds only its keys in shared memory: the
// values go to L2 before the wait and into the keys' rows once the scores are
// made, their copy from L2 overlapping the softmax. Clusters of 16 start only
// once q/k/v's blocks drain, so their copies run after the wait: this halves
// what the scores wait for (and the shared memory a position).
//
// With QS = 2 a key/value head's rows are read by two clusters (the second
// read, by our reading, from L2: not measured), each block scoring and
// summing for half the query heads in 64 registers (96 for all 4), two
// blocks an SM. Meant to shorten the latency-bound scores and sums at long
// contexts; on the H100 the scores took as long, the sums ~0.2 µs less, and
// 1920x1080 decoded 1.1% faster (docs/experiments.md, "Two clusters per
// key/value head").
//
// Template constants: T, HD (% 64 == 0), NH, NKV, C (cluster size), LV (0/1),
// QS (clusters per key/value head).
// qkv: (NH + 2 NKV) * HD, read past L1; kc, vc: (1, NKV, cap, HD) caches,
// written in place; meta: [len, pos, ...] (len + 1 <= cap). out: NH * HD.
// smem: attn_cluster_smem_bytes<T, HD, G, C, LV>(cap) bytes of dynamic shared
// memory (the kernel traps if it has less).

constexpr int ACL_THREADS = 256;
constexpr int ACL_WARPS = ACL_THREADS / 32;
constexpr int ACL_MAX_CLUSTER = 16;

// The fixed part of a block's shared memory; attention.rs sizes it as
// 4 (G HD (2 + VQ) + 2 G (ACL_MAX_CLUSTER + 1)) + 8 bytes.
template <int HD, int G>
struct AclFixed {
  float qs[G][HD];                                   // scaled, rotated queries
  float inbox[G * HD];                               // [rank][G HD / C]: each block's sums of this block's outputs
  float red[ACL_THREADS / (HD / 2)][G][HD];          // the position groups' sums
  float ml[ACL_MAX_CLUSTER][2][G];                   // each block's max and sum of e^(s - max) per head
  float m[G], l[G];                                  // this block's
  unsigned long long bar;                            // the bulk copies' mbarrier
};

// Positions a block holds at most for caches of `cap` positions.
__host__ __device__ constexpr int acl_positions(int cap, int c) { return (cap + c - 1) / c; }

template <typename T, int HD, int G, int C, int LV>
__host__ __device__ constexpr unsigned attn_cluster_smem_bytes(int cap) {
  return static_cast<unsigned>((sizeof(AclFixed<HD, G>) + 15) / 16 * 16) +
         static_cast<unsigned>(acl_positions(cap, C)) * ((LV ? 1u : 2u) * HD * sizeof(T) + G * 4u);
}

__device__ __forceinline__ unsigned acl_smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The halves of a cluster barrier (every thread of every block arrives): after
// a release arrival and the wait, the blocks' earlier shared-memory writes are
// visible to each other.
__device__ __forceinline__ void acl_cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void acl_cluster_arrive_release() {
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
}
__device__ __forceinline__ void acl_cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// Waits until the mbarrier at `bar` completes its phase of parity `parity`.
__device__ __forceinline__ void acl_wait_phase(unsigned bar, unsigned parity) {
  unsigned done = 0;
  while (!done)
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
}

// `bytes` from global `src` into this block's shared memory at `dst` (TMA),
// completing on the mbarrier at `bar`.
__device__ __forceinline__ void acl_bulk_copy(void* dst, const void* src, unsigned bytes, unsigned bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   acl_smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// This thread's arrival on the mbarrier at `bar`, expecting `bytes` more of copies.
__device__ __forceinline__ void acl_expect(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

// v into block `rank`'s shared memory, at the address `p` has in this block's.
__device__ __forceinline__ void acl_remote_store(float* p, unsigned rank, float v) {
  unsigned remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(acl_smem_addr(p)), "r"(rank));
  asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(remote), "f"(v) : "memory");
}

// `mark(i)` stamps the timeline's phases (timeline.cuh): 0 the rows in shared
// memory, 1 the scores made, 2 the weights (and late values) ready, 3 the
// block's sums stored into their owners.
template <typename T, int HD, int NH, int NKV, int C, int LV, int QS, typename Wait, typename Mark>
__device__ __forceinline__ void attn_cluster_block(int block, const T* qkv, const T* qn, const T* kn, T* kc, T* vc,
                                                   int cap, const int* meta, T* out, float eps, float log2_base,
                                                   float scale, unsigned char* smem, Wait wait, Mark mark) {
  constexpr int G = NH / NKV / QS;  // query heads of this cluster
  constexpr int HALF = HD / 2;
  constexpr int PER = HD / 32;  // elements of a row per lane in the norms
  constexpr int LP = HD / 16;   // lanes per position in the scores: 16 elements each
  constexpr int PPW = 32 / LP;  // positions a warp scores at once
  constexpr int DP = HD / 2;    // value elements in pairs, one pair per thread
  constexpr int VQ = ACL_THREADS / DP;  // groups of positions in the sums
  static_assert(HD % 64 == 0 && (NH / NKV) % QS == 0 && G >= 1 && G <= 8 && (G * HD) % C == 0 &&
                    ACL_THREADS % DP == 0 && C <= ACL_MAX_CLUSTER,
                "layout");
  struct alignas(PER * sizeof(T)) Vec {
    T e[PER];
  };
  AclFixed<HD, G>& fx = *reinterpret_cast<AclFixed<HD, G>*>(smem);
  const int pmax = acl_positions(cap, C);
  T* ks = reinterpret_cast<T*>(smem + (sizeof(AclFixed<HD, G>) + 15) / 16 * 16);
  T* vs = LV ? ks : ks + static_cast<size_t>(pmax) * HD;                      // late values replace the keys
  float* sc = reinterpret_cast<float*>(vs + static_cast<size_t>(pmax) * HD);  // [position][G]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = block / (C * QS), part = block / C % QS, rank = block % C;
  const int q0 = h * (NH / NKV) + part * G;  // the cluster's first query head
  const bool writer = rank == 0 && part == 0;  // of the new key and value into the caches
  const int len = meta[0], pos = meta[1];
  const float neg_inf = __int_as_float(0xff800000);
  const int total = len + 1;
  const int chunk = (total + C - 1) / C;
  const int begin = min(rank * chunk, total);
  const int n = min(begin + chunk, total) - begin;  // positions of this block, maybe 0
  const int copied = max(0, min(n, len - begin));   // those already in the caches
  const size_t head_row = static_cast<size_t>(h) * cap;
  // The join stores into the other blocks' shared memory, which needs them
  // all running: this barrier's wait comes before those stores.
  acl_cluster_arrive_relaxed();

  // The cached rows do not depend on this step: one bulk copy each for keys
  // and values (late values: into L2 only), issued before the wait,
  // completing on the mbarrier's phase 0.
  const unsigned bar = acl_smem_addr(&fx.bar);
  const unsigned bytes = static_cast<unsigned>(copied) * HD * sizeof(T);
  const T* vsrc = vc + (head_row + begin) * HD;
  if (tid == 0) {
    unsigned dyn;
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
    if (dyn < attn_cluster_smem_bytes<T, HD, G, C, LV>(cap) || chunk > pmax) __trap();
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    acl_expect(bar, (LV ? 1 : 2) * bytes);
    if (bytes > 0) {
      acl_bulk_copy(ks, kc + (head_row + begin) * HD, bytes, bar);
      if (LV)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(vsrc), "r"(bytes) : "memory");
      else
        acl_bulk_copy(vs, vsrc, bytes, bar);
    }
  }
  wait();

  // 1. Norm and RoPE of G query rows and the new key (attn.cuh's helpers). The block holding position `len`
  // puts the new key and value in its rows; rank 0 (of the first cluster) writes them to the caches.
  constexpr int RPW = (G + ACL_WARPS) / ACL_WARPS;
  float xv[RPW][PER];
  T wv[RPW][PER];
  attn_load_qk<T, HD, NH, G, ACL_WARPS, RPW>(qkv, qn, kn, h, q0, warp, lane, xv, wv);
  const bool owns_new = len >= begin && len < begin + n;
  T* knew = ks + static_cast<size_t>(len - begin) * HD;  // valid if owns_new
  Vec vnew;                                              // warp 0's, if owns_new or rank 0
  if (warp == 0 && (owns_new || writer)) {
    const uint32_t* vw = reinterpret_cast<const uint32_t*>(qkv + (NH + NKV + h) * HD) + lane * (PER / 2);
    uint32_t* dw = reinterpret_cast<uint32_t*>(&vnew);
#pragma unroll
    for (int j = 0; j < PER / 2; ++j) dw[j] = __ldcg(vw + j);
    if (owns_new && !LV) reinterpret_cast<Vec*>(vs + static_cast<size_t>(len - begin) * HD)[lane] = vnew;
    if (writer) reinterpret_cast<Vec*>(vc + (head_row + len) * HD)[lane] = vnew;
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
        if (writer) {
          T* dst = kc + (head_row + len) * HD;
          dst[i] = r1;
          dst[i + HALF] = r2;
        }
      }
    });
  }
  __syncthreads();
  acl_wait_phase(bar, 0);
  mark(0);

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
  // Rounds of positions at once (SU), so that a warp has several rows'
  // loads and shuffles in flight: at 8 warps an SM the loop is latency-bound
  // and each round costs a chain of loads, products and shuffles. With 4
  // query heads 2 (96 registers, 118 at 3 by ptxas: by our reading too many
  // for the blocks to start beside q/k/v's); with 2 (two clusters a head) 5,
  // 160 positions a round in 64 registers (5 measured +1.1% at 1920x1080 on
  // the H100; 2 had gained nothing there, on another machine of the type).
  constexpr int STRIDE = ACL_WARPS * PPW, SU = G <= 2 ? 5 : 2;
  for (int p0 = warp * PPW; p0 < n; p0 += SU * STRIDE) {
    uint4 lo[SU], hi[SU];
#pragma unroll
    for (int u = 0; u < SU; ++u) {
      const int p = p0 + u * STRIDE + slot;
      const uint4* row = reinterpret_cast<const uint4*>(ks + static_cast<size_t>(p) * HD);
      lo[u] = p < n ? row[sub] : make_uint4(0, 0, 0, 0);
      hi[u] = p < n ? row[sub + LP] : make_uint4(0, 0, 0, 0);
    }
    float dots[SU][G];
#pragma unroll
    for (int u = 0; u < SU; ++u) {
#pragma unroll
      for (int g = 0; g < G; ++g) dots[u][g] = 0.f;
      auto dot8 = [&](const uint4& kv, int c) {
        const T* k8 = reinterpret_cast<const T*>(&kv);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float k = static_cast<float>(k8[j]);
#pragma unroll
          for (int g = 0; g < G; ++g) dots[u][g] = fmaf(qf[g][c * 8 + j], k, dots[u][g]);
        }
      };
      dot8(lo[u], 0);
      dot8(hi[u], 1);
    }
#pragma unroll
    for (int off = LP / 2; off > 0; off >>= 1)
#pragma unroll
      for (int u = 0; u < SU; ++u)
#pragma unroll
        for (int g = 0; g < G; ++g) dots[u][g] += __shfl_xor_sync(0xffffffffu, dots[u][g], off);
#pragma unroll
    for (int u = 0; u < SU; ++u) {
      const int p = p0 + u * STRIDE + slot;
      if (sub == 0 && p < n)
#pragma unroll
        for (int g = 0; g < G; ++g) sc[p * G + g] = dots[u][g];
    }
  }
  __syncthreads();
  mark(1);
  if (LV) {
    // The keys are read: the values take their rows (phase 1), from L2, while
    // the softmax runs. The proxy fence orders the threads' reads and writes
    // of these rows before the copy's writes; the new row is no part of it.
    if (tid == 0) {
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      acl_expect(bar, bytes);
      if (bytes > 0) acl_bulk_copy(vs, vsrc, bytes, bar);
    }
    if (warp == 0 && owns_new) reinterpret_cast<Vec*>(vs + static_cast<size_t>(len - begin) * HD)[lane] = vnew;
  }

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
  if (LV) acl_wait_phase(bar, 1);
  mark(2);

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

  // 5. The join: block r writes the r-th C-th of the G * HD outputs,
  // out = sum_b part_b e^(m_b - M) / sum_b l_b e^(m_b - M) over the blocks b.
  // Each block stores its sums of block r's outputs, and its max and sum per
  // head, in block r's inbox; after one barrier every block has its inputs
  // in its own shared memory, and no block reads another's (so none waits
  // for the others before it exits).
  constexpr int OUTS = G * HD / C;
  acl_cluster_wait();
  for (int e = tid; e < G * HD; e += ACL_THREADS) {
    const int g = e / HD, d = e % HD;
    float s = 0.f;
#pragma unroll
    for (int q = 0; q < VQ; ++q) s += fx.red[q][g][d];
    acl_remote_store(&fx.inbox[rank * OUTS + e % OUTS], e / OUTS, s);
  }
  if (tid < 2 * G * C) {
    const int to = tid / (2 * G), which = (tid / G) % 2, g = tid % G;
    acl_remote_store(&fx.ml[rank][which][g], to, which == 0 ? fx.m[g] : fx.l[g]);
  }
  mark(3);
  acl_cluster_arrive_release();
  acl_cluster_wait();
  for (int o = tid; o < OUTS; o += ACL_THREADS) {
    const int g = (rank * OUTS + o) / HD, d = (rank * OUTS + o) % HD;
    float ms[C], ls[C], ps[C];
#pragma unroll
    for (int r = 0; r < C; ++r) {
      ms[r] = fx.ml[r][0][g];
      ls[r] = fx.ml[r][1][g];
      ps[r] = fx.inbox[r * OUTS + o];
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
    out[(q0 + g) * HD + d] = static_cast<T>(o_sum * (1.f / lsum));
  }
}
