// Implementation of the shim declared in shim.h. Kept mechanical on purpose:
// convert arguments, call MLX, wrap the result. Any policy lives in Rust.
#include "mlx-bind/cxx/shim.h"

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "mlx-bind/src/ffi.rs.h"
#include "mlx/backend/cuda/cuda.h"
#include "mlx/backend/gpu/device_info.h"
#include "mlx/backend/metal/metal.h"
#include "mlx/device.h"
#include "mlx/io.h"
#include "mlx/memory.h"
#include "mlx/ops.h"
#include "mlx/random.h"
#include "mlx/stream.h"
#include "mlx/transforms.h"
#include "mlx/version.h"

namespace mx = mlx::core;

namespace mlxr {

namespace {

mx::Dtype to_mx(DType d) {
  switch (d) {
    case DType::Bool: return mx::bool_;
    case DType::U8: return mx::uint8;
    case DType::U16: return mx::uint16;
    case DType::U32: return mx::uint32;
    case DType::U64: return mx::uint64;
    case DType::I8: return mx::int8;
    case DType::I16: return mx::int16;
    case DType::I32: return mx::int32;
    case DType::I64: return mx::int64;
    case DType::F16: return mx::float16;
    case DType::F32: return mx::float32;
    case DType::F64: return mx::float64;
    case DType::BF16: return mx::bfloat16;
    case DType::C64: return mx::complex64;
  }
  throw std::invalid_argument("unknown dtype code");
}

DType from_mx(mx::Dtype d) {
  switch (d.val()) {
    case mx::Dtype::Val::bool_: return DType::Bool;
    case mx::Dtype::Val::uint8: return DType::U8;
    case mx::Dtype::Val::uint16: return DType::U16;
    case mx::Dtype::Val::uint32: return DType::U32;
    case mx::Dtype::Val::uint64: return DType::U64;
    case mx::Dtype::Val::int8: return DType::I8;
    case mx::Dtype::Val::int16: return DType::I16;
    case mx::Dtype::Val::int32: return DType::I32;
    case mx::Dtype::Val::int64: return DType::I64;
    case mx::Dtype::Val::float16: return DType::F16;
    case mx::Dtype::Val::float32: return DType::F32;
    case mx::Dtype::Val::float64: return DType::F64;
    case mx::Dtype::Val::bfloat16: return DType::BF16;
    case mx::Dtype::Val::complex64: return DType::C64;
  }
  throw std::invalid_argument("unknown MLX dtype");
}

mx::Device to_device(DeviceKind k) {
  return k == DeviceKind::Gpu ? mx::Device(mx::Device::gpu) : mx::Device(mx::Device::cpu);
}

mx::Shape to_shape(rust::Slice<const int32_t> s) { return mx::Shape(s.begin(), s.end()); }

std::vector<int> to_ints(rust::Slice<const int32_t> s) { return std::vector<int>(s.begin(), s.end()); }

ArrayPtr own(mx::array a) { return std::make_unique<mx::array>(std::move(a)); }

std::unique_ptr<ArrayList> own_list(std::vector<mx::array> v) {
  auto out = std::make_unique<ArrayList>();
  out->items = std::move(v);
  return out;
}

}  // namespace

void check_nbytes(size_t n, const mx::Shape& shape, mx::Dtype dtype) {
  size_t expected = dtype.size();
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape");
    expected *= static_cast<size_t>(d);
  }
  if (expected != n) {
    std::ostringstream msg;
    msg << "data holds " << n << " bytes but the shape and dtype need " << expected;
    throw std::invalid_argument(msg.str());
  }
}

