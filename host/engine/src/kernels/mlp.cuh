// A decoder layer's MLP in one persistent launch of the step runner:
//   act = silu(gate · n) * (up · n), n = RMSNorm(x)   (gate/up, qmv4.cuh's NormSwiGlu)
//   out = x + down · act                               (down, qmv4.cuh's Residual)
// Two launches leave the SMs half idle while gate/up's last blocks drain
// and down's first ones wait for them. Here blocks take units of work from a
// queue in order: gate/up's row groups (8 gate/up pairs each), then down's,
// each 16 rows over one of CH chunks of act's width, chunk by chunk. A down
// unit of chunk c waits only for the gate/up groups that write chunk c (a
// count per chunk), which by then are mostly done: down's rows start while
// gate/up's last groups run. Its partial sums go to `part`, and the last of a
// row group's CH units adds them in chunk order to the residual: the same
// bits every run.
//
// The launch must fit on the GPU at once (StepDecoder sizes it by the
// driver's occupancy): a block's first unit is its index, taken before it
// starts, and another block's down unit may wait for it. Counters (u32,
// zero between launches; the last block out resets the queue's): [0] the
// queue, [1] blocks done, [2, 2 + CH) gate/up groups stored per chunk, then a
// row group's down units arrived.

// Loads and products of one unit: 16 rows (a lane's A rows g and g + 8), U
// k-tiles a warp loads at once, the warps splitting the k-tiles as qmv4_rows
// does (so gate/up's sums are the two-launch path's). Gate/up's and down's
// units use the same registers: the next unit's first loads go into them
// while the current one is reduced.
template <typename T, int U>
struct Q4Unit {
  const uint4 *wlo, *whi;
  const unsigned *slo, *shi, *blo, *bhi;
  uint4 wl[U], wh[U];
  unsigned sl[U], sh[U], bl[U], bh[U];

  // Points at rows `lo` and `hi` (this lane's) of a matrix of ROW codes a
  // row, from k-tile t0, and issues the first batch of TILES k-tiles.
  template <int ROW, int TILES, int WARPS>
  __device__ __forceinline__ void start(const uint32_t* w, const T* s, const T* b, size_t lo, size_t hi, int t0,
                                        int warp, int tig) {
    wlo = reinterpret_cast<const uint4*>(w) + lo * (ROW / 32) + t0 * 4 + tig;
    whi = reinterpret_cast<const uint4*>(w) + hi * (ROW / 32) + t0 * 4 + tig;
    slo = reinterpret_cast<const unsigned*>(s + lo * (ROW / 64)) + t0;
    shi = reinterpret_cast<const unsigned*>(s + hi * (ROW / 64)) + t0;
    blo = reinterpret_cast<const unsigned*>(b + lo * (ROW / 64)) + t0;
    bhi = reinterpret_cast<const unsigned*>(b + hi * (ROW / 64)) + t0;
    load<TILES, WARPS>(0, warp);
  }

  template <int TILES, int WARPS>
  __device__ __forceinline__ void load(int batch, int warp) {
    constexpr int PER_WARP = (TILES + WARPS - 1) / WARPS;
    constexpr bool EVEN = TILES % WARPS == 0 && PER_WARP % U == 0;
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
  }

