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


// k-tile `tile`'s input as B fragments: columns 0 and 1 (the tile's two
// groups) fed by the lanes with g == tig / 2, zeros in the others.
__device__ __forceinline__ void qmv4_fragments(const unsigned* xp, int tile, int tig, bool feed, unsigned (&xv)[16]) {
  const uint4* xq = reinterpret_cast<const uint4*>(xp + (tile * 4 + tig) * QMV4_XS);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint4 p = xq[q];
    xv[4 * q] = feed ? p.x : 0u;
    xv[4 * q + 1] = feed ? p.y : 0u;
    xv[4 * q + 2] = feed ? p.z : 0u;
    xv[4 * q + 3] = feed ? p.w : 0u;
  }
}

// One k-tile of a lane's two rows (A rows g and g + 8): their codes wl and wh,
// the scales and biases of the tile's two groups, the input's fragments and
// group sums (`gsum`), added into acc_lo and acc_hi.
template <typename T>
__device__ __forceinline__ void qmv4_tile(const unsigned (&xv)[16], uint4 wl, uint4 wh, unsigned sl, unsigned sh,
                                          unsigned bl, unsigned bh, const float* gsum, int tile, float& acc_lo,
                                          float& acc_hi) {
  const unsigned lw[4] = {wl.x, wl.y, wl.z, wl.w};
  const unsigned hw[4] = {wh.x, wh.y, wh.z, wh.w};
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

// The key under which out[i] = f competes for the argmax: larger values win,
// then lower indices; NaNs and -inf lose to every other value (and among
// themselves the lowest index wins, index 0 if nothing else does), and -0
// equals +0, as in MLX's argmax. Never 0. The winner is 0xFFFFFFFF - the
// key's low half.
__device__ __forceinline__ unsigned long long qmv4_pick_key(float f, int i) {
  const unsigned long long low = 0xFFFFFFFFu - static_cast<unsigned>(i);
  if (!(f > __int_as_float(0xff800000))) return low;
  const unsigned u = f == 0.f ? 0u : __float_as_uint(f);
  const unsigned ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<unsigned long long>(ord) << 32) | low;
}

// The block's 16 row sums (8 gate/up pairs for SwiGLU) from its warps' partial
// sums, through `red`, into out[base ...] with the epilogue: SwiGLU, or the
// residual added. With PICK, the largest of them joins pick[0] (an atomic
// max of qmv4_pick_key, nothing waiting for it). All threads of the block
// call it.
template <typename T, int WARPS, int OUT, bool RESID, bool SWIGLU, bool PICK = false>
__device__ __forceinline__ void qmv4_store(float (&red)[WARPS][16], int base, float acc_lo, float acc_hi,
                                           const T* res, T* out, unsigned long long* pick = nullptr) {
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
    unsigned long long key = 0ull;
    if (tid < 16 && base + tid < OUT) {
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < WARPS; ++i) sum += red[i][tid];
      if constexpr (RESID) {
        out[base + tid] = __ldcg(res + base + tid) + static_cast<T>(sum);
      } else {
        const T v = static_cast<T>(sum);
        out[base + tid] = v;
        if constexpr (PICK) key = qmv4_pick_key(static_cast<float>(v), base + tid);
      }
    }
    if constexpr (PICK) {
      // Rows base .. base + 15 are lanes 0-15 of warp 0.
      if (warp == 0) {
#pragma unroll
        for (int off = 8; off > 0; off >>= 1) {
          const unsigned long long other = __shfl_xor_sync(0xffffffffu, key, off);
          key = other > key ? other : key;
        }
        if (lane == 0 && key != 0ull) atomicMax(pick, key);
      }
    }
  }
}

// PERSIST: the block goes on with row groups block + gridDim.x, + 2 gridDim.x,
// ... while there are any, the input staged once and each next group's first
// loads issued before the current group's sums are reduced. PICK: each
// group's largest output joins pick[0] (qmv4_store).
template <typename T, int K, int N, int WARPS, int U, bool NORM, bool RESID, bool SWIGLU, bool PERSIST,
          typename Wait, bool PICK = false>
__device__ __forceinline__ void qmv4_rows(int block, const T* x, const T* nw, float eps, const uint32_t* w,
                                          const T* scales, const T* biases, const T* res, T* out, unsigned* xp,
                                          Wait wait, unsigned long long* pick = nullptr) {
  constexpr int TILES = K / 128;
  constexpr int XS = QMV4_XS;
  float* gsum = reinterpret_cast<float*>(xp + (K / 32) * XS);
  __shared__ float red[WARPS][16];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;
  constexpr int OUT = SWIGLU ? N / 2 : N;
  constexpr int PER_BLOCK = SWIGLU ? 8 : 16;
  constexpr int GROUPS = (OUT + PER_BLOCK - 1) / PER_BLOCK;
  int base;
  const uint4 *wlo, *whi;
  const unsigned *slo, *shi, *blo, *bhi;
  auto rows = [&](int group) {
    base = group * PER_BLOCK;
    const size_t row_lo = static_cast<size_t>(min(base + g, OUT - 1));
    const size_t row_hi = SWIGLU ? row_lo + OUT : static_cast<size_t>(min(base + 8 + g, OUT - 1));
    wlo = reinterpret_cast<const uint4*>(w) + row_lo * (K / 32) + tig;
    whi = reinterpret_cast<const uint4*>(w) + row_hi * (K / 32) + tig;
    slo = reinterpret_cast<const unsigned*>(scales + row_lo * (K / 64));
    shi = reinterpret_cast<const unsigned*>(scales + row_hi * (K / 64));
    blo = reinterpret_cast<const unsigned*>(biases + row_lo * (K / 64));
    bhi = reinterpret_cast<const unsigned*>(biases + row_hi * (K / 64));
  };
  rows(block);
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

  // The input row: normalized if asked, rounded to T as MLX rounds it, stored
  // as the pairs the A fragments use, with its group sums.
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

  const bool feed = g == (tig >> 1);
  for (int group = block;;) {
    float acc_lo = 0.f, acc_hi = 0.f;
#pragma unroll
    for (int batch = 0; batch < BATCHES; ++batch) {
      if (batch > 0) load(batch);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int tile = warp + (batch * U + u) * WARPS;
        if (EVEN || tile < TILES) {
          unsigned xv[16];
          qmv4_fragments(xp, tile, tig, feed, xv);
          qmv4_tile<T>(xv, wl[u], wh[u], sl[u], sh[u], bl[u], bh[u], gsum, tile, acc_lo, acc_hi);
        }
      }
    }
    const int done = base;
    if constexpr (PERSIST) {
      if (group + static_cast<int>(gridDim.x) < GROUPS) {
        rows(group + gridDim.x);
        load(0);
      }
    }
    qmv4_store<T, WARPS, OUT, RESID, SWIGLU, PICK>(red, done, acc_lo, acc_hi, res, out, pick);
    if (!PERSIST || group + static_cast<int>(gridDim.x) >= GROUPS) break;
    group += gridDim.x;
    __syncthreads();  // red is written again
  }
}
