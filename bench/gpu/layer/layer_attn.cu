// The attention half of a decoder layer's decoding step in one launch
// (phases.cuh): RMSNorm + q/k/v GEMV; attention (attn.cuh, its splits joined
// per key/value head); o GEMV + residual. Blocks of LAYER_WARPS warps; the
// header defines it and ATTN_THREADS to match.
// Template constants: T, H (hidden), HD, NH, NKV, SPLITS, and the f32 bits of
// the RMSNorm epsilon, log2(RoPE theta) and the softmax scale. counters: 128
// int32 zeros in device memory, left zero ([0, NKV): the attention's joins;
// [64, 68): ticket and phase counts). Outputs: out (x + attention, H), then
// scratch: qkv, part, attn.
// LAYER_TRACE (bench/gpu/layer_lab.py): an output `trace` gets, per ticket,
// the phase and SM, and the times the block started, ended its wait and
// finished.
constexpr int W = LAYER_WARPS;
static_assert(ATTN_THREADS == W * 32, "the attention phase uses the whole block");
extern __shared__ unsigned smem[];
constexpr int NQKV = (NH + 2 * NKV) * HD, NO = NH * HD;
constexpr int B_QKV = (NQKV + 15) / 16, B_ATTN = NKV * SPLITS, B_O = (H + 15) / 16;
int* ctr = const_cast<int*>(counters);
int* phase = ctr + 64;  // [ticket, q/k/v, attention, o]
const float eps = __int_as_float(EPS_BITS);
LAYER_TRACE_START
int t = take_ticket(phase);
LAYER_TRACE_TICKET(t)
if (t < B_QKV) {
  qmv4_rows<T, H, NQKV, W, 2, true, false, false, false>(t, x, in_norm, eps, wqkv, sqkv, bqkv, nullptr, qkv, smem,
                                                  NoWait{});
  LAYER_TRACE_END(0)
  phase_done(phase + 1);
  return;
}
t -= B_QKV;
if (t < B_ATTN) {
  const bool joined = attn_decode_block<T, HD, NH, NKV, SPLITS>(
      t, qkv, qn, kn, const_cast<T*>(kc), const_cast<T*>(vc), kc_shape[2], meta, ctr, part, attn, eps,
      __int_as_float(LOG2_THETA_BITS), __int_as_float(SCALE_BITS), reinterpret_cast<float*>(smem),
      WaitFor{phase + 1, B_QKV, LAYER_TRACE_WAITED});
  LAYER_TRACE_END(1)
  if (joined) phase_done(phase + 2);
  return;
}
t -= B_ATTN;
qmv4_rows<T, NO, H, W, 2, false, true, false, false>(t, attn, nullptr, 0.f, wo, so, bo, x, out, smem,
                                              WaitFor{phase + 2, NKV, LAYER_TRACE_WAITED});
LAYER_TRACE_END(2)
launch_done(phase, 3, B_O);
