// q/k/v's product inside the cluster attention (attn_cluster.cuh): the C
// blocks of a key/value head's cluster compute that head's rows of q/k/v
// (its G query heads, its key and its value: (G + 2) HD rows, in 16-row groups
// split evenly across the blocks), then meet at a cluster barrier and go on
// with the attention.
//
// Why: as two launches, the attention's clusters of 16 start only once
// q/k/v's blocks drain, and at long contexts copy their cached keys after
// that (bench/gpu/NOTES.md, stops 20 and 23). In one launch each block's copy
// of its keys is issued at its start and lands while the block multiplies.
// A block has R row groups, not one: their loads are issued together
// (qmv4_groups), as one block an SM would otherwise have too few bytes in flight.
//
// Template constants: T, K (the hidden size), N (q/k/v's rows), U (k-tiles a
// warp loads at once), HD, NH, NKV, C. x: the layer's input (K); nw: its
// RMSNorm weight; w, scales, biases: q/k/v's 4-bit matrix; qkv: the product,
// read back by the attention after the barrier; xp: qmv4_shared_bytes(K)
// bytes of shared memory past the attention's.
// qmv4_rows (qmv4.cuh) for the R 16-row groups starting at rows `bases`
// at once, RMSNorm of x by nw first: each warp's loads of a k-tile cover all R
// groups, and the input is staged once. Same sums in the same order as
// qmv4_rows, so the same bits.
template <typename T, int K, int R, int WARPS, int U, typename Wait>
__device__ __forceinline__ void qmv4_groups(const int (&bases)[R], const T* x, const T* nw, float eps,
                                            const uint32_t* w, const T* scales, const T* biases, T* out,
                                            unsigned* xp, Wait wait) {
  constexpr int TILES = K / 128;
  float* gsum = reinterpret_cast<float*>(xp + (K / 32) * QMV4_XS);
  __shared__ float red[WARPS][R * 16];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;
  constexpr int PER_WARP = (TILES + WARPS - 1) / WARPS;
  constexpr int BATCHES = (PER_WARP + U - 1) / U;
  constexpr bool EVEN = TILES % WARPS == 0 && PER_WARP % U == 0;
  uint4 wl[R][U], wh[R][U];
  unsigned sl[R][U], sh[R][U], bl[R][U], bh[R][U];
  auto load = [&](int batch) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tile = warp + (batch * U + u) * WARPS;
      if (EVEN || tile < TILES) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const size_t lo = static_cast<size_t>(bases[r] + g), hi = lo + 8;
          wl[r][u] = reinterpret_cast<const uint4*>(w)[lo * (K / 32) + tig + tile * 4];
          wh[r][u] = reinterpret_cast<const uint4*>(w)[hi * (K / 32) + tig + tile * 4];
          sl[r][u] = reinterpret_cast<const unsigned*>(scales + lo * (K / 64))[tile];
          sh[r][u] = reinterpret_cast<const unsigned*>(scales + hi * (K / 64))[tile];
          bl[r][u] = reinterpret_cast<const unsigned*>(biases + lo * (K / 64))[tile];
          bh[r][u] = reinterpret_cast<const unsigned*>(biases + hi * (K / 64))[tile];
        }
      }
    }
  };
  load(0);
  wait();
  qmv4_input<T, K, WARPS, true>(x, nw, eps, xp);

  const bool feed = g == (tig >> 1);
  float acc_lo[R], acc_hi[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc_lo[r] = acc_hi[r] = 0.f;
#pragma unroll
  for (int batch = 0; batch < BATCHES; ++batch) {
    if (batch > 0) load(batch);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tile = warp + (batch * U + u) * WARPS;
      if (EVEN || tile < TILES) {
        unsigned xv[16];
        qmv4_fragments(xp, tile, tig, feed, xv);
#pragma unroll
        for (int r = 0; r < R; ++r)
          qmv4_tile<T>(xv, wl[r][u], wh[r][u], sl[r][u], sh[r][u], bl[r][u], bh[r][u], gsum, tile, acc_lo[r],
                       acc_hi[r]);
      }
    }
  }
  if (tig == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      red[warp][r * 16 + g] = acc_lo[r];
      red[warp][r * 16 + g + 8] = acc_hi[r];
    }
  }
  __syncthreads();
  if (tid < R * 16) {
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < WARPS; ++i) sum += red[i][tid];
    out[bases[tid / 16] + tid % 16] = static_cast<T>(sum);
  }
}

template <typename T, int K, int N, int U, int HD, int NH, int NKV, int C>
struct AclQkv {
  const T* x;
  const T* nw;
  float eps;
  const uint32_t* w;
  const T* scales;
  const T* biases;
  T* qkv;
  unsigned* xp;

  __device__ void operator()() const {
    constexpr int G = NH / NKV, QG = G * HD / 16, KG = HD / 16, PER_HEAD = QG + 2 * KG, R = PER_HEAD / C;
    static_assert(HD % 16 == 0 && PER_HEAD % C == 0 && N == (NH + 2 * NKV) * HD,
                  "a head's row groups split evenly across its cluster");
    const int h = static_cast<int>(blockIdx.x) / C, rank = static_cast<int>(blockIdx.x) % C;
    int bases[R];
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int c = rank * R + j;
      const int group = c < QG        ? h * QG + c
                        : c < QG + KG ? NH * HD / 16 + h * KG + (c - QG)
                                      : (NH + NKV) * HD / 16 + h * KG + (c - QG - KG);
      bases[j] = group * 16;
    }
    // The weights' first batch is in flight before the wait for the layer's input.
    qmv4_groups<T, K, R, ACL_WARPS, U>(bases, x, nw, eps, w, scales, biases, qkv, xp, GridWait{});
    // Every block's rows stored before any block reads them.
    acl_cluster_arrive_release();
    acl_cluster_wait();
  }
};
