// Staging buffers: host bytes that become an array without another copy.
//
// MLX's CUDA backend copies host data into fresh CUDA managed memory; the CPU's
// first write to each page of it faults (3-6 ms for a 6 MB image on the H100,
// docs/experiments.md, "Pinned staging for images and tables"), and the GPU's
// first read migrates the pages back. A
// staging buffer is instead page-locked host memory, reused from a pool, that
// the caller fills once and that kernels read in place over the bus. Without
// the CUDA driver (the CPU and Metal builds), it is plain heap memory that
// `staging_into_array` copies as `from_bytes` does.
#include "mlx-bind/cxx/shim.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "mlx-bind/cxx/cuda_api.h"
#include "mlx-bind/src/ffi.rs.h"

namespace mx = mlx::core;

namespace mlxr {

namespace {

// Whether page-locked staging is allowed (`staging_set_pinned`: turned off
// for comparisons).
std::atomic<bool>& pinned_allowed() {
  static std::atomic<bool> allowed{true};
  return allowed;
}

// Whether staging uses page-locked memory: the driver is there and allowed.
bool pinned_enabled() { return cuda::api().driver && pinned_allowed().load(std::memory_order_relaxed); }

constexpr size_t kGranule = size_t(2) << 20;
constexpr size_t kKeep = 8;  // free blocks the pool keeps (a 1920x1080 request stages 5 arrays)

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
  const cuda::Api& d = cuda::api();
  size_t cap = (std::max<size_t>(size, 1) + kGranule - 1) / kGranule * kGranule;
  void* p = nullptr;
  if (cuda::in_context([&] { return d.mem_host_alloc(&p, cap, cuda::kHostAllocPortable | cuda::kHostAllocDeviceMap); }) != 0 || !p) return {nullptr, 0};
  // Kernels get one pointer for host and device: true under unified addressing.
  unsigned long long dev = 0;
  if (cuda::in_context([&] { return d.host_get_device_pointer(&dev, p, 0); }) != 0 ||
      dev != reinterpret_cast<unsigned long long>(p)) {
    cuda::in_context([&] { return d.mem_free_host(p); });
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
  cuda::in_context([&] { return cuda::api().mem_free_host(b.data); });
}

}  // namespace

Staging::~Staging() {
  if (block_data) give_block({block_data, block_cap});
}

void staging_set_pinned(bool allowed) { pinned_allowed().store(allowed, std::memory_order_relaxed); }

std::unique_ptr<Staging> staging_new(size_t size) {
  auto s = std::make_unique<Staging>();
  s->size = size;
  if (pinned_enabled()) {
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
  auto* handle = new cuda::MlxBuffer{b.data, b.cap, -1};
  mx::allocator::Data data(mx::allocator::Buffer(handle), [b](mx::allocator::Buffer buf) {
    delete static_cast<cuda::MlxBuffer*>(buf.ptr());
    give_block(b);
  });
  return std::make_unique<mx::array>(std::move(data), std::move(sh), dt);
}

}  // namespace mlxr