namespace {

// Builds an array from a copy of `n` bytes; MLX frees the copy with the array.
mx::array copy_in(const void* data, size_t n, mx::Shape shape, mx::Dtype dtype) {
  check_nbytes(n, shape, dtype);
  void* buf = std::malloc(n == 0 ? 1 : n);
  if (buf == nullptr) throw std::bad_alloc();
  if (n > 0) std::memcpy(buf, data, n);
  return mx::array(buf, std::move(shape), dtype, [](void* p) { std::free(p); });
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

// --- version, devices, streams, memory ---

rust::String mlx_version() { return rust::String(mx::version()); }

rust::String build_backend() {
  if (mx::metal::is_available()) return "metal";
  if (mx::cu::is_available()) return "cuda";
  return "cpu";
}

bool device_available(DeviceKind kind) { return mx::is_available(to_device(kind)); }

void set_default_device(DeviceKind kind) { mx::set_default_device(to_device(kind)); }

DeviceKind default_device_kind() {
  return mx::default_device().type == mx::Device::gpu ? DeviceKind::Gpu : DeviceKind::Cpu;
}

rust::String device_info_json(DeviceKind kind) {
  const auto& info = mx::device_info(to_device(kind));
  std::ostringstream out;
  out << "{";
  bool first = true;
  for (const auto& [key, value] : info) {
    if (!first) out << ",";
    first = false;
    out << "\"" << json_escape(key) << "\":";
    if (std::holds_alternative<std::string>(value)) {
      out << "\"" << json_escape(std::get<std::string>(value)) << "\"";
    } else {
      out << std::get<size_t>(value);
    }
  }
  out << "}";
  return rust::String(out.str());
}

void synchronize_default() { mx::synchronize(); }
size_t active_memory() { return mx::get_active_memory(); }
size_t peak_memory() { return mx::get_peak_memory(); }
void reset_peak() { mx::reset_peak_memory(); }
size_t cache_memory() { return mx::get_cache_memory(); }
void clear_memory_cache() { mx::clear_cache(); }
size_t set_memory_limit_bytes(size_t limit) { return mx::set_memory_limit(limit); }
size_t set_cache_limit_bytes(size_t limit) { return mx::set_cache_limit(limit); }

// --- construction and inspection ---

mx::Dtype to_mx_dtype(DType d) { return to_mx(d); }

ArrayPtr from_bytes(rust::Slice<const uint8_t> data, rust::Slice<const int32_t> shape, DType dtype) {
  return own(copy_in(data.data(), data.size(), to_shape(shape), to_mx(dtype)));
}
ArrayPtr from_f32(rust::Slice<const float> data, rust::Slice<const int32_t> shape) {
  return own(copy_in(data.data(), data.size() * 4, to_shape(shape), mx::float32));
}
ArrayPtr from_i32(rust::Slice<const int32_t> data, rust::Slice<const int32_t> shape) {
  return own(copy_in(data.data(), data.size() * 4, to_shape(shape), mx::int32));
}
ArrayPtr from_u32(rust::Slice<const uint32_t> data, rust::Slice<const int32_t> shape) {
  return own(copy_in(data.data(), data.size() * 4, to_shape(shape), mx::uint32));
}
ArrayPtr scalar_f32(float v, DType dtype) { return own(mx::array(v, to_mx(dtype))); }
ArrayPtr scalar_i32(int32_t v) { return own(mx::array(v, mx::int32)); }
ArrayPtr clone_array(const array& a) { return std::make_unique<mx::array>(a); }

rust::Vec<int32_t> shape(const array& a) {
  rust::Vec<int32_t> out;
  for (auto d : a.shape()) out.push_back(d);
  return out;
}
DType dtype(const array& a) { return from_mx(a.dtype()); }
size_t nbytes(const array& a) { return a.nbytes(); }
size_t size(const array& a) { return a.size(); }
void eval_one(const array& a) { mx::eval(a); }
void eval_list(const ArrayList& list) { mx::eval(list.items); }
void async_eval_list(const ArrayList& list) { mx::async_eval(list.items); }

void copy_to_bytes(const array& a, rust::Slice<uint8_t> out) {
  mx::array c = a;
  mx::eval(c);
  if (!c.flags().row_contiguous) {
    c = mx::contiguous(c);
    mx::eval(c);
  }
  if (out.size() != c.nbytes()) {
    std::ostringstream msg;
    msg << "output buffer holds " << out.size() << " bytes, array has " << c.nbytes();
    throw std::invalid_argument(msg.str());
  }
  if (c.nbytes() > 0) std::memcpy(out.data(), c.data<uint8_t>(), c.nbytes());
}

// --- lists ---

std::unique_ptr<ArrayList> list_new() { return std::make_unique<ArrayList>(); }
void list_push(ArrayList& list, const array& a) { list.items.push_back(a); }
size_t list_len(const ArrayList& list) { return list.items.size(); }
ArrayPtr list_get(const ArrayList& list, size_t i) { return own(list.items.at(i)); }

// --- creation ---

ArrayPtr zeros(rust::Slice<const int32_t> shape, DType dtype) { return own(mx::zeros(to_shape(shape), to_mx(dtype))); }
ArrayPtr ones(rust::Slice<const int32_t> shape, DType dtype) { return own(mx::ones(to_shape(shape), to_mx(dtype))); }
ArrayPtr full(rust::Slice<const int32_t> shape, float value, DType dtype) {
  return own(mx::full(to_shape(shape), mx::array(value), to_mx(dtype)));
}
ArrayPtr arange(double start, double stop, double step, DType dtype) {
  return own(mx::arange(start, stop, step, to_mx(dtype)));
}

// --- elementwise ---

ArrayPtr unary(const array& a, UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return own(mx::negative(a));
    case UnaryOp::Exp: return own(mx::exp(a));
    case UnaryOp::Log: return own(mx::log(a));
    case UnaryOp::Sqrt: return own(mx::sqrt(a));
    case UnaryOp::Rsqrt: return own(mx::rsqrt(a));
    case UnaryOp::Sin: return own(mx::sin(a));
    case UnaryOp::Cos: return own(mx::cos(a));
    case UnaryOp::Tanh: return own(mx::tanh(a));
    case UnaryOp::Sigmoid: return own(mx::sigmoid(a));
    case UnaryOp::Abs: return own(mx::abs(a));
    case UnaryOp::Square: return own(mx::square(a));
    case UnaryOp::Erf: return own(mx::erf(a));
    case UnaryOp::Floor: return own(mx::floor(a));
    case UnaryOp::Ceil: return own(mx::ceil(a));
    case UnaryOp::Round: return own(mx::round(a, 0));
    case UnaryOp::Reciprocal: return own(mx::reciprocal(a));
    case UnaryOp::LogicalNot: return own(mx::logical_not(a));
    case UnaryOp::Log1p: return own(mx::log1p(a));
    case UnaryOp::Sign: return own(mx::sign(a));
    case UnaryOp::IsNan: return own(mx::isnan(a));
  }
  throw std::invalid_argument("unknown unary op");
}

ArrayPtr binary(const array& a, const array& b, BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return own(mx::add(a, b));
    case BinaryOp::Sub: return own(mx::subtract(a, b));
    case BinaryOp::Mul: return own(mx::multiply(a, b));
    case BinaryOp::Div: return own(mx::divide(a, b));
    case BinaryOp::Maximum: return own(mx::maximum(a, b));
    case BinaryOp::Minimum: return own(mx::minimum(a, b));
    case BinaryOp::Power: return own(mx::power(a, b));
    case BinaryOp::Equal: return own(mx::equal(a, b));
    case BinaryOp::NotEqual: return own(mx::not_equal(a, b));
    case BinaryOp::Less: return own(mx::less(a, b));
    case BinaryOp::LessEqual: return own(mx::less_equal(a, b));
    case BinaryOp::Greater: return own(mx::greater(a, b));
    case BinaryOp::GreaterEqual: return own(mx::greater_equal(a, b));
    case BinaryOp::LogicalAnd: return own(mx::logical_and(a, b));
    case BinaryOp::LogicalOr: return own(mx::logical_or(a, b));
    case BinaryOp::Remainder: return own(mx::remainder(a, b));
  }
  throw std::invalid_argument("unknown binary op");
}

