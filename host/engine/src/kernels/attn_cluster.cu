// One launch of attn_cluster_block (attn_cluster.cuh): QS clusters of C
// blocks of 256 threads per key/value head. Template constants: T, HD, NH,
// NKV, C, LV, QS, and the f32 bits of the RMSNorm epsilon, log2(RoPE theta)
// and the softmax scale. Launched early (phases.cuh), a block starts copying
// its cached rows before it waits.
pdl_trigger();
extern __shared__ __align__(128) unsigned char acl_smem[];
attn_cluster_block<T, HD, NH, NKV, C, LV, QS>(blockIdx.x, qkv, qn, kn, const_cast<T*>(kc), const_cast<T*>(vc),
                                              cache_cap, meta, out, __int_as_float(EPS_BITS),
                                              __int_as_float(LOG2_THETA_BITS), __int_as_float(SCALE_BITS), acl_smem,
                                              GridWait{}, VLM_TL_PHASES);
