// out = epilogue(prologue(x) · dequantize(w)ᵀ) for one input row, 16 rows of
// w per call (8 gate/up pairs for SwiGLU), the products on tensor cores (mma
// m16n8k16, f32 accumulation). A block of WARPS warps runs it for `block`;
// the warps split K. Template constants: T, K (% 128 == 0), N (rows of w), U
// (k-tiles whose loads a warp issues at once), NORM (RMSNorm of x by nw),
// RESID (add res), SWIGLU (rows [0, N/2) gate, [N/2, N) up). `xp`: shared
// memory of qmv4_shared_bytes(K). `wait` runs after the first weights are in
// flight and before x is read (a no-op, or a wait for x's producers in
// the same launch: x and res are read past L1 for that reason).
//
// Two ways to feed the weights, the same products in the same order (so the
// same bits): qmv4_rows loads each warp's tiles into registers, U at a time;
// qmv4_bulk_rows has the block's rows copied into shared memory by bulk copies
// (the copy engine, no registers or L1 held while they fly), in chunks of CT
// k-tiles through S slots, the first S chunks issued before `wait`.
//
// Why tensor cores for one row: converting 4-bit codes to floats one by one
// (shift, mask, int-to-float at 1/8 rate, FMA) made the old kernel issue-bound
// at a third of the memory bandwidth. Here one LOP3 turns two codes into two
// bf16/f16 values (MAGIC + q, exact), and one mma multiplies 256 of them.
// The offset is taken out per group through the bias:
//   sum_i (s q_i + b) x_i = s * sum_i (OFF + q_i) x_i + (b - OFF s) * sum_i x_i.
//
// Layout: a warp covers 16 rows (A rows g and g + 8, g = lane / 4) and k-tiles
// of 128 codes, lane tig = lane % 4 loading chunk tig (16 bytes, 32 codes) of
// each row. Any order of k inside an mma gives the same sum, so a lane's A
// pairs are the codes (t, t + 4) of its own words and the input is stored in
// shared memory in the same order. B column 0 holds the input of the tile's
// first group, column 1 its second (lanes with g == tig / 2 feed them, the
// others zeros), so C column 0 and 1 are per-group sums and the group scales
// apply after the mma.

constexpr int QMV4_XS = 20;  // words per 32-code chunk slot in shared memory: 16 used, padded for banks

__host__ __device__ constexpr int qmv4_shared_bytes(int k) { return (k / 32) * QMV4_XS * 4 + (k / 64) * 4; }


// The input row into `xp`: normalized if asked, rounded to T as MLX rounds it,
// stored as the pairs the A fragments use, with its group sums after it. Ends
// with a block barrier.
template <typename T, int K, int WARPS, bool NORM>
__device__ __forceinline__ void qmv4_input(const T* x, const T* nw, float eps, unsigned* xp) {
  constexpr int XS = QMV4_XS;
  float* gsum = reinterpret_cast<float*>(xp + (K / 32) * XS);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  constexpr int THREADS = WARPS * 32;
  constexpr int XV = K / 8;
  constexpr int XPT = (XV + THREADS - 1) / THREADS;
  uint4 xr[XPT];
#pragma unroll
  for (int j = 0; j < XPT; ++j) {
    const int v = tid + j * THREADS;
    xr[j] = (XV % THREADS == 0 || v < XV) ? __ldcg(reinterpret_cast<const uint4*>(x) + v) : make_uint4(0, 0, 0, 0);
  }
  float inv = 1.f;
  uint4 nr[NORM ? XPT : 1];
  if constexpr (NORM) {
    __shared__ float partial[WARPS];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int v = tid + j * THREADS;
      nr[j] = (XV % THREADS == 0 || v < XV) ? reinterpret_cast<const uint4*>(nw)[v] : make_uint4(0, 0, 0, 0);
      const T* e = reinterpret_cast<const T*>(&xr[j]);
#pragma unroll
      for (int t = 0; t < 8; ++t) {
        const float f = static_cast<float>(e[t]);
        ss = fmaf(f, f, ss);
      }
    }
    ss = warp_sum(ss);
    if (lane == 0) partial[warp] = ss;
    __syncthreads();
    float total = 0.f;
#pragma unroll
    for (int i = 0; i < WARPS; ++i) total += partial[i];
    inv = rsqrtf(total / K + eps);
  }