ArrayPtr where_(const array& cond, const array& a, const array& b) { return own(mx::where(cond, a, b)); }
ArrayPtr astype(const array& a, DType dtype) { return own(mx::astype(a, to_mx(dtype))); }
ArrayPtr view_as(const array& a, DType dtype) { return own(mx::view(a, to_mx(dtype))); }
ArrayPtr clip(const array& a, const array& lo, const array& hi) { return own(mx::clip(a, lo, hi)); }

// --- reductions ---

ArrayPtr reduce(const array& a, rust::Slice<const int32_t> axes_in, bool keepdims, ReduceOp op) {
  auto axes = to_ints(axes_in);
  switch (op) {
    case ReduceOp::Sum: return own(mx::sum(a, axes, keepdims));
    case ReduceOp::Mean: return own(mx::mean(a, axes, keepdims));
    case ReduceOp::Max: return own(mx::max(a, axes, keepdims));
    case ReduceOp::Min: return own(mx::min(a, axes, keepdims));
    case ReduceOp::Prod: return own(mx::prod(a, axes, keepdims));
    case ReduceOp::LogSumExp: return own(mx::logsumexp(a, axes, keepdims));
    case ReduceOp::All: return own(mx::all(a, axes, keepdims));
    case ReduceOp::Any: return own(mx::any(a, axes, keepdims));
  }
  throw std::invalid_argument("unknown reduction");
}

