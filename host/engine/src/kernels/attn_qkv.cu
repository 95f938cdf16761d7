// One launch of the cluster attention with q/k/v's product inside
// (attn_qkv.cuh): a cluster of C blocks of 256 threads per key/value head.
// Template constants: those of attn_cluster.cu, and K, N, U of the product.
pdl_trigger();
extern __shared__ __align__(128) unsigned char acl_smem[];
const float eps = __int_as_float(EPS_BITS);
unsigned* qxp = reinterpret_cast<unsigned*>(acl_smem + attn_cluster_smem_bytes<T, HD, NH / NKV, C, LV>(cache_cap));
const AclQkv<T, K, N, U, HD, NH, NKV, C> product{x, nw, eps, w, scales, biases, qkv, qxp};
attn_cluster_block<T, HD, NH, NKV, C, LV, true>(blockIdx.x, qkv, qn, kn, const_cast<T*>(kc), const_cast<T*>(vc),
                                                cache_cap, meta, out, eps, __int_as_float(LOG2_THETA_BITS),
                                                __int_as_float(SCALE_BITS), acl_smem, product, VLM_TL_PHASES);
