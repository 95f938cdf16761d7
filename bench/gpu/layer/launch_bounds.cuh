// MLX writes a custom kernel's signature itself, so a kernel that must fit
// LAYER_MIN_BLOCKS blocks of LAYER_WARPS warps on an SM gets its
// __launch_bounds__ through the __global__ macro; this header goes last,
// right before that signature.
#ifdef LAYER_MIN_BLOCKS
#undef __global__
#define __global__ __location__(global) __launch_bounds__(LAYER_WARPS * 32, LAYER_MIN_BLOCKS)
#endif