ArrayPtr arg_reduce(const array& a, int32_t axis, bool keepdims, bool is_max) {
  return own(is_max ? mx::argmax(a, axis, keepdims) : mx::argmin(a, axis, keepdims));
}
ArrayPtr softmax(const array& a, rust::Slice<const int32_t> axes, bool precise) {
  return own(mx::softmax(a, to_ints(axes), precise));
}
ArrayPtr cumsum(const array& a, int32_t axis, bool reverse, bool inclusive) {
  return own(mx::cumsum(a, axis, reverse, inclusive));
}
ArrayPtr sort(const array& a, int32_t axis) { return own(mx::sort(a, axis)); }
ArrayPtr argsort(const array& a, int32_t axis) { return own(mx::argsort(a, axis)); }
ArrayPtr argpartition(const array& a, int32_t kth, int32_t axis) { return own(mx::argpartition(a, kth, axis)); }
ArrayPtr topk(const array& a, int32_t k, int32_t axis) { return own(mx::topk(a, k, axis)); }

// --- linear algebra ---

ArrayPtr matmul(const array& a, const array& b) { return own(mx::matmul(a, b)); }
ArrayPtr addmm(const array& c, const array& a, const array& b, float alpha, float beta) {
  return own(mx::addmm(c, a, b, alpha, beta));
}
std::unique_ptr<ArrayList> quantize(const array& w, int32_t group_size, int32_t bits) {
  return own_list(mx::quantize(w, group_size, bits, "affine"));
}
ArrayPtr dequantize(const array& w, const array& scales, const array& biases, int32_t group_size, int32_t bits,
                    DType dtype) {
  return own(mx::dequantize(w, scales, biases, group_size, bits, "affine", std::nullopt, to_mx(dtype)));
}
ArrayPtr quantized_matmul(const array& x, const array& w, const array& scales, const array& biases,
                          bool transpose, int32_t group_size, int32_t bits) {
  return own(mx::quantized_matmul(x, w, scales, biases, transpose, group_size, bits, "affine"));
}

// --- shape and indexing ---