#pragma unroll
  for (int j = 0; j < XPT; ++j) {
    const int v = tid + j * THREADS;
    T y[8];
    const T* e = reinterpret_cast<const T*>(&xr[j]);
    const T* gw = reinterpret_cast<const T*>(&nr[NORM ? j : 0]);
    float s = 0.f;
#pragma unroll
    for (int t = 0; t < 8; ++t) {
      if constexpr (NORM) {
        y[t] = gw[t] * static_cast<T>(static_cast<float>(e[t]) * inv);
      } else {
        y[t] = e[t];
      }
      s += static_cast<float>(y[t]);
    }
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    s += __shfl_xor_sync(0xffffffffu, s, 4);
    if (XV % THREADS == 0 || v < XV) {
      reinterpret_cast<uint4*>(xp + (v >> 2) * XS)[v & 3] =
          make_uint4(pack2(y[0], y[4]), pack2(y[1], y[5]), pack2(y[2], y[6]), pack2(y[3], y[7]));
      if ((v & 7) == 0) gsum[v >> 3] = s;
    }
  }
  __syncthreads();
}

// One k-tile of a warp's 16 rows into its accumulators: `lw`/`hw` the lane's
// chunk of rows g and g + 8, `sl`/`sh` and `bl`/`bh` their scales and biases
// (two groups each).
template <typename T, int K>
__device__ __forceinline__ void qmv4_tile(const unsigned* xp, int tile, uint4 lw4, uint4 hw4, unsigned sl, unsigned sh,
                                          unsigned bl, unsigned bh, float& acc_lo, float& acc_hi) {
  constexpr int XS = QMV4_XS;
  const float* gsum = reinterpret_cast<const float*>(xp + (K / 32) * XS);
  const int lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const bool feed = g == (tig >> 1);
  const uint4* xq = reinterpret_cast<const uint4*>(xp + (tile * 4 + tig) * XS);
  unsigned xv[16];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint4 p = xq[q];
    xv[4 * q] = feed ? p.x : 0u;
    xv[4 * q + 1] = feed ? p.y : 0u;
    xv[4 * q + 2] = feed ? p.z : 0u;
    xv[4 * q + 3] = feed ? p.w : 0u;
  }
  const unsigned lw[4] = {lw4.x, lw4.y, lw4.z, lw4.w};
  const unsigned hw[4] = {hw4.x, hw4.y, hw4.z, hw4.w};
  float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int m = 0; m < 8; ++m) {
    // Pairs 2m and 2m + 1: word m / 2, codes t and t + 1 (and + 4).
    const int word = m >> 1, t = 2 * (m & 1);
    const unsigned a[4] = {q4_pair<T>(lw[word], t), q4_pair<T>(hw[word], t), q4_pair<T>(lw[word], t + 1),
                           q4_pair<T>(hw[word], t + 1)};
    mma_16816(c, a, xv[2 * m], xv[2 * m + 1], T());
  }
  const float2 xs = *reinterpret_cast<const float2*>(gsum + 2 * tile);
  const float2 s0 = unpack2<T>(sl), s1 = unpack2<T>(sh);
  const float2 b0 = unpack2<T>(bl), b1 = unpack2<T>(bh);
  constexpr float OFF = Q4Magic<T>::offset;
  acc_lo = fmaf(s0.x, c[0], fmaf(s0.y, c[1], acc_lo));
  acc_lo = fmaf(fmaf(-OFF, s0.x, b0.x), xs.x, fmaf(fmaf(-OFF, s0.y, b0.y), xs.y, acc_lo));
  acc_hi = fmaf(s1.x, c[2], fmaf(s1.y, c[3], acc_hi));
  acc_hi = fmaf(fmaf(-OFF, s1.x, b1.x), xs.x, fmaf(fmaf(-OFF, s1.y, b1.y), xs.y, acc_hi));
}

