// The CUDA driver and NVRTC calls the binding makes itself (staging buffers,
// decoding steps launched outside MLX's graph), found at run time in the
// libcuda and libnvrtc that libmlx loads. The CPU and Metal builds have
// neither, and then `api().driver` is false. Declared here rather than taken
// from cuda.h so that every build compiles without the CUDA toolkit; the
// layouts below are cuda.h's (CUDA 12 and 13).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mlxr::cuda {

using Result = int;  // CUresult; 0 is success
using Handle = void*;

// CUlaunchAttribute: an id, padding to 8 bytes, a 64-byte value union.
struct LaunchAttribute {
  int id;
  char pad[4];
  union {
    char raw[64];
    int value;
  };
};
static_assert(sizeof(LaunchAttribute) == 72);

// CUlaunchConfig.
struct LaunchConfig {
  unsigned grid[3];
  unsigned block[3];
  unsigned shared_bytes;
  Handle stream;
  LaunchAttribute* attrs;
  unsigned num_attrs;
};
static_assert(sizeof(LaunchConfig) == 56);

// What `allocator::Buffer::ptr()` points to under MLX 0.32's CUDA backend
// (`mlx::core::cu::CudaBuffer` in mlx/backend/cuda/allocator.h, a header that
// needs the CUDA toolkit's to compile). Device -1 marks memory the host and the
// GPU both address; kernels use `data` directly. (`Buffer::raw_ptr()` would
// first move device memory to managed memory, for the host.)
struct MlxBuffer {
  void* data;
  size_t size;
  int device;
};

constexpr int kAttrProgrammaticSerialization = 6;  // CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
constexpr int kFuncMaxDynamicShared = 8;           // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
constexpr int kFuncNonPortableCluster = 14;        // CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED
constexpr int kFuncPreferredCarveout = 9;          // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT
constexpr int kCaptureRelaxed = 2;                 // CU_STREAM_CAPTURE_MODE_RELAXED
constexpr unsigned kStreamNonBlocking = 1;         // CU_STREAM_NON_BLOCKING
constexpr unsigned kEventDisableTiming = 2;        // CU_EVENT_DISABLE_TIMING
constexpr unsigned kHostAllocPortable = 1, kHostAllocDeviceMap = 2;  // CU_MEMHOSTALLOC_*

struct Api {
  // driver
  Result (*get_error_string)(Result, const char**) = nullptr;
  Result (*init)(unsigned) = nullptr;
  Result (*device_get)(int*, int) = nullptr;
  Result (*device_get_attribute)(int*, int, int) = nullptr;
  Result (*primary_ctx_retain)(Handle*, int) = nullptr;
  Result (*ctx_push)(Handle) = nullptr;
  Result (*ctx_pop)(Handle*) = nullptr;
  Result (*mem_host_alloc)(void**, size_t, unsigned) = nullptr;
  Result (*mem_free_host)(void*) = nullptr;
  Result (*host_get_device_pointer)(unsigned long long*, void*, unsigned) = nullptr;
  Result (*module_load_data)(Handle*, const void*) = nullptr;
  Result (*module_unload)(Handle) = nullptr;
  Result (*module_get_function)(Handle*, Handle, const char*) = nullptr;
  Result (*func_set_attribute)(Handle, int, int) = nullptr;
  Result (*stream_create)(Handle*, unsigned) = nullptr;
  Result (*stream_destroy)(Handle) = nullptr;
  Result (*stream_synchronize)(Handle) = nullptr;
  Result (*stream_begin_capture)(Handle, int) = nullptr;
  Result (*stream_end_capture)(Handle, Handle*) = nullptr;
  Result (*graph_instantiate)(Handle*, Handle, unsigned long long) = nullptr;
  Result (*graph_launch)(Handle, Handle) = nullptr;
  Result (*graph_destroy)(Handle) = nullptr;
  Result (*graph_exec_destroy)(Handle) = nullptr;
  Result (*launch_kernel_ex)(const LaunchConfig*, Handle, void**, void**) = nullptr;
  Result (*memcpy_dtoh_async)(void*, unsigned long long, size_t, Handle) = nullptr;
  Result (*memcpy_htod_async)(unsigned long long, const void*, size_t, Handle) = nullptr;
  Result (*memcpy_dtod_async)(unsigned long long, unsigned long long, size_t, Handle) = nullptr;
  Result (*event_create)(Handle*, unsigned) = nullptr;
  Result (*event_record)(Handle, Handle) = nullptr;
  Result (*event_synchronize)(Handle) = nullptr;
  Result (*event_destroy)(Handle) = nullptr;
  // NVRTC
  int (*nvrtc_create)(Handle*, const char*, const char*, int, const char* const*, const char* const*) = nullptr;
  int (*nvrtc_compile)(Handle, int, const char* const*) = nullptr;
  int (*nvrtc_log_size)(Handle, size_t*) = nullptr;
  int (*nvrtc_log)(Handle, char*) = nullptr;
  int (*nvrtc_cubin_size)(Handle, size_t*) = nullptr;
  int (*nvrtc_cubin)(Handle, char*) = nullptr;
  int (*nvrtc_destroy)(Handle*) = nullptr;
  const char* (*nvrtc_error_string)(int) = nullptr;

  Handle ctx = nullptr;  // the device's primary context, MLX's
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;  // streaming multiprocessors
  bool driver = false;  // every driver call above was found and the context retained
  bool nvrtc = false;   // every NVRTC call too
};

// Loaded once; `driver` false without a CUDA build or GPU.
const Api& api();

// "what: the driver's message (code)".
std::string describe(const char* what, Result rc);

// Throws std::runtime_error unless rc is success.
void check(Result rc, const char* what);

// Runs `f` (returning a Result) with MLX's context current on this thread.
template <typename F>
Result in_context(F f) {
  const Api& a = api();
  if (Result rc = a.ctx_push(a.ctx); rc != 0) return rc;
  Result rc = f();
  Handle popped = nullptr;
  a.ctx_pop(&popped);
  return rc;
}

}  // namespace mlxr::cuda
