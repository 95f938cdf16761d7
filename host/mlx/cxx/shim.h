// The C++ side of our MLX binding: thin functions over MLX's C++ API that
// cxx can call. Each returns owned values (std::unique_ptr) and lets C++
// exceptions propagate: cxx turns them into Rust `Err(cxx::Exception)`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mlx/array.h"
#include "mlx/fast.h"
#include "rust/cxx.h"

namespace mlxr {

using mlx::core::array;
using ArrayPtr = std::unique_ptr<array>;

enum class DType : uint8_t;
enum class DeviceKind : uint8_t;
enum class UnaryOp : uint8_t;
enum class BinaryOp : uint8_t;
enum class ReduceOp : uint8_t;

// A vector of arrays, for the ops that take or return several.
struct ArrayList {
  std::vector<array> items;
};

// Tensors and string metadata, as read from or written to a safetensors file.
struct TensorMap {
  std::unordered_map<std::string, array> tensors;
  std::unordered_map<std::string, std::string> metadata;
};

// A compiled custom kernel (fast::cuda_kernel or fast::metal_kernel).
struct Kernel {
  mlx::core::fast::CustomKernelFunction fn;
  // The primitive MLX made for each distinct call signature (template
  // arguments, input ranks and types, output types, launch shape, stream).
  // MLX's kernel function regenerates and copies the whole kernel source at
  // every call; a decoding step makes ~190 such calls, so repeated
  // signatures reuse the primitive instead (primitives are immutable).
  mutable std::map<std::vector<int64_t>, std::shared_ptr<mlx::core::Primitive>> made;
};

// --- version, devices, streams, memory ---
rust::String mlx_version();
rust::String build_backend();
bool device_available(DeviceKind kind);
void set_default_device(DeviceKind kind);
DeviceKind default_device_kind();
rust::String device_info_json(DeviceKind kind);
void synchronize_default();
size_t active_memory();
size_t peak_memory();
void reset_peak();
size_t cache_memory();
void clear_memory_cache();
size_t set_memory_limit_bytes(size_t limit);
size_t set_cache_limit_bytes(size_t limit);

// --- construction and inspection ---
ArrayPtr from_bytes(rust::Slice<const uint8_t> data, rust::Slice<const int32_t> shape, DType dtype);
ArrayPtr from_f32(rust::Slice<const float> data, rust::Slice<const int32_t> shape);
ArrayPtr from_i32(rust::Slice<const int32_t> data, rust::Slice<const int32_t> shape);
ArrayPtr from_u32(rust::Slice<const uint32_t> data, rust::Slice<const int32_t> shape);
ArrayPtr scalar_f32(float v, DType dtype);
ArrayPtr scalar_i32(int32_t v);
ArrayPtr clone_array(const array& a);
rust::Vec<int32_t> shape(const array& a);
DType dtype(const array& a);
size_t nbytes(const array& a);
size_t size(const array& a);
void eval_one(const array& a);
void eval_list(const ArrayList& list);
void async_eval_list(const ArrayList& list);
void copy_to_bytes(const array& a, rust::Slice<uint8_t> out);

// --- staging buffers (staging.cc) ---
// Host bytes for one array: a page-locked block from a pool that kernels read
// in place (CUDA), or heap memory that becomes a copy (elsewhere).
struct Staging {
  size_t size = 0;
  void* block_data = nullptr;  // the pool's block, while this owns it
  size_t block_cap = 0;
  std::vector<uint8_t> heap;  // when no block could be had
  ~Staging();
};
std::unique_ptr<Staging> staging_new(size_t size);
rust::Slice<uint8_t> staging_bytes(Staging& s);
void staging_set_pinned(bool allowed);
bool staging_pinned(const Staging& s);
ArrayPtr staging_into_array(Staging& s, rust::Slice<const int32_t> shape, DType dtype);

// --- kernels and decoding steps launched outside MLX's graph (cuda_launch.cc) ---
// A kernel compiled with NVRTC for this GPU (an `extern "C"` function).
struct CudaKernel {
  void* module = nullptr;
  void* function = nullptr;
  int shared_limit = 0;  // dynamic shared memory it was set up for
  ~CudaKernel();
};
// One launch of a step: a 1-D grid of `grid` blocks of `block` threads, its
// parameters args[first_arg, first_arg + num_args) of the runner.
struct StepLaunch {
  const CudaKernel* kernel;
  uint32_t grid, block, shared;
  bool pdl;  // may start while the previous launch drains (programmatic dependent launch)
  size_t first_arg, num_args;
};
// A stream, the launches of one decoding step (replayed as a CUDA graph while
// they stay the same, if asked), and page-locked slots for tokens.
struct StepRunner {
  static constexpr size_t kSlots = 4;
  static constexpr size_t kMaxArgs = 32;  // parameters per launch
  void* stream = nullptr;
  // Where new graphs are recorded while `stream` runs the same launches.
  void* capture_stream = nullptr;
  bool use_graph = false;
  std::vector<StepLaunch> launches;
  std::vector<uint64_t> args;
  std::vector<StepLaunch> captured;
  std::vector<uint64_t> captured_args;
  void* graph = nullptr;
  void* exec = nullptr;
  uint32_t* slots = nullptr;
  void* events[kSlots] = {};
  ~StepRunner();
};
bool cuda_launch_available();
std::unique_ptr<CudaKernel> cuda_kernel_compile(rust::Str name, rust::Str source, uint32_t shared_bytes,
                                                uint32_t cluster_blocks, int32_t shared_carveout);
std::unique_ptr<StepRunner> step_runner_new(bool use_graph);
void step_runner_set_graph(StepRunner& r, bool use_graph);
void step_runner_clear(StepRunner& r);
void step_runner_add(StepRunner& r, const CudaKernel& k, uint32_t grid, uint32_t block, uint32_t shared, bool pdl,
                     rust::Slice<const uint64_t> args);
void step_runner_launch(StepRunner& r);
void step_runner_read_u32(StepRunner& r, uint64_t src, size_t slot);
uint32_t step_runner_slot(StepRunner& r, size_t slot);
void step_runner_copy(StepRunner& r, uint64_t dst, uint64_t src, size_t bytes);
void step_runner_upload(StepRunner& r, uint64_t dst, rust::Slice<const uint8_t> data);
void step_runner_download(StepRunner& r, uint64_t src, rust::Slice<uint8_t> out);
void step_runner_synchronize(StepRunner& r);
void cuda_set_toolkit_dir(rust::Str dir);
uint32_t cuda_sm_count();
// The device address of an evaluated array's first element (CUDA only).
uint64_t array_device_ptr(const array& a);

// --- shared by shim.cc and staging.cc ---
mlx::core::Dtype to_mx_dtype(DType d);
// Throws unless `n` bytes are exactly what `shape` and `dtype` need.
void check_nbytes(size_t n, const mlx::core::Shape& shape, mlx::core::Dtype dtype);

// --- lists ---
std::unique_ptr<ArrayList> list_new();
void list_push(ArrayList& list, const array& a);
size_t list_len(const ArrayList& list);
ArrayPtr list_get(const ArrayList& list, size_t i);

// --- creation ops ---
ArrayPtr zeros(rust::Slice<const int32_t> shape, DType dtype);
ArrayPtr ones(rust::Slice<const int32_t> shape, DType dtype);
ArrayPtr full(rust::Slice<const int32_t> shape, float value, DType dtype);
ArrayPtr arange(double start, double stop, double step, DType dtype);

// --- elementwise ---
ArrayPtr unary(const array& a, UnaryOp op);
ArrayPtr binary(const array& a, const array& b, BinaryOp op);
ArrayPtr where_(const array& cond, const array& a, const array& b);
ArrayPtr astype(const array& a, DType dtype);
ArrayPtr view_as(const array& a, DType dtype);
ArrayPtr clip(const array& a, const array& lo, const array& hi);

// --- reductions ---
ArrayPtr reduce(const array& a, rust::Slice<const int32_t> axes, bool keepdims, ReduceOp op);
ArrayPtr arg_reduce(const array& a, int32_t axis, bool keepdims, bool is_max);
ArrayPtr softmax(const array& a, rust::Slice<const int32_t> axes, bool precise);
ArrayPtr cumsum(const array& a, int32_t axis, bool reverse, bool inclusive);
ArrayPtr sort(const array& a, int32_t axis);
ArrayPtr argsort(const array& a, int32_t axis);
ArrayPtr argpartition(const array& a, int32_t kth, int32_t axis);
ArrayPtr topk(const array& a, int32_t k, int32_t axis);

// --- linear algebra ---
ArrayPtr matmul(const array& a, const array& b);
ArrayPtr addmm(const array& c, const array& a, const array& b, float alpha, float beta);
std::unique_ptr<ArrayList> quantize(const array& w, int32_t group_size, int32_t bits);
ArrayPtr dequantize(const array& w, const array& scales, const array& biases, int32_t group_size, int32_t bits, DType dtype);
ArrayPtr quantized_matmul(const array& x, const array& w, const array& scales, const array& biases,
                          bool transpose, int32_t group_size, int32_t bits);

// --- shape and indexing ---
ArrayPtr reshape(const array& a, rust::Slice<const int32_t> shape);
ArrayPtr transpose(const array& a, rust::Slice<const int32_t> axes);
ArrayPtr expand_dims(const array& a, int32_t axis);
ArrayPtr squeeze(const array& a, int32_t axis);
ArrayPtr broadcast_to(const array& a, rust::Slice<const int32_t> shape);
ArrayPtr repeat(const array& a, int32_t repeats, int32_t axis);
ArrayPtr contiguous(const array& a);
ArrayPtr slice(const array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop,
               rust::Slice<const int32_t> strides);
ArrayPtr slice_dynamic(const array& a, const array& start, rust::Slice<const int32_t> axes,
                       rust::Slice<const int32_t> sizes);
ArrayPtr slice_update(const array& src, const array& update, rust::Slice<const int32_t> start,
                      rust::Slice<const int32_t> stop, rust::Slice<const int32_t> strides);
ArrayPtr slice_update_dynamic(const array& src, const array& update, const array& start,
                              rust::Slice<const int32_t> axes);
ArrayPtr concatenate(const ArrayList& arrays, int32_t axis);
ArrayPtr stack(const ArrayList& arrays, int32_t axis);
std::unique_ptr<ArrayList> split_sections(const array& a, rust::Slice<const int32_t> indices, int32_t axis);
ArrayPtr take(const array& a, const array& indices, int32_t axis);
ArrayPtr take_along_axis(const array& a, const array& indices, int32_t axis);
ArrayPtr put_along_axis(const array& a, const array& indices, const array& values, int32_t axis);

// --- fast ---
ArrayPtr rms_norm(const array& x, const array& weight, float eps);
ArrayPtr layer_norm(const array& x, const array& weight, const array& bias, float eps);
ArrayPtr rope(const array& x, int32_t dims, bool traditional, float base, float scale, int32_t offset);
ArrayPtr rope_dynamic(const array& x, int32_t dims, bool traditional, float base, float scale,
                      const array& offset);
ArrayPtr rope_freqs(const array& x, int32_t dims, bool traditional, float scale, int32_t offset,
                    const array& freqs);
ArrayPtr sdpa(const array& q, const array& k, const array& v, float scale, rust::Str mask_mode);
ArrayPtr sdpa_masked(const array& q, const array& k, const array& v, float scale, const array& mask);

// --- random ---
ArrayPtr random_key(uint64_t seed);
std::unique_ptr<ArrayList> random_split(const array& key, int32_t num);
ArrayPtr random_normal(rust::Slice<const int32_t> shape, DType dtype, float loc, float scale, const array& key);
ArrayPtr random_uniform(rust::Slice<const int32_t> shape, DType dtype, float low, float high, const array& key);
ArrayPtr random_categorical(const array& logits, int32_t axis, const array& key);

// --- safetensors ---
std::unique_ptr<TensorMap> load_safetensors(rust::Str path);
std::unique_ptr<TensorMap> tensor_map_new();
rust::Vec<rust::String> tensor_map_keys(const TensorMap& map);
ArrayPtr tensor_map_get(const TensorMap& map, rust::Str name);
void tensor_map_insert(TensorMap& map, rust::Str name, const array& a);
rust::Vec<rust::String> tensor_map_metadata(const TensorMap& map);
void tensor_map_set_metadata(TensorMap& map, rust::Str key, rust::Str value);
void save_safetensors(rust::Str path, const TensorMap& map);

// --- custom kernels ---
std::unique_ptr<Kernel> cuda_kernel(rust::Str name, rust::Vec<rust::String> inputs,
                                    rust::Vec<rust::String> outputs, rust::Str source, rust::Str header,
                                    bool ensure_row_contiguous, int32_t shared_memory);
std::unique_ptr<Kernel> metal_kernel(rust::Str name, rust::Vec<rust::String> inputs,
                                     rust::Vec<rust::String> outputs, rust::Str source, rust::Str header,
                                     bool ensure_row_contiguous, bool atomic_outputs);
std::unique_ptr<ArrayList> kernel_call(const Kernel& kernel, const ArrayList& inputs,
                                       rust::Slice<const int32_t> output_shapes,
                                       rust::Slice<const int32_t> output_ranks,
                                       rust::Slice<const uint8_t> output_dtypes,
                                       rust::Slice<const int32_t> grid, rust::Slice<const int32_t> threadgroup,
                                       rust::Vec<rust::String> template_names,
                                       rust::Slice<const int32_t> template_kinds,
                                       rust::Slice<const int32_t> template_values, bool has_init,
                                       float init_value);

}  // namespace mlxr