ArrayPtr reshape(const array& a, rust::Slice<const int32_t> shape) { return own(mx::reshape(a, to_shape(shape))); }
ArrayPtr transpose(const array& a, rust::Slice<const int32_t> axes) { return own(mx::transpose(a, to_ints(axes))); }
ArrayPtr expand_dims(const array& a, int32_t axis) { return own(mx::expand_dims(a, axis)); }
ArrayPtr squeeze(const array& a, int32_t axis) { return own(mx::squeeze(a, axis)); }
ArrayPtr broadcast_to(const array& a, rust::Slice<const int32_t> shape) {
  return own(mx::broadcast_to(a, to_shape(shape)));
}
ArrayPtr repeat(const array& a, int32_t repeats, int32_t axis) { return own(mx::repeat(a, repeats, axis)); }
ArrayPtr contiguous(const array& a) { return own(mx::contiguous(a)); }
ArrayPtr slice(const array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop,
               rust::Slice<const int32_t> strides) {
  return own(mx::slice(a, to_shape(start), to_shape(stop), to_shape(strides)));
}
ArrayPtr slice_dynamic(const array& a, const array& start, rust::Slice<const int32_t> axes,
                       rust::Slice<const int32_t> sizes) {
  return own(mx::slice(a, start, to_ints(axes), to_shape(sizes)));
}
ArrayPtr slice_update(const array& src, const array& update, rust::Slice<const int32_t> start,
                      rust::Slice<const int32_t> stop, rust::Slice<const int32_t> strides) {
  return own(mx::slice_update(src, update, to_shape(start), to_shape(stop), to_shape(strides)));
}
ArrayPtr slice_update_dynamic(const array& src, const array& update, const array& start,
                              rust::Slice<const int32_t> axes) {
  return own(mx::slice_update(src, update, start, to_ints(axes)));
}
ArrayPtr concatenate(const ArrayList& arrays, int32_t axis) { return own(mx::concatenate(arrays.items, axis)); }
ArrayPtr stack(const ArrayList& arrays, int32_t axis) { return own(mx::stack(arrays.items, axis)); }
std::unique_ptr<ArrayList> split_sections(const array& a, rust::Slice<const int32_t> indices, int32_t axis) {
  return own_list(mx::split(a, to_shape(indices), axis));
}
ArrayPtr take(const array& a, const array& indices, int32_t axis) { return own(mx::take(a, indices, axis)); }
ArrayPtr take_along_axis(const array& a, const array& indices, int32_t axis) {
  return own(mx::take_along_axis(a, indices, axis));
}
ArrayPtr put_along_axis(const array& a, const array& indices, const array& values, int32_t axis) {
  return own(mx::put_along_axis(a, indices, values, axis));
}

// --- fast ---

ArrayPtr rms_norm(const array& x, const array& weight, float eps) {
  return own(mx::fast::rms_norm(x, weight, eps));
}
ArrayPtr layer_norm(const array& x, const array& weight, const array& bias, float eps) {
  return own(mx::fast::layer_norm(x, weight, bias, eps));
}
ArrayPtr rope(const array& x, int32_t dims, bool traditional, float base, float scale, int32_t offset) {
  return own(mx::fast::rope(x, dims, traditional, base, scale, offset));
}
ArrayPtr rope_dynamic(const array& x, int32_t dims, bool traditional, float base, float scale,
                      const array& offset) {
  return own(mx::fast::rope(x, dims, traditional, base, scale, offset));
}
ArrayPtr rope_freqs(const array& x, int32_t dims, bool traditional, float scale, int32_t offset,
                    const array& freqs) {
  return own(mx::fast::rope(x, dims, traditional, std::nullopt, scale, offset, freqs));
}
ArrayPtr sdpa(const array& q, const array& k, const array& v, float scale, rust::Str mask_mode) {
  return own(mx::fast::scaled_dot_product_attention(q, k, v, scale, std::string(mask_mode)));
}
ArrayPtr sdpa_masked(const array& q, const array& k, const array& v, float scale, const array& mask) {
  return own(mx::fast::scaled_dot_product_attention(q, k, v, scale, "array", mask));
}

// --- random ---

