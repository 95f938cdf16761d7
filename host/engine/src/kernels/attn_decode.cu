// One launch of attn_decode_block (attn.cuh): a block of 128 threads per key/value
// head and split. Template constants: T, HD, NH, NKV, SPLITS, and the f32 bits of
// the RMSNorm epsilon, log2(RoPE theta) and the softmax scale; CACHE_CAP is the
// caches' capacity in positions. Launched early (phases.cuh), a block loads its
// first cached rows before it waits.
// With ATTN_PREFETCH (the step runner's launch), thread i of the grid also
// brings entry i of `pf` (pf_n entries, GridWaitThenPrefetch's format: the
// next launches' weights) into L2 once it has waited: the attention is a chain
// of round trips that leaves DRAM idle.
pdl_trigger();
__shared__ AttnShared<HD, NH / NKV> smem;
#ifdef ATTN_PREFETCH
const int pf_at = blockIdx.x * blockDim.x + threadIdx.x;
const GridWaitThenPrefetch wait{pf_at < pf_n ? __ldg(reinterpret_cast<const unsigned long long*>(pf) + pf_at) : 0ull};
#else
const GridWait wait{};
#endif
attn_decode_block<T, HD, NH, NKV, SPLITS>(
    blockIdx.x, qkv, qn, kn, const_cast<T*>(kc), const_cast<T*>(vc), CACHE_CAP, meta, const_cast<int*>(counters),
    part, out, __int_as_float(EPS_BITS), __int_as_float(LOG2_THETA_BITS), __int_as_float(SCALE_BITS),
    reinterpret_cast<float*>(&smem), wait);