// The warps' sums joined and written: 16 rows from `base` (8 SwiGLU pairs).
template <typename T, int N, int WARPS, bool RESID, bool SWIGLU>
__device__ __forceinline__ void qmv4_output(int base, float acc_lo, float acc_hi, const T* res, T* out) {
  constexpr int OUT = SWIGLU ? N / 2 : N;
  __shared__ float red[WARPS][16];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;
  // C columns 0 and 1 live in the lanes with tig == 0.
  if (tig == 0) {
    red[warp][g] = acc_lo;
    red[warp][g + 8] = acc_hi;
  }
  __syncthreads();
  if constexpr (SWIGLU) {
    if (tid < 8 && base + tid < OUT) {
      float gs = 0.f, us = 0.f;
#pragma unroll
      for (int i = 0; i < WARPS; ++i) {
        gs += red[i][tid];
        us += red[i][tid + 8];
      }
      // As silu(g) * u over T arrays: each op rounds to T.
      const T gt = static_cast<T>(gs);
      const T sig = static_cast<T>(1.f / (1.f + expf(-static_cast<float>(gt))));
      out[base + tid] = (gt * sig) * static_cast<T>(us);
    }
  } else {
    if (tid < 16 && base + tid < OUT) {
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < WARPS; ++i) sum += red[i][tid];
      if constexpr (RESID) {
        out[base + tid] = __ldcg(res + base + tid) + static_cast<T>(sum);
      } else {
        out[base + tid] = static_cast<T>(sum);
      }
    }
  }
}

// The matrix row a block's row r (0..15) computes: A rows g and g + 8. Past
// the end, the last row again (its result is not written).
template <int N, bool SWIGLU>
__device__ __forceinline__ size_t qmv4_row(int base, int r) {
  constexpr int OUT = SWIGLU ? N / 2 : N;
  if constexpr (SWIGLU) {
    return static_cast<size_t>(min(base + (r & 7), OUT - 1)) + (r >= 8 ? OUT : 0);
  } else {
    return static_cast<size_t>(min(base + r, OUT - 1));
  }
}

template <typename T, int K, int N, int WARPS, int U, bool NORM, bool RESID, bool SWIGLU, typename Wait>
__device__ __forceinline__ void qmv4_rows(int block, const T* x, const T* nw, float eps, const uint32_t* w,
                                          const T* scales, const T* biases, const T* res, T* out, unsigned* xp,
                                          Wait wait) {
  constexpr int TILES = K / 128;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;
  const int base = block * (SWIGLU ? 8 : 16);
  const size_t row_lo = qmv4_row<N, SWIGLU>(base, g), row_hi = qmv4_row<N, SWIGLU>(base, g + 8);
  const uint4* wlo = reinterpret_cast<const uint4*>(w) + row_lo * (K / 32) + tig;
  const uint4* whi = reinterpret_cast<const uint4*>(w) + row_hi * (K / 32) + tig;
  const unsigned* slo = reinterpret_cast<const unsigned*>(scales + row_lo * (K / 64));
  const unsigned* shi = reinterpret_cast<const unsigned*>(scales + row_hi * (K / 64));
  const unsigned* blo = reinterpret_cast<const unsigned*>(biases + row_lo * (K / 64));
  const unsigned* bhi = reinterpret_cast<const unsigned*>(biases + row_hi * (K / 64));
  constexpr int PER_WARP = (TILES + WARPS - 1) / WARPS;
  constexpr int BATCHES = (PER_WARP + U - 1) / U;
  constexpr bool EVEN = TILES % WARPS == 0 && PER_WARP % U == 0;
  uint4 wl[U], wh[U];
  unsigned sl[U], sh[U], bl[U], bh[U];
  auto load = [&](int batch) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tile = warp + (batch * U + u) * WARPS;
      if (EVEN || tile < TILES) {
        wl[u] = wlo[tile * 4];
        wh[u] = whi[tile * 4];
        sl[u] = slo[tile];
        sh[u] = shi[tile];
        bl[u] = blo[tile];
        bh[u] = bhi[tile];
      }
    }
  };
  load(0);
  wait();
  qmv4_input<T, K, WARPS, NORM>(x, nw, eps, xp);

  float acc_lo = 0.f, acc_hi = 0.f;
