// One launch of mlp_units (mlp.cuh): template constants T, H, I, CH, WARPS,
// U, EPS_BITS (the RMSNorm's epsilon as f32 bits). Launched early
// (phases.cuh), a block issues its first unit's loads before it waits.
pdl_trigger();
extern __shared__ unsigned xp[];
mlp_units<T, H, I, CH, WARPS, U>(x, nw, __int_as_float(EPS_BITS), gw, gs, gb, act, dw, ds, db, out, part,
                                      counters, xp, GridWait{});