ArrayPtr random_key(uint64_t seed) { return own(mx::random::key(seed)); }
std::unique_ptr<ArrayList> random_split(const array& key, int32_t num) {
  auto keys = mx::random::split(key, num);
  std::vector<mx::array> out;
  for (int i = 0; i < num; ++i) out.push_back(mx::take(keys, i, 0));
  return own_list(std::move(out));
}
ArrayPtr random_normal(rust::Slice<const int32_t> shape, DType dtype, float loc, float scale, const array& key) {
  return own(mx::random::normal(to_shape(shape), to_mx(dtype), loc, scale, key));
}
ArrayPtr random_uniform(rust::Slice<const int32_t> shape, DType dtype, float low, float high, const array& key) {
  return own(mx::random::uniform(mx::array(low), mx::array(high), to_shape(shape), to_mx(dtype), key));
}
ArrayPtr random_categorical(const array& logits, int32_t axis, const array& key) {
  return own(mx::random::categorical(logits, axis, key));
}

// --- safetensors ---

std::unique_ptr<TensorMap> load_safetensors(rust::Str path) {
  auto [tensors, metadata] = mx::load_safetensors(std::string(path));
  auto out = std::make_unique<TensorMap>();
  out->tensors = std::move(tensors);
  out->metadata = std::move(metadata);
  return out;
}
std::unique_ptr<TensorMap> tensor_map_new() { return std::make_unique<TensorMap>(); }
rust::Vec<rust::String> tensor_map_keys(const TensorMap& map) {
  rust::Vec<rust::String> out;
  for (const auto& kv : map.tensors) out.push_back(rust::String(kv.first));
  return out;
}
ArrayPtr tensor_map_get(const TensorMap& map, rust::Str name) {
  auto it = map.tensors.find(std::string(name));
  if (it == map.tensors.end()) throw std::out_of_range("no tensor named " + std::string(name));
  return own(it->second);
}
void tensor_map_insert(TensorMap& map, rust::Str name, const array& a) {
  map.tensors.insert_or_assign(std::string(name), a);
}
rust::Vec<rust::String> tensor_map_metadata(const TensorMap& map) {
  rust::Vec<rust::String> out;
  for (const auto& kv : map.metadata) {
    out.push_back(rust::String(kv.first));
    out.push_back(rust::String(kv.second));
  }
  return out;
}
void tensor_map_set_metadata(TensorMap& map, rust::Str key, rust::Str value) {
  map.metadata.insert_or_assign(std::string(key), std::string(value));
}
void save_safetensors(rust::Str path, const TensorMap& map) {
  mx::save_safetensors(std::string(path), map.tensors, map.metadata);
}

// --- custom kernels ---

namespace {
std::vector<std::string> to_strings(const rust::Vec<rust::String>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) out.emplace_back(std::string(s));
  return out;
}
}  // namespace

std::unique_ptr<Kernel> cuda_kernel(rust::Str name, rust::Vec<rust::String> inputs,
                                    rust::Vec<rust::String> outputs, rust::Str source, rust::Str header,
                                    bool ensure_row_contiguous, int32_t shared_memory) {
  auto k = std::make_unique<Kernel>();
  k->fn = mx::fast::cuda_kernel(std::string(name), to_strings(inputs), to_strings(outputs), std::string(source),
                                std::string(header), ensure_row_contiguous, shared_memory);
  return k;
}

std::unique_ptr<Kernel> metal_kernel(rust::Str name, rust::Vec<rust::String> inputs,
                                     rust::Vec<rust::String> outputs, rust::Str source, rust::Str header,
                                     bool ensure_row_contiguous, bool atomic_outputs) {
  auto k = std::make_unique<Kernel>();
  k->fn = mx::fast::metal_kernel(std::string(name), to_strings(inputs), to_strings(outputs), std::string(source),
                                 std::string(header), ensure_row_contiguous, atomic_outputs);
  return k;
}