  // This lane's sums of its two rows against the staged input (xp, gsum).
  template <int TILES, int WARPS>
  __device__ __forceinline__ void run(const unsigned* xp, const float* gsum, int warp, int tig, bool feed,
                                      float& acc_lo, float& acc_hi) {
    constexpr int PER_WARP = (TILES + WARPS - 1) / WARPS;
    constexpr int BATCHES = (PER_WARP + U - 1) / U;
    constexpr bool EVEN = TILES % WARPS == 0 && PER_WARP % U == 0;
#pragma unroll
    for (int batch = 0; batch < BATCHES; ++batch) {
      if (batch > 0) load<TILES, WARPS>(batch, warp);
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
  }
};

// K values of `src` (RMSNorm'd by nw if NORM, rounded as MLX rounds it) into
// xp in the order the A fragments use, their group sums into gsum, as
// qmv4_rows stages its input. Every thread of the block calls it.
template <typename T, int K, int WARPS, bool NORM>
__device__ __forceinline__ void q4_stage(const T* src, const T* nw, float eps, unsigned* xp, float* gsum) {
  constexpr int THREADS = WARPS * 32;
  constexpr int XV = K / 8;
  constexpr int XPT = (XV + THREADS - 1) / THREADS;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  uint4 xr[XPT];
#pragma unroll
  for (int j = 0; j < XPT; ++j) {
    const int v = tid + j * THREADS;
    xr[j] = (XV % THREADS == 0 || v < XV) ? __ldcg(reinterpret_cast<const uint4*>(src) + v) : make_uint4(0, 0, 0, 0);
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
      reinterpret_cast<uint4*>(xp + (v >> 2) * QMV4_XS)[v & 3] =
          make_uint4(pack2(y[0], y[4]), pack2(y[1], y[5]), pack2(y[2], y[6]), pack2(y[3], y[7]));
      if ((v & 7) == 0) gsum[v >> 3] = s;
    }
  }
  __syncthreads();
}

