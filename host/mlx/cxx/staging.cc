// Staging buffers: host bytes that become an array without another copy.
//
// MLX's CUDA backend copies host data into fresh CUDA managed memory; the CPU's
// first write to each page of it faults (3-6 ms for a 6 MB image on the H100,
// bench/gpu/NOTES.md), and the GPU's first read migrates the pages back. A
// staging buffer is instead page-locked host memory, reused from a pool, that
// the caller fills once and that kernels read in place over the bus. Without
// the CUDA driver (the CPU and Metal builds), it is plain heap memory that
// `staging_into_array` copies as `from_bytes` does.
#include "mlx-bind/cxx/shim.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "mlx-bind/src/ffi.rs.h"
#include "mlx/backend/cuda/cuda.h"

namespace mx = mlx::core;

namespace mlxr {

namespace {

// What `allocator::Buffer::ptr()` points to under MLX 0.32's CUDA backend
// (`mlx::core::cu::CudaBuffer` in mlx/backend/cuda/allocator.h, a header that
// needs the CUDA toolkit's to compile). Device -1 marks memory the host and the
// GPU both address; kernels read `data` directly.
struct MlxCudaBuffer {
  void* data;
  size_t size;
  int device;
};

// The CUDA driver calls we need, found in the libcuda that libmlx loads (its
// runtime is linked statically and exports nothing).
struct Driver {
  int (*mem_host_alloc)(void**, size_t, unsigned) = nullptr;
  int (*mem_free_host)(void*) = nullptr;
  int (*host_get_device_pointer)(unsigned long long*, void*, unsigned) = nullptr;
  int (*device_get)(int*, int) = nullptr;
  int (*primary_ctx_retain)(void**, int) = nullptr;
  int (*ctx_push)(void*) = nullptr;
  int (*ctx_pop)(void**) = nullptr;
  void* ctx = nullptr;
  bool ok = false;
};

template <typename F>
void find(F& f, const char* name) {
  f = reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

const Driver& driver() {
  static const Driver d = [] {
    Driver d;
    if (!mx::cu::is_available() || std::getenv("VLM_BENCH_NO_PINNED_STAGING")) return d;
    find(d.mem_host_alloc, "cuMemHostAlloc");
    find(d.mem_free_host, "cuMemFreeHost");
    find(d.host_get_device_pointer, "cuMemHostGetDevicePointer_v2");
    find(d.device_get, "cuDeviceGet");
    find(d.primary_ctx_retain, "cuDevicePrimaryCtxRetain");
    find(d.ctx_push, "cuCtxPushCurrent_v2");
    find(d.ctx_pop, "cuCtxPopCurrent_v2");
    if (!d.mem_host_alloc || !d.mem_free_host || !d.host_get_device_pointer || !d.device_get ||
        !d.primary_ctx_retain || !d.ctx_push || !d.ctx_pop)
      return d;
    int dev = 0;  // MLX's default GPU
    d.ok = d.device_get(&dev, 0) == 0 && d.primary_ctx_retain(&d.ctx, dev) == 0;
    return d;
  }();
  return d;
}

// Runs `f` with MLX's (the device's primary) context current on this thread.
template <typename F>
int in_context(F f) {
  const Driver& d = driver();
  if (d.ctx_push(d.ctx) != 0) return -1;
  int rc = f();
  void* popped = nullptr;
  d.ctx_pop(&popped);
  return rc;
}

constexpr unsigned kPortable = 0x01, kDeviceMap = 0x02;  // CU_MEMHOSTALLOC_*
constexpr size_t kGranule = size_t(2) << 20;
constexpr size_t kKeep = 4;  // free blocks the pool keeps

struct Block {
  void* data;
  size_t cap;
};

// Free page-locked blocks. Leaked on purpose: an array's deleter may return a
// block while static destructors run at exit.
struct Pool {
  std::mutex mu;
  std::vector<Block> free;
};
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// A block of at least `size` bytes, or {nullptr, 0} when none can be had.
Block take_block(size_t size) {
  {
    std::lock_guard<std::mutex> lock(pool().mu);
    auto& f = pool().free;
    auto best = f.end();
    for (auto it = f.begin(); it != f.end(); ++it)
      if (it->cap >= size && (best == f.end() || it->cap < best->cap)) best = it;
    if (best != f.end()) {
      Block b = *best;
      f.erase(best);
      return b;
    }
  }
  const Driver& d = driver();
  size_t cap = (std::max<size_t>(size, 1) + kGranule - 1) / kGranule * kGranule;
  void* p = nullptr;
  if (in_context([&] { return d.mem_host_alloc(&p, cap, kPortable | kDeviceMap); }) != 0 || !p) return {nullptr, 0};
  // Kernels get one pointer for host and device: true under unified addressing.
  unsigned long long dev = 0;
  if (in_context([&] { return d.host_get_device_pointer(&dev, p, 0); }) != 0 ||
      dev != reinterpret_cast<unsigned long long>(p)) {
    in_context([&] { return d.mem_free_host(p); });
    return {nullptr, 0};
  }
  return {p, cap};
}

void give_block(Block b) {
  {
    std::lock_guard<std::mutex> lock(pool().mu);
    if (pool().free.size() < kKeep) {
      pool().free.push_back(b);
      return;
    }
  }
  in_context([&] { return driver().mem_free_host(b.data); });
}

}  // namespace

Staging::~Staging() {
  if (block_data) give_block({block_data, block_cap});
}

std::unique_ptr<Staging> staging_new(size_t size) {
  auto s = std::make_unique<Staging>();
  s->size = size;
  if (driver().ok) {
    Block b = take_block(size);
    s->block_data = b.data;
    s->block_cap = b.cap;
  }
  if (!s->block_data) s->heap.resize(size);
  return s;
}

rust::Slice<uint8_t> staging_bytes(Staging& s) {
  uint8_t* p = s.block_data ? static_cast<uint8_t*>(s.block_data) : s.heap.data();
  return rust::Slice<uint8_t>(p, s.size);
}

bool staging_pinned(const Staging& s) { return s.block_data != nullptr; }

ArrayPtr staging_into_array(Staging& s, rust::Slice<const int32_t> shape, DType dtype) {
  mx::Shape sh(shape.begin(), shape.end());
  mx::Dtype dt = to_mx_dtype(dtype);
  check_nbytes(s.size, sh, dt);
  if (!s.block_data) {
    if (s.size == 0) return from_bytes(rust::Slice<const uint8_t>(), shape, dtype);
    // MLX takes the bytes without a copy where its allocator can (CPU, Metal)
    // and copies them otherwise; either way the deleter frees them after.
    auto* bytes = new std::vector<uint8_t>(std::move(s.heap));
    return std::make_unique<mx::array>(bytes->data(), std::move(sh), dt, [bytes](void*) { delete bytes; });
  }
  // The array owns the block from here; its deleter returns it to the pool once
  // MLX is done with the data (MLX holds inputs until their kernels complete).
  Block b{s.block_data, s.block_cap};
  s.block_data = nullptr;
  auto* handle = new MlxCudaBuffer{b.data, b.cap, -1};
  mx::allocator::Data data(mx::allocator::Buffer(handle), [b](mx::allocator::Buffer buf) {
    delete static_cast<MlxCudaBuffer*>(buf.ptr());
    give_block(b);
  });
  return std::make_unique<mx::array>(std::move(data), std::move(sh), dt);
}

}  // namespace mlxr
