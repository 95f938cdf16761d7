// The MLP half of a decoder layer's decoding step in one launch (phases.cuh):
// RMSNorm + gate/up GEMV + SwiGLU, then down GEMV + residual, whose blocks
// start while the last gate/up blocks finish. Blocks of LAYER_WARPS warps.
// Template constants: T, H (hidden), I (intermediate), the f32 bits of the
// RMSNorm epsilon. counters: 128 int32 zeros in device memory, left zero
// ([96, 99): ticket and phase counts). Outputs: out (H), then scratch: act.
constexpr int W = LAYER_WARPS;
extern __shared__ unsigned smem[];
constexpr int B_GU = (I + 7) / 8, B_DOWN = (H + 15) / 16;
int* phase = const_cast<int*>(counters) + 96;  // [ticket, gate/up, down]
LAYER_TRACE_START
int t = take_ticket(phase);
LAYER_TRACE_TICKET(t)
if (t < B_GU) {
  qmv4_rows<T, H, 2 * I, W, 2, true, false, true, false>(t, x, post_norm, __int_as_float(EPS_BITS), wgu, sgu, bgu, nullptr,
                                                  act, smem, NoWait{});
  LAYER_TRACE_END(3)
  phase_done(phase + 1);
  return;
}
t -= B_GU;
qmv4_rows<T, I, H, W, 2, false, true, false, false>(t, act, nullptr, 0.f, wd, sd, bd, x, out, smem,
                                             WaitFor{phase + 1, B_GU, LAYER_TRACE_WAITED});
LAYER_TRACE_END(4)
launch_done(phase, 2, B_DOWN);
