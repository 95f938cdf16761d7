// q/k/v's blocks bring this layer's cached keys (WHAT 1), or keys and values
// (WHAT 2), at positions [0, len) into L2 once their own weight loads are
// issued, so that the attention's copies of them read L2 rather than DRAM.
//
// Why: the attention's clusters of 16 start only once q/k/v's blocks drain
// (bench/gpu/NOTES.md, stop 20), so at long contexts they copy their keys
// from DRAM after the wait: ~2.7 µs a layer at 1920x1080. Issued before q/k/v's
// wait the prefetches slowed the down projection they overlapped (stop 20);
// issued after q/k/v's last loads, they queue behind q/k/v's own weights.
//
// Template constants: T, HD (a row's elements), NKV (heads), WHAT. kc, vc:
// (1, NKV, cap, HD) caches; meta: [len, ...], read after the block's wait.
// The grid's blocks split each head's rows: gridDim.x / NKV blocks a head.

template <typename T, int HD, int NKV, int WHAT>
struct KvPrefetch {
  const T* kc;
  const T* vc;
  const int* meta;
  int cap;

  __device__ void operator()() const {
    const int per_head = static_cast<int>(gridDim.x) / NKV;
    if (threadIdx.x != 0 || per_head == 0) return;
    const int head = static_cast<int>(blockIdx.x) / per_head, part = static_cast<int>(blockIdx.x) % per_head;
    if (head >= NKV) return;
    const int len = __ldcg(meta);
    const int per = (len + per_head - 1) / per_head;
    const int lo = part * per, hi = min(len, lo + per);
    if (hi <= lo) return;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // Rows of HD * sizeof(T) bytes (a multiple of 16, as the copy needs).
    const size_t at = (static_cast<size_t>(head) * cap + lo) * HD;
    const unsigned bytes = static_cast<unsigned>(hi - lo) * HD * sizeof(T);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(kc + at), "r"(bytes) : "memory");
    if (WHAT == 2) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(vc + at), "r"(bytes) : "memory");
#endif
  }
};