#pragma unroll
  for (int batch = 0; batch < BATCHES; ++batch) {
    if (batch > 0) load(batch);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tile = warp + (batch * U + u) * WARPS;
      if (EVEN || tile < TILES)
        qmv4_tile<T, K>(xp, tile, wl[u], wh[u], sl[u], sh[u], bl[u], bh[u], acc_lo, acc_hi);
    }
  }
  qmv4_output<T, N, WARPS, RESID, SWIGLU>(base, acc_lo, acc_hi, res, out);
}

// Bulk feed. Shared memory: S mbarriers (128 bytes), S slots of a chunk of
// the 16 rows, the rows' scales and biases, then the input (xp). Chunks of
// whole rows (CT = K / 128) are the rows as they lie in memory, one copy per
// run of consecutive rows; else a row's piece of a slot is padded by 64
// bytes, so that the rows a quarter-warp reads (g and g + 1, 64 bytes each)
// fall in different banks, and a row of scales or biases by 16, so that the
// 8 rows a warp reads do.
__host__ __device__ constexpr bool qmv4_bulk_whole(int k, int ct) { return ct == k / 128; }
__host__ __device__ constexpr int qmv4_bulk_row_bytes(int k, int ct) {
  return qmv4_bulk_whole(k, ct) ? k / 2 : ct * 64 + 64;
}
__host__ __device__ constexpr int qmv4_bulk_scale_row_bytes(int k, int ct) {
  return qmv4_bulk_whole(k, ct) ? k / 32 : k / 32 + 16;
}
__host__ __device__ constexpr int qmv4_bulk_slots(int k, int ct, int s) { return (k / 128 / ct) < s ? k / 128 / ct : s; }
__host__ __device__ constexpr int qmv4_bulk_shared_bytes(int k, int ct, int s) {
  return 128 + qmv4_bulk_slots(k, ct, s) * 16 * qmv4_bulk_row_bytes(k, ct) +
         2 * 16 * qmv4_bulk_scale_row_bytes(k, ct) + qmv4_shared_bytes(k);
}

__device__ __forceinline__ unsigned qmv4_smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void qmv4_bulk_copy(void* dst, const void* src, unsigned bytes, unsigned bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   qmv4_smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

__device__ __forceinline__ void qmv4_wait_phase(unsigned bar, unsigned parity) {
  unsigned done = 0;
  while (!done)
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
}

template <typename T, int K, int N, int WARPS, int CT, int S, bool NORM, bool RESID, bool SWIGLU, typename Wait>
__device__ __forceinline__ void qmv4_bulk_rows(int block, const T* x, const T* nw, float eps, const uint32_t* w,
                                               const T* scales, const T* biases, const T* res, T* out,
                                               unsigned char* smem, Wait wait) {
  constexpr int TILES = K / 128, CHUNKS = TILES / CT, SLOTS = qmv4_bulk_slots(K, CT, S);
  constexpr int ROW = qmv4_bulk_row_bytes(K, CT), SLOT = 16 * ROW, SROW = qmv4_bulk_scale_row_bytes(K, CT);
  constexpr bool WHOLE = qmv4_bulk_whole(K, CT);
  constexpr int RUNS = SWIGLU ? 2 : 1;  // runs of consecutive rows: gate and up
  static_assert(TILES % CT == 0 && CT % WARPS == 0 && CT % 2 == 0 && SLOTS >= 1 && SLOTS <= 16, "chunks");
  unsigned char* slots = smem + 128;
  unsigned char* sc = slots + SLOTS * SLOT;
  unsigned char* bi = sc + 16 * SROW;
  unsigned* xp = reinterpret_cast<unsigned*>(bi + 16 * SROW);
  const unsigned bar0 = qmv4_smem_addr(smem);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;
  const int base = block * (SWIGLU ? 8 : 16);
  constexpr unsigned CHUNK_BYTES = 16 * CT * 64, SCALE_BYTES = K / 32;
  // Whole rows, none past the end: a copy per run for weights, scales, biases.
  const bool runs = WHOLE && base + 16 / RUNS <= (SWIGLU ? N / 2 : N);

  // Warp 0 issues the copies: lanes 0..15 a row's piece of a chunk each.
  auto issue = [&](int chunk) {
    const unsigned bar = bar0 + 8 * (chunk % SLOTS);
    if (lane == 0)
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar),
                   "r"(CHUNK_BYTES + (chunk == 0 ? 32 * SCALE_BYTES : 0))
                   : "memory");
    if (runs) {
      // Lane r < RUNS: run r's weights, from its first row (r * 8).
      if (lane < RUNS)
        qmv4_bulk_copy(slots + lane * 8 * ROW,
                       reinterpret_cast<const unsigned char*>(w) + qmv4_row<N, SWIGLU>(base, lane * 8) * (K / 2),
                       16 / RUNS * (K / 2), bar);
    } else if (lane < 16) {
      const unsigned char* src =
          reinterpret_cast<const unsigned char*>(w) + qmv4_row<N, SWIGLU>(base, lane) * (K / 2) + chunk * CT * 64;
      qmv4_bulk_copy(slots + (chunk % SLOTS) * SLOT + lane * ROW, src, CT * 64, bar);
    }
  };
  if (warp == 0) {
    if (lane == 0) {
      unsigned dyn;
      asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
      if (dyn < qmv4_bulk_shared_bytes(K, CT, S)) __trap();
      for (int s = 0; s < SLOTS; ++s) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar0 + 8 * s));
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncwarp();
    // The scales and biases with the first chunk: lane r copies row r's
    // scales (r < 16) or row r - 16's biases; or, in runs, lanes 16 + r and
    // 24 + r run r's.
    if (runs) {
      const int r = lane & 7;
      if (lane >= 16 && r < RUNS) {
        const T* src = (lane < 24 ? scales : biases) + qmv4_row<N, SWIGLU>(base, r * 8) * (K / 64);
        qmv4_bulk_copy((lane < 24 ? sc : bi) + r * 8 * SROW, src, 16 / RUNS * SCALE_BYTES, bar0);
      }
    } else {
      const size_t row = qmv4_row<N, SWIGLU>(base, lane & 15);
      const T* src = (lane < 16 ? scales : biases) + row * (K / 64);
      qmv4_bulk_copy((lane < 16 ? sc : bi) + (lane & 15) * SROW, src, SCALE_BYTES, bar0);
    }
