// One launch of attn_cluster_block (attn_cluster.cuh): a cluster of C blocks
// of 256 threads per key/value head. Template constants: T, HD, NH, NKV, C,
// LV, and the f32 bits of the RMSNorm epsilon, log2(RoPE theta) and the softmax
// scale; PF: where each block brings its share of `pf_bytes` at `pf` (the
// next product's weights) into L2: 0 nowhere, 1 at its start, 2 after its wait.
// Launched early (phases.cuh), a block starts copying its cached rows before it
// waits.
pdl_trigger();
extern __shared__ __align__(128) unsigned char acl_smem[];
if (PF == 1) acl_prefetch_share(pf, pf_bytes);
attn_cluster_block<T, HD, NH, NKV, C, LV>(blockIdx.x, qkv, qn, kn, const_cast<T*>(kc), const_cast<T*>(vc),
                                          cache_cap, meta, out, __int_as_float(EPS_BITS),
                                          __int_as_float(LOG2_THETA_BITS), __int_as_float(SCALE_BITS), acl_smem,
                                          AclWait<PF == 2>{pf, pf_bytes}, VLM_TL_PHASES);