std::unique_ptr<ArrayList> kernel_call(const Kernel& kernel, const ArrayList& inputs,
                                       rust::Slice<const int32_t> output_shapes,
                                       rust::Slice<const int32_t> output_ranks,
                                       rust::Slice<const uint8_t> output_dtypes,
                                       rust::Slice<const int32_t> grid, rust::Slice<const int32_t> threadgroup,
                                       rust::Vec<rust::String> template_names,
                                       rust::Slice<const int32_t> template_kinds,
                                       rust::Slice<const int32_t> template_values, bool has_init,
                                       float init_value) {
  if (grid.size() != 3 || threadgroup.size() != 3) throw std::invalid_argument("grid and threadgroup need 3 values");
  if (output_ranks.size() != output_dtypes.size()) throw std::invalid_argument("one dtype per output is needed");
  std::vector<mx::Shape> shapes;
  size_t pos = 0;
  for (auto rank : output_ranks) {
    if (rank < 0 || pos + rank > output_shapes.size()) throw std::invalid_argument("output shapes are malformed");
    shapes.emplace_back(output_shapes.begin() + pos, output_shapes.begin() + pos + rank);
    pos += rank;
  }
  std::vector<mx::Dtype> dtypes;
  for (auto d : output_dtypes) dtypes.push_back(to_mx(static_cast<DType>(d)));
  if (template_names.size() != template_kinds.size() || template_kinds.size() != template_values.size())
    throw std::invalid_argument("template arguments are malformed");
  std::optional<float> init = has_init ? std::optional<float>(init_value) : std::nullopt;
  // Everything the kernel function's result depends on besides the output
  // shapes, which are the arrays' own.
  std::vector<int64_t> key;
  key.reserve(64);
  for (size_t i = 0; i < template_names.size(); ++i) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the name
    for (char c : template_names[i]) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
    key.insert(key.end(), {static_cast<int64_t>(h), template_kinds[i], template_values[i]});
  }
  for (const auto& a : inputs.items) key.insert(key.end(), {static_cast<int64_t>(a.ndim()), static_cast<int64_t>(a.dtype().val())});
  key.push_back(-1);
  for (auto d : output_dtypes) key.push_back(d);
  key.insert(key.end(), {grid[0], grid[1], grid[2], threadgroup[0], threadgroup[1], threadgroup[2], has_init});
  int32_t init_bits = 0;
  std::memcpy(&init_bits, &init_value, sizeof init_bits);
  key.push_back(has_init ? init_bits : 0);
  key.push_back(mx::default_stream(mx::default_device()).index);
  if (auto it = kernel.made.find(key); it != kernel.made.end()) {
    return own_list(mx::array::make_arrays(std::move(shapes), dtypes, it->second, inputs.items));
  }
  std::vector<std::pair<std::string, mx::fast::TemplateArg>> targs;
  for (size_t i = 0; i < template_names.size(); ++i) {
    std::string n(template_names[i]);
    switch (template_kinds[i]) {
      case 0: targs.emplace_back(n, static_cast<int>(template_values[i])); break;
      case 1: targs.emplace_back(n, template_values[i] != 0); break;
      case 2: targs.emplace_back(n, to_mx(static_cast<DType>(template_values[i]))); break;
      default: throw std::invalid_argument("unknown template argument kind");
    }
  }
  auto outs = kernel.fn(inputs.items, shapes, dtypes, {grid[0], grid[1], grid[2]},
                        {threadgroup[0], threadgroup[1], threadgroup[2]}, targs, init, false, {});
  // Launch shapes of element-wise kernels follow the token count, so the
  // signatures of a long-running process are unbounded: start over past a cap.
  if (kernel.made.size() >= 512) kernel.made.clear();
  if (!outs.empty() && outs[0].has_primitive()) kernel.made.emplace(std::move(key), outs[0].primitive_ptr());
  return own_list(std::move(outs));
}

}  // namespace mlxr