#pragma unroll 1
    for (int c = 0; c < SLOTS; ++c) issue(c);
  }
  wait();
  // Its barrier also shows the other warps the mbarriers' initialization.
  qmv4_input<T, K, WARPS, NORM>(x, nw, eps, xp);

  float acc_lo = 0.f, acc_hi = 0.f;
#pragma unroll 1
  for (int c = 0; c < CHUNKS; ++c) {
    const unsigned char* slot = slots + (c % SLOTS) * SLOT;
    qmv4_wait_phase(bar0 + 8 * (c % SLOTS), (c / SLOTS) & 1);
#pragma unroll
    for (int j = 0; j < CT / WARPS; ++j) {
      const int local = warp + j * WARPS, tile = c * CT + local;
      const uint4 lw = *reinterpret_cast<const uint4*>(slot + g * ROW + local * 64 + tig * 16);
      const uint4 hw = *reinterpret_cast<const uint4*>(slot + (g + 8) * ROW + local * 64 + tig * 16);
      const unsigned sl = *reinterpret_cast<const unsigned*>(sc + g * SROW + tile * 4);
      const unsigned sh = *reinterpret_cast<const unsigned*>(sc + (g + 8) * SROW + tile * 4);
      const unsigned bl = *reinterpret_cast<const unsigned*>(bi + g * SROW + tile * 4);
      const unsigned bh = *reinterpret_cast<const unsigned*>(bi + (g + 8) * SROW + tile * 4);
      qmv4_tile<T, K>(xp, tile, lw, hw, sl, sh, bl, bh, acc_lo, acc_hi);
    }
    if (c + SLOTS < CHUNKS) {
      // Every warp is done with the slot; the proxy fence orders those reads
      // before the copy's writes into it.
      __syncthreads();
      if (warp == 0) {
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        issue(c + SLOTS);
      }
    }
  }
  qmv4_output<T, N, WARPS, RESID, SWIGLU>(base, acc_lo, acc_hi, res, out);
}
