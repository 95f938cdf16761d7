// Kernels compiled and launched outside MLX's graph: a decoding step is the
// same ~180 launches every token, and MLX spent ~13 µs of host time on each
// (2.5 ms for a step's 188: building its graph node, hashing the kernel
// source, recording a CUDA graph node), about as long as the GPU took to run
// the step (docs/performance.md, "The step runner: CUDA graphs and
// programmatic dependent launch"). Here a
// step is a list of launches of kernels compiled once with NVRTC, issued on a
// stream of our own (or replayed as one CUDA graph while the list stays the
// same), optionally with programmatic dependent launch so that each kernel's
// blocks start, and issue their weight loads, while the previous one drains.
// The launches read and write MLX arrays in place, by their device pointers;
// the Rust side (src/cuda.rs) holds every array it hands over for as long as
// anything queued may use it, and the caller synchronizes the step stream
// before MLX touches what the steps wrote.
#include <dlfcn.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "mlx-bind/cxx/cuda_api.h"
#include "mlx-bind/cxx/shim.h"
#include "mlx-bind/src/ffi.rs.h"
#include "mlx/backend/cuda/cuda.h"

namespace mlxr {

namespace {

namespace fs = std::filesystem;

const cuda::Api& need_driver(const char* what) {
  const cuda::Api& a = cuda::api();
  if (!a.driver) throw std::runtime_error(std::string(what) + ": needs the CUDA backend and a GPU");
  return a;
}

// The CUDA toolkit whose headers NVRTC includes where no NVIDIA wheel sits
// beside MLX's package (`cuda_set_toolkit_dir`, from the command line's
// CUDA_HOME or CUDA_PATH); empty: /usr/local/cuda.
std::string& toolkit_dir() {
  static std::string dir;
  return dir;
}

// NVRTC's include paths, found as MLX finds its own: the headers shipped
// beside libmlx (CCCL among them), then the CUDA runtime headers of the
// NVIDIA wheel beside MLX's package, else of the toolkit directory.
const std::vector<std::string>& include_args() {
  static const std::vector<std::string> args = [] {
    std::vector<std::string> out;
    auto add = [&](const fs::path& p) {
      std::error_code ec;
      if (!p.empty() && fs::is_directory(p, ec)) out.push_back("--include-path=" + p.string());
    };
    Dl_info info{};
    fs::path root;  // the directory holding libmlx's lib/ and include/
    if (dladdr(reinterpret_cast<void*>(&mlx::core::cu::is_available), &info) && info.dli_fname)
      root = fs::path(info.dli_fname).parent_path().parent_path();
    if (!root.empty()) {
      add(root / "include");
      add(root / "include" / "cccl");
    }
    fs::path cuda = root.empty() ? fs::path() : root.parent_path() / "nvidia" / "cu13" / "include";
    std::error_code ec;
    if (cuda.empty() || !fs::is_directory(cuda, ec))
      cuda = fs::path(toolkit_dir().empty() ? "/usr/local/cuda" : toolkit_dir()) / "include";
    add(cuda);
    add(cuda / "cccl");
    return out;
  }();
  return args;
}

std::string nvrtc_log(const cuda::Api& a, cuda::Handle prog) {
  size_t n = 0;
  if (a.nvrtc_log_size(prog, &n) != 0 || n == 0) return "";
  std::string log(n, '\0');
  a.nvrtc_log(prog, log.data());
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  return log;
}

// The compiled image of `source` for this GPU (SASS, sm_XY, "a" from Hopper on,
// as MLX compiles its own kernels).
std::string compile_cubin(const cuda::Api& a, const std::string& name, const std::string& source) {
  cuda::Handle prog = nullptr;
  std::string file = name + ".cu";
  if (int rc = a.nvrtc_create(&prog, source.c_str(), file.c_str(), 0, nullptr, nullptr); rc != 0)
    throw std::runtime_error("NVRTC: creating " + name + ": " + a.nvrtc_error_string(rc));
  std::string arch = "--gpu-architecture=sm_" + std::to_string(a.cc_major) + std::to_string(a.cc_minor) +
                     (a.cc_major >= 9 ? "a" : "");
  std::vector<const char*> opts = {"--device-as-default-execution-space", "-std=c++17", arch.c_str()};
  for (const auto& inc : include_args()) opts.push_back(inc.c_str());
  int rc = a.nvrtc_compile(prog, static_cast<int>(opts.size()), opts.data());
  std::string log = nvrtc_log(a, prog);
  std::string cubin;
  if (rc == 0) {
    size_t n = 0;
    rc = a.nvrtc_cubin_size(prog, &n);
    if (rc == 0) {
      cubin.resize(n);
      rc = a.nvrtc_cubin(prog, cubin.data());
    }
  }
  a.nvrtc_destroy(&prog);
  if (rc != 0)
    throw std::runtime_error("NVRTC: compiling " + name + " for " + arch.substr(20) + ": " +
                             a.nvrtc_error_string(rc) + (log.empty() ? "" : "\n" + log));
  return cubin;
}

bool same(const StepLaunch& x, const StepLaunch& y) {
  return x.kernel == y.kernel && x.grid == y.grid && x.block == y.block && x.shared == y.shared && x.pdl == y.pdl &&
         x.first_arg == y.first_arg && x.num_args == y.num_args;
}

cuda::Result launch_one(const cuda::Api& a, StepRunner& r, const StepLaunch& l, cuda::Handle stream) {
  cuda::LaunchAttribute attr{};
  attr.id = cuda::kAttrProgrammaticSerialization;
  attr.value = 1;
  cuda::LaunchConfig cfg{};
  cfg.grid[0] = l.grid;
  cfg.grid[1] = cfg.grid[2] = 1;
  cfg.block[0] = l.block;
  cfg.block[1] = cfg.block[2] = 1;
  cfg.shared_bytes = l.shared;
  cfg.stream = stream;
  cfg.attrs = l.pdl ? &attr : nullptr;
  cfg.num_attrs = l.pdl ? 1 : 0;
  // Every parameter is passed as 8 bytes; 4-byte ones read the low half
  // (x86-64 and aarch64 are little-endian).
  void* params[StepRunner::kMaxArgs];
  for (size_t i = 0; i < l.num_args; ++i) params[i] = &r.args[l.first_arg + i];
  return a.launch_kernel_ex(&cfg, l.kernel->function, params, nullptr);
}

void drop_graph(const cuda::Api& a, StepRunner& r) {
  if (r.exec) a.graph_exec_destroy(r.exec);
  if (r.graph) a.graph_destroy(r.graph);
  r.exec = r.graph = nullptr;
  r.captured.clear();
  r.captured_args.clear();
}

// Records the step's launches into a CUDA graph and instantiates it, on the
// capture stream: nothing runs there, so the host may do this while `stream`
// runs the same launches.
void capture(const cuda::Api& a, StepRunner& r) {
  drop_graph(a, r);
  cuda::check(a.stream_begin_capture(r.capture_stream, cuda::kCaptureRelaxed), "capturing a decoding step");
  cuda::Result failed = 0;
  for (const auto& l : r.launches)
    if ((failed = launch_one(a, r, l, r.capture_stream)) != 0) break;
  cuda::Handle graph = nullptr;
  cuda::Result ended = a.stream_end_capture(r.capture_stream, &graph);
  r.graph = graph;
  if (failed != 0 || ended != 0) {
    drop_graph(a, r);
    cuda::check(failed ? failed : ended, failed ? "recording a launch into the step's graph" : "ending the capture");
  }
  if (cuda::Result rc = a.graph_instantiate(&r.exec, r.graph, 0); rc != 0) {
    drop_graph(a, r);
    cuda::check(rc, "instantiating the decoding step's graph");
  }
  r.captured = r.launches;
  r.captured_args = r.args;
}

bool matches_capture(const StepRunner& r) {
  if (!r.exec || r.captured.size() != r.launches.size() || r.captured_args != r.args) return false;
  for (size_t i = 0; i < r.launches.size(); ++i)
    if (!same(r.launches[i], r.captured[i])) return false;
  return true;
}

template <typename F>
void in_context(const char* what, F f) {
  cuda::check(cuda::in_context([&]() -> cuda::Result {
                try {
                  f();
                  return 0;
                } catch (...) {
                  cuda::Handle popped = nullptr;
                  cuda::api().ctx_pop(&popped);
                  throw;
                }
              }),
              what);
}

}  // namespace

CudaKernel::~CudaKernel() {
  if (module) cuda::in_context([&] { return cuda::api().module_unload(module); });
}

bool cuda_launch_available() { return cuda::api().nvrtc; }

std::unique_ptr<CudaKernel> cuda_kernel_compile(rust::Str name, rust::Str source, uint32_t shared_bytes,
                                                uint32_t cluster_blocks, int32_t shared_carveout) {
  const cuda::Api& a = need_driver("compiling a CUDA kernel");
  if (!a.nvrtc) throw std::runtime_error("compiling a CUDA kernel: NVRTC not found (libmlx loads libnvrtc)");
  std::string nm(name);
  std::string cubin = compile_cubin(a, nm, std::string(source));
  auto k = std::make_unique<CudaKernel>();
  cuda::check(cuda::in_context([&] { return a.module_load_data(&k->module, cubin.data()); }),
              ("loading kernel " + nm).c_str());
  cuda::check(cuda::in_context([&] { return a.module_get_function(&k->function, k->module, nm.c_str()); }),
              ("finding kernel " + nm).c_str());
  // Past 48 KB of dynamic shared memory a kernel must ask for it.
  if (shared_bytes > 48 * 1024)
    cuda::check(cuda::in_context([&] {
                  return a.func_set_attribute(k->function, cuda::kFuncMaxDynamicShared, static_cast<int>(shared_bytes));
                }),
                ("raising the shared memory of " + nm).c_str());
  // Past 8 blocks (the portable size) a cluster must be allowed.
  if (cluster_blocks > 8)
    cuda::check(cuda::in_context([&] { return a.func_set_attribute(k->function, cuda::kFuncNonPortableCluster, 1); }),
                ("allowing clusters of " + std::to_string(cluster_blocks) + " blocks for " + nm).c_str());
  // The share of L1 preferred as shared memory, in percent (negative: the driver's).
  if (shared_carveout >= 0)
    cuda::check(cuda::in_context([&] {
                  return a.func_set_attribute(k->function, cuda::kFuncPreferredCarveout, shared_carveout);
                }),
                ("setting the shared-memory carveout of " + nm).c_str());
  k->shared_limit = shared_bytes;
  return k;
}

StepRunner::~StepRunner() {
  const cuda::Api& a = cuda::api();
  if (!a.driver) return;
  cuda::in_context([&] {
    if (stream) a.stream_synchronize(stream);
    drop_graph(a, *this);
    for (auto& e : events)
      if (e) a.event_destroy(e);
    if (stream) a.stream_destroy(stream);
    if (capture_stream) a.stream_destroy(capture_stream);
    if (slots) a.mem_free_host(slots);
    return 0;
  });
}

std::unique_ptr<StepRunner> step_runner_new(bool use_graph) {
  const cuda::Api& a = need_driver("a decoding step runner");
  auto r = std::make_unique<StepRunner>();
  r->use_graph = use_graph;
  in_context("creating the step runner", [&] {
    cuda::check(a.stream_create(&r->stream, cuda::kStreamNonBlocking), "creating a stream");
    cuda::check(a.stream_create(&r->capture_stream, cuda::kStreamNonBlocking), "creating a capture stream");
    for (auto& e : r->events) cuda::check(a.event_create(&e, cuda::kEventDisableTiming), "creating an event");
    void* p = nullptr;
    cuda::check(a.mem_host_alloc(&p, sizeof(uint32_t) * StepRunner::kSlots, cuda::kHostAllocPortable),
                "allocating page-locked token slots");
    r->slots = static_cast<uint32_t*>(p);
  });
  return r;
}

void step_runner_set_graph(StepRunner& r, bool use_graph) {
  if (use_graph == r.use_graph) return;
  in_context("switching the step runner's mode", [&] {
    cuda::check(cuda::api().stream_synchronize(r.stream), "waiting for the decoding steps");
    drop_graph(cuda::api(), r);
  });
  r.use_graph = use_graph;
}

void step_runner_clear(StepRunner& r) {
  r.launches.clear();
  r.args.clear();
}

void step_runner_add(StepRunner& r, const CudaKernel& k, uint32_t grid, uint32_t block, uint32_t shared, bool pdl,
                     rust::Slice<const uint64_t> args) {
  if (shared > static_cast<uint32_t>(std::max(k.shared_limit, 48 * 1024)))
    throw std::runtime_error("step launch asks " + std::to_string(shared) + " bytes of shared memory, the kernel " +
                             std::to_string(k.shared_limit));
  if (args.size() > StepRunner::kMaxArgs)
    throw std::runtime_error("step launch with " + std::to_string(args.size()) + " parameters, at most " +
                             std::to_string(StepRunner::kMaxArgs));
  r.launches.push_back(StepLaunch{&k, grid, block, shared, pdl, r.args.size(), args.size()});
  r.args.insert(r.args.end(), args.begin(), args.end());
}

void step_runner_launch(StepRunner& r) {
  const cuda::Api& a = need_driver("launching a decoding step");
  in_context("launching a decoding step", [&] {
    if (r.use_graph && matches_capture(r)) {
      cuda::check(a.graph_launch(r.exec, r.stream), "launching the decoding step's graph");
      return;
    }
    // A step unlike the recorded one (a request's first: its caches are new
    // buffers) is launched as it is, so that the GPU starts at once, and
    // recorded for the next steps while it runs (the H100's first
    // inter-token gap fell from 3.3-4.3 to 2.4-3.0 ms: docs/experiments.md,
    // "A request's first step and the cache's room for its output").
    for (const auto& l : r.launches) cuda::check(launch_one(a, r, l, r.stream), "launching a step kernel");
    if (r.use_graph) capture(a, r);
  });
}

void step_runner_read_u32(StepRunner& r, uint64_t src, size_t slot) {
  const cuda::Api& a = need_driver("reading a token");
  if (slot >= StepRunner::kSlots) throw std::runtime_error("token slot out of range");
  in_context("queueing a token's copy to the host", [&] {
    cuda::check(a.memcpy_dtoh_async(r.slots + slot, src, sizeof(uint32_t), r.stream), "copying a token");
    cuda::check(a.event_record(r.events[slot], r.stream), "recording the token's event");
  });
}

uint32_t step_runner_slot(StepRunner& r, size_t slot) {
  const cuda::Api& a = need_driver("reading a token");
  if (slot >= StepRunner::kSlots) throw std::runtime_error("token slot out of range");
  in_context("waiting for a token", [&] { cuda::check(a.event_synchronize(r.events[slot]), "waiting for a step"); });
  return static_cast<volatile uint32_t*>(r.slots)[slot];
}

void step_runner_copy(StepRunner& r, uint64_t dst, uint64_t src, size_t bytes) {
  const cuda::Api& a = need_driver("copying on the step stream");
  in_context("copying on the step stream",
             [&] { cuda::check(a.memcpy_dtod_async(dst, src, bytes, r.stream), "copying device memory"); });
}

void step_runner_upload(StepRunner& r, uint64_t dst, rust::Slice<const uint8_t> data) {
  const cuda::Api& a = need_driver("uploading on the step stream");
  // From pageable memory the driver stages the bytes before returning, so
  // the slice need not outlive the call.
  in_context("uploading on the step stream", [&] {
    cuda::check(a.memcpy_htod_async(dst, data.data(), data.size(), r.stream), "copying host bytes to the device");
  });
}

void step_runner_download(StepRunner& r, uint64_t src, rust::Slice<uint8_t> out) {
  const cuda::Api& a = need_driver("downloading on the step stream");
  in_context("downloading on the step stream", [&] {
    cuda::check(a.memcpy_dtoh_async(out.data(), src, out.size(), r.stream), "copying device bytes to the host");
    cuda::check(a.stream_synchronize(r.stream), "waiting for the copy to the host");
  });
}

void step_runner_synchronize(StepRunner& r) {
  const cuda::Api& a = need_driver("synchronizing the step stream");
  in_context("synchronizing the step stream",
             [&] { cuda::check(a.stream_synchronize(r.stream), "waiting for the decoding steps"); });
}

void cuda_set_toolkit_dir(rust::Str dir) { toolkit_dir() = std::string(dir); }

uint32_t cuda_sm_count() { return cuda::api().driver ? static_cast<uint32_t>(cuda::api().sm_count) : 0; }

uint64_t array_device_ptr(const array& a) {
  need_driver("an array's device pointer");
  if (!a.is_available()) throw std::runtime_error("an array's device pointer: the array is not evaluated");
  const auto* b = static_cast<const cuda::MlxBuffer*>(a.buffer().ptr());
  if (!b || !b->data) throw std::runtime_error("an array's device pointer: the array has no buffer");
  return reinterpret_cast<uint64_t>(b->data) + static_cast<uint64_t>(a.offset());
}

}  // namespace mlxr