__device__ __forceinline__ unsigned mlp_load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void mlp_add_release(unsigned* p, unsigned v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned mlp_add_acq_rel(unsigned* p, unsigned v) {
  unsigned old;
  asm volatile("atom.add.acq_rel.gpu.global.u32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
  return old;
}

// Shared memory (dynamic): the staged input of the wider of x and a chunk.
__host__ __device__ constexpr int mlp_shared_bytes(int h, int chunk) {
  return qmv4_shared_bytes(h > chunk ? h : chunk);
}

// H: x's width; I: act's; CH: chunks of act; WARPS a block; U: k-tiles a
// warp loads at once. gw: 2I rows (gate, then up) of H
// codes; dw: H rows of I codes. `wait` as in qmv4_rows.
template <typename T, int H, int I, int CH, int WARPS, int U, typename Wait>
__device__ __forceinline__ void mlp_units(const T* x, const T* nw, float eps, const uint32_t* gw, const T* gs,
                                          const T* gb, T* act, const uint32_t* dw, const T* ds, const T* db,
                                          T* out, float* part, unsigned* counters, unsigned* xp, Wait wait) {
  constexpr int KC = I / CH;        // a chunk's width
  constexpr int GU = I / 8;         // gate/up units
  constexpr int GPC = GU / CH;      // gate/up units a chunk
  constexpr int RG = H / 16;        // down's row groups
  constexpr int TOTAL = GU + RG * CH;
  static_assert(H % 128 == 0 && I % CH == 0 && KC % 128 == 0, "whole k-tiles");
  float* gsum = reinterpret_cast<float*>(xp + ((H > KC ? H : KC) / 32) * QMV4_XS);
  unsigned* const queue = counters;
  unsigned* const finished = counters + 1;
  unsigned* const stored = counters + 2;
  unsigned* const arrived = counters + 2 + CH;
  __shared__ float red[WARPS][16];
  __shared__ int next_unit;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;
  const bool feed = g == (tig >> 1);
  constexpr int TG = H / 128, TD = KC / 128;  // k-tiles of a gate/up and a down unit
  Q4Unit<T, U> rows;
  // A unit's rows, its first loads issued.
  auto begin = [&](int unit) {
    if (unit < GU) {
      const size_t lo = static_cast<size_t>(unit) * 8 + g;
      rows.start<H, TG, WARPS>(gw, gs, gb, lo, lo + I, 0, warp, tig);
    } else {
      const int c = (unit - GU) / RG, r = (unit - GU) % RG;
      const size_t lo = static_cast<size_t>(r) * 16 + g;
      rows.start<I, TD, WARPS>(dw, ds, db, lo, lo + 8, c * TD, warp, tig);
    }
  };
  int unit = blockIdx.x;
  if (unit < TOTAL) begin(unit);
  wait();
  int staged = -2;  // what xp holds: -1 x normalized, c >= 0 act's chunk c
  while (unit < TOTAL) {
    // The next unit's number arrives while this one runs.
    if (tid == 0) next_unit = static_cast<int>(atomicAdd(queue, 1u) + gridDim.x);
    const bool is_gate = unit < GU;
    const int c = is_gate ? unit / GPC : (unit - GU) / RG;
    const int r = (unit - GU) % RG;
    float acc_lo = 0.f, acc_hi = 0.f;
    if (is_gate) {
      if (staged != -1) {
        q4_stage<T, H, WARPS, true>(x, nw, eps, xp, gsum);
        staged = -1;
      }
      rows.run<TG, WARPS>(xp, gsum, warp, tig, feed, acc_lo, acc_hi);
    } else {
      if (staged != c) {
        // The barrier carries thread 0's acquire to the block's reads of
        // act (past L1: other SMs wrote it).
        if (tid == 0)
          while (mlp_load_acquire(stored + c) < GPC) __nanosleep(32);
        __syncthreads();
        q4_stage<T, KC, WARPS, false>(act + static_cast<size_t>(c) * KC, nullptr, 0.f, xp, gsum);
        staged = c;
      }
      rows.run<TD, WARPS>(xp, gsum, warp, tig, feed, acc_lo, acc_hi);
    }
    if (tig == 0) {
      red[warp][g] = acc_lo;
      red[warp][g + 8] = acc_hi;
    }
    __syncthreads();
    const int next = next_unit;
    if (next < TOTAL) begin(next);
    if (is_gate) {
      if (tid < 8) {
        float gsm = 0.f, usm = 0.f;
#pragma unroll
        for (int i = 0; i < WARPS; ++i) {
          gsm += red[i][tid];
          usm += red[i][tid + 8];
        }
        // As silu(g) * u over T arrays: each op rounds to T (qmv4_store).
        const T gt = static_cast<T>(gsm);
        const T sig = static_cast<T>(1.f / (1.f + expf(-static_cast<float>(gt))));
        act[unit * 8 + tid] = (gt * sig) * static_cast<T>(usm);
      }
    } else if (tid < 16) {
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < WARPS; ++i) sum += red[i][tid];
      part[c * H + r * 16 + tid] = sum;
    }
    // The barrier orders the block's stores before thread 0's release
    // (causality through bar.sync, as attn.cuh's join).
    __syncthreads();
    if (tid == 0) {
      if (is_gate) {
        mlp_add_release(stored + c, 1);
      } else if (mlp_add_acq_rel(arrived + r, 1) == CH - 1) {
        // The row group's last unit: the chunks' sums in chunk order, then
        // the residual, as the Residual epilogue rounds it.
        arrived[r] = 0;
        const uint4* res = reinterpret_cast<const uint4*>(x + r * 16);
        const uint4 rv[2] = {__ldcg(res), __ldcg(res + 1)};
        float sum[16] = {};
#pragma unroll
        for (int k = 0; k < CH; ++k) {
          const float4* pk = reinterpret_cast<const float4*>(part + k * H + r * 16);
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const float4 v = __ldcg(pk + q);
            sum[4 * q] += v.x;
            sum[4 * q + 1] += v.y;
            sum[4 * q + 2] += v.z;
            sum[4 * q + 3] += v.w;
          }
        }
        uint4 o[2];
        const T* rt = reinterpret_cast<const T*>(rv);
        T* ot = reinterpret_cast<T*>(o);
#pragma unroll
        for (int i = 0; i < 16; ++i) ot[i] = rt[i] + static_cast<T>(sum[i]);
        reinterpret_cast<uint4*>(out + r * 16)[0] = o[0];
        reinterpret_cast<uint4*>(out + r * 16)[1] = o[1];
      }
    }
    unit = next;
  }
  // The last block out leaves the counters as it found them (every unit done).
  if (tid == 0 && mlp_add_acq_rel(finished, 1) == gridDim.x - 1) {
    *queue = 0;
    *finished = 0;
#pragma unroll
    for (int k = 0; k < CH; ++k) stored[k] = 0;
  }
}
