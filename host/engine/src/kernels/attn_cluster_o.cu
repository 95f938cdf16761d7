// attn_cluster.cu with the o projection fused (attn_cluster.cuh, FO): the
// attention's outputs stay in the cluster, and `hout` = `res` + o is written
// where the o launch wrote it. Template constants as attn_cluster.cu's, plus
// HID (o's rows) and OE (o's rows copied before the wait: 1, or once the keys
// are in: 0).
pdl_trigger();
extern __shared__ __align__(128) unsigned char acl_smem[];
AclOArgs<T> o;
o.w = ow;
o.scales = os;
o.biases = ob;
o.res = res;
o.out = hout;
o.part = opart;
o.count = ocount;
attn_cluster_block<T, HD, NH, NKV, C, LV, 1, OE, HID>(
    blockIdx.x, qkv, qn, kn, const_cast<T*>(kc), const_cast<T*>(vc), cache_cap, meta, nullptr,
    __int_as_float(EPS_BITS), __int_as_float(LOG2_THETA_BITS), __int_as_float(SCALE_BITS), acl_smem, GridWait{},
    VLM_TL_PHASES, o);
