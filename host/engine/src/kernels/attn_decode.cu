// One launch of attn_decode_block (attn.cuh): a block of 128 threads per key/value
// head and split. Template constants: T, HD, NH, NKV, SPLITS, and the f32 bits of
// the RMSNorm epsilon, log2(RoPE theta) and the softmax scale; CACHE_CAP is the
// caches' capacity in positions. Launched early (phases.cuh), a block loads its
// first cached rows before it waits.
pdl_trigger();
__shared__ AttnShared<HD, NH / NKV> smem;
attn_decode_block<T, HD, NH, NKV, SPLITS>(
    blockIdx.x, qkv, qn, kn, const_cast<T*>(kc), const_cast<T*>(vc), CACHE_CAP, meta, const_cast<int*>(counters),
    part, out, __int_as_float(EPS_BITS), __int_as_float(LOG2_THETA_BITS), __int_as_float(SCALE_BITS),
    reinterpret_cast<float*>(&smem), GridWait{});
