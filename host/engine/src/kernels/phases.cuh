// The hook our device functions (qmv4.cuh, attn.cuh) take for work that must
// wait inside a launch: a functor run after a block's first loads are issued
// and before it reads its input. The engine's kernels wait for nothing
// (NoWait); bench/gpu/layer/ chains several phases in one launch with it.

// A phase that waits for nothing (a kernel of its own).
struct NoWait {
  __device__ void operator()() const {}
};

