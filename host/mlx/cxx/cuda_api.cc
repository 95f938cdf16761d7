// Finds the driver and NVRTC entry points (see cuda_api.h).
#include "mlx-bind/cxx/cuda_api.h"

#include <dlfcn.h>

#include <stdexcept>

#include "mlx/backend/cuda/cuda.h"

namespace mlxr::cuda {

namespace {

template <typename F>
bool find(F& f, const char* name) {
  f = reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
  return f != nullptr;
}

constexpr int kAttrCcMajor = 75, kAttrCcMinor = 76;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*
constexpr int kAttrSmCount = 16;                     // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT

Api load() {
  Api a;
  if (!mlx::core::cu::is_available()) return a;
  bool ok = true;
  ok &= find(a.get_error_string, "cuGetErrorString");
  ok &= find(a.init, "cuInit");
  ok &= find(a.device_get, "cuDeviceGet");
  ok &= find(a.device_get_attribute, "cuDeviceGetAttribute");
  ok &= find(a.primary_ctx_retain, "cuDevicePrimaryCtxRetain");
  ok &= find(a.ctx_push, "cuCtxPushCurrent_v2");
  ok &= find(a.ctx_pop, "cuCtxPopCurrent_v2");
  ok &= find(a.mem_host_alloc, "cuMemHostAlloc");
  ok &= find(a.mem_free_host, "cuMemFreeHost");
  ok &= find(a.host_get_device_pointer, "cuMemHostGetDevicePointer_v2");
  ok &= find(a.module_load_data, "cuModuleLoadData");
  ok &= find(a.module_unload, "cuModuleUnload");
  ok &= find(a.module_get_function, "cuModuleGetFunction");
  ok &= find(a.func_set_attribute, "cuFuncSetAttribute");
  ok &= find(a.stream_create, "cuStreamCreate");
  ok &= find(a.stream_destroy, "cuStreamDestroy_v2");
  ok &= find(a.stream_synchronize, "cuStreamSynchronize");
  ok &= find(a.stream_begin_capture, "cuStreamBeginCapture_v2");
  ok &= find(a.stream_end_capture, "cuStreamEndCapture");
  ok &= find(a.graph_instantiate, "cuGraphInstantiateWithFlags");
  ok &= find(a.graph_launch, "cuGraphLaunch");
  ok &= find(a.graph_destroy, "cuGraphDestroy");
  ok &= find(a.graph_exec_destroy, "cuGraphExecDestroy");
  ok &= find(a.launch_kernel_ex, "cuLaunchKernelEx");
  ok &= find(a.memcpy_dtoh_async, "cuMemcpyDtoHAsync_v2");
  ok &= find(a.memcpy_htod_async, "cuMemcpyHtoDAsync_v2");
  ok &= find(a.memcpy_dtod_async, "cuMemcpyDtoDAsync_v2");
  ok &= find(a.event_create, "cuEventCreate");
  ok &= find(a.event_record, "cuEventRecord");
  ok &= find(a.event_synchronize, "cuEventSynchronize");
  ok &= find(a.event_destroy, "cuEventDestroy_v2");
  int dev = 0;  // MLX's default GPU
  // cuInit is idempotent; MLX's runtime calls it only once it first uses the GPU.
  a.driver = ok && a.init(0) == 0 && a.device_get(&dev, 0) == 0 && a.primary_ctx_retain(&a.ctx, dev) == 0 &&
             a.device_get_attribute(&a.cc_major, kAttrCcMajor, dev) == 0 &&
             a.device_get_attribute(&a.cc_minor, kAttrCcMinor, dev) == 0 &&
             a.device_get_attribute(&a.sm_count, kAttrSmCount, dev) == 0;
  bool nv = true;
  nv &= find(a.nvrtc_create, "nvrtcCreateProgram");
  nv &= find(a.nvrtc_compile, "nvrtcCompileProgram");
  nv &= find(a.nvrtc_log_size, "nvrtcGetProgramLogSize");
  nv &= find(a.nvrtc_log, "nvrtcGetProgramLog");
  nv &= find(a.nvrtc_cubin_size, "nvrtcGetCUBINSize");
  nv &= find(a.nvrtc_cubin, "nvrtcGetCUBIN");
  nv &= find(a.nvrtc_destroy, "nvrtcDestroyProgram");
  nv &= find(a.nvrtc_error_string, "nvrtcGetErrorString");
  a.nvrtc = a.driver && nv;
  return a;
}

}  // namespace

const Api& api() {
  static const Api a = load();
  return a;
}

std::string describe(const char* what, Result rc) {
  const char* msg = nullptr;
  if (api().get_error_string) api().get_error_string(rc, &msg);
  return std::string(what) + ": " + (msg ? msg : "unknown CUDA error") + " (" + std::to_string(rc) + ")";
}

void check(Result rc, const char* what) {
  if (rc != 0) throw std::runtime_error(describe(what, rc));
}

}  // namespace mlxr::cuda
