//! The cxx bridge: declarations of the C++ shim in `cxx/shim.{h,cc}`.
//!
//! Every function that can throw returns `Result`; cxx catches the C++
//! exception and hands us its `what()` message. Nothing outside this crate
//! sees these raw declarations.

#[cxx::bridge(namespace = "mlxr")]
pub(crate) mod bridge {
    /// Element types, in MLX's own order (`mlx::core::Dtype::Val`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    enum DType {
        Bool,
        U8,
        U16,
        U32,
        U64,
        I8,
        I16,
        I32,
        I64,
        F16,
        F32,
        F64,
        BF16,
        C64,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    enum DeviceKind {
        Cpu,
        Gpu,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    enum UnaryOp {
        Neg,
        Exp,
        Log,
        Sqrt,
        Rsqrt,
        Sin,
        Cos,
        Tanh,
        Sigmoid,
        Abs,
        Square,
        Erf,
        Floor,
        Ceil,
        Round,
        Reciprocal,
        LogicalNot,
        Log1p,
        Sign,
        IsNan,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    enum BinaryOp {
        Add,
        Sub,
        Mul,
        Div,
        Maximum,
        Minimum,
        Power,
        Equal,
        NotEqual,
        Less,
        LessEqual,
        Greater,
        GreaterEqual,
        LogicalAnd,
        LogicalOr,
        Remainder,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    enum ReduceOp {
        Sum,
        Mean,
        Max,
        Min,
        Prod,
        LogSumExp,
        All,
        Any,
    }

    // SAFETY: every function below is implemented in `cxx/shim.cc` with exactly
    // the signature declared here (cxx checks this at C++ compile time). They
    // take references to live C++ objects owned by `UniquePtr`s on the Rust
    // side, copy what they need, and return new owned objects; none keeps a
    // reference beyond the call. Exceptions are caught by cxx (`Result`).
    unsafe extern "C++" {
        include!("mlx-bind/cxx/shim.h");

        #[namespace = "mlx::core"]
        type array;
        type ArrayList;
        type TensorMap;
        type Kernel;

        // version, devices, streams, memory
        fn mlx_version() -> String;
        fn build_backend() -> String;
        fn device_available(kind: DeviceKind) -> bool;
        fn set_default_device(kind: DeviceKind) -> Result<()>;
        fn default_device_kind() -> DeviceKind;
        fn device_info_json(kind: DeviceKind) -> Result<String>;
        fn synchronize_default() -> Result<()>;
        fn active_memory() -> usize;
        fn peak_memory() -> usize;
        fn reset_peak();
        fn cache_memory() -> usize;
        fn clear_memory_cache();
        fn set_memory_limit_bytes(limit: usize) -> usize;
        fn set_cache_limit_bytes(limit: usize) -> usize;

        // construction and inspection
        fn from_bytes(data: &[u8], shape: &[i32], dtype: DType) -> Result<UniquePtr<array>>;
        fn from_f32(data: &[f32], shape: &[i32]) -> Result<UniquePtr<array>>;
        fn from_i32(data: &[i32], shape: &[i32]) -> Result<UniquePtr<array>>;
        fn from_u32(data: &[u32], shape: &[i32]) -> Result<UniquePtr<array>>;
        fn scalar_f32(v: f32, dtype: DType) -> Result<UniquePtr<array>>;
        fn scalar_i32(v: i32) -> Result<UniquePtr<array>>;
        fn clone_array(a: &array) -> UniquePtr<array>;

        // staging buffers (cxx/staging.cc)
        type Staging;
        fn staging_new(size: usize) -> Result<UniquePtr<Staging>>;
        fn staging_bytes(s: Pin<&mut Staging>) -> &mut [u8];
        fn staging_set_pinned(allowed: bool);
        fn staging_pinned(s: &Staging) -> bool;
        fn staging_into_array(
            s: Pin<&mut Staging>,
            shape: &[i32],
            dtype: DType,
        ) -> Result<UniquePtr<array>>;

        // kernels and decoding steps outside MLX's graph (cxx/cuda_launch.cc)
        type CudaKernel;
        type StepRunner;
        fn cuda_launch_available() -> bool;
        fn cuda_kernel_compile(
            name: &str,
            source: &str,
            shared_bytes: u32,
            cluster_blocks: u32,
            shared_carveout: i32,
        ) -> Result<UniquePtr<CudaKernel>>;
        fn step_runner_new(use_graph: bool) -> Result<UniquePtr<StepRunner>>;
        fn step_runner_set_graph(r: Pin<&mut StepRunner>, use_graph: bool) -> Result<()>;
        fn step_runner_clear(r: Pin<&mut StepRunner>);
        // The functions below that take device addresses are `unsafe`: the
        // caller guarantees that each address points into device memory that
        // stays allocated while anything queued with it may run, with room
        // for what is copied (`cuda.rs` holds the arrays behind them).
        unsafe fn step_runner_add(
            r: Pin<&mut StepRunner>,
            k: &CudaKernel,
            grid: u32,
            block: u32,
            shared: u32,
            pdl: bool,
            args: &[u64],
        ) -> Result<()>;
        fn step_runner_launch(r: Pin<&mut StepRunner>) -> Result<()>;
        unsafe fn step_runner_read_u32(
            r: Pin<&mut StepRunner>,
            src: u64,
            slot: usize,
        ) -> Result<()>;
        fn step_runner_slot(r: Pin<&mut StepRunner>, slot: usize) -> Result<u32>;
        unsafe fn step_runner_copy(
            r: Pin<&mut StepRunner>,
            dst: u64,
            src: u64,
            bytes: usize,
        ) -> Result<()>;
        unsafe fn step_runner_upload(r: Pin<&mut StepRunner>, dst: u64, data: &[u8]) -> Result<()>;
        unsafe fn step_runner_download(
            r: Pin<&mut StepRunner>,
            src: u64,
            out: &mut [u8],
        ) -> Result<()>;
        fn step_runner_synchronize(r: Pin<&mut StepRunner>) -> Result<()>;
        fn cuda_set_toolkit_dir(dir: &str);
        fn cuda_sm_count() -> u32;
        fn array_device_ptr(a: &array) -> Result<u64>;

        fn shape(a: &array) -> Vec<i32>;
        fn dtype(a: &array) -> DType;
        fn nbytes(a: &array) -> usize;
        fn size(a: &array) -> usize;
        fn eval_one(a: &array) -> Result<()>;
        fn eval_list(list: &ArrayList) -> Result<()>;
        fn async_eval_list(list: &ArrayList) -> Result<()>;
        fn copy_to_bytes(a: &array, out: &mut [u8]) -> Result<()>;

        // lists
        fn list_new() -> UniquePtr<ArrayList>;
        fn list_push(list: Pin<&mut ArrayList>, a: &array);
        fn list_len(list: &ArrayList) -> usize;
        fn list_get(list: &ArrayList, i: usize) -> Result<UniquePtr<array>>;

        // creation
        fn zeros(shape: &[i32], dtype: DType) -> Result<UniquePtr<array>>;
        fn ones(shape: &[i32], dtype: DType) -> Result<UniquePtr<array>>;
        fn full(shape: &[i32], value: f32, dtype: DType) -> Result<UniquePtr<array>>;
        fn arange(start: f64, stop: f64, step: f64, dtype: DType) -> Result<UniquePtr<array>>;

        // elementwise
        fn unary(a: &array, op: UnaryOp) -> Result<UniquePtr<array>>;
        fn binary(a: &array, b: &array, op: BinaryOp) -> Result<UniquePtr<array>>;
        fn where_(cond: &array, a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn astype(a: &array, dtype: DType) -> Result<UniquePtr<array>>;
        fn view_as(a: &array, dtype: DType) -> Result<UniquePtr<array>>;
        fn clip(a: &array, lo: &array, hi: &array) -> Result<UniquePtr<array>>;

        // reductions
        fn reduce(
            a: &array,
            axes: &[i32],
            keepdims: bool,
            op: ReduceOp,
        ) -> Result<UniquePtr<array>>;
        fn arg_reduce(
            a: &array,
            axis: i32,
            keepdims: bool,
            is_max: bool,
        ) -> Result<UniquePtr<array>>;
        fn softmax(a: &array, axes: &[i32], precise: bool) -> Result<UniquePtr<array>>;
        fn cumsum(a: &array, axis: i32, reverse: bool, inclusive: bool)
        -> Result<UniquePtr<array>>;
        fn sort(a: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn argsort(a: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn argpartition(a: &array, kth: i32, axis: i32) -> Result<UniquePtr<array>>;
        fn topk(a: &array, k: i32, axis: i32) -> Result<UniquePtr<array>>;

        // linear algebra and quantization
        fn matmul(a: &array, b: &array) -> Result<UniquePtr<array>>;
        fn addmm(
            c: &array,
            a: &array,
            b: &array,
            alpha: f32,
            beta: f32,
        ) -> Result<UniquePtr<array>>;
        fn quantize(w: &array, group_size: i32, bits: i32) -> Result<UniquePtr<ArrayList>>;
        fn dequantize(
            w: &array,
            scales: &array,
            biases: &array,
            group_size: i32,
            bits: i32,
            dtype: DType,
        ) -> Result<UniquePtr<array>>;
        fn quantized_matmul(
            x: &array,
            w: &array,
            scales: &array,
            biases: &array,
            transpose: bool,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<array>>;

        // shape and indexing
        fn reshape(a: &array, shape: &[i32]) -> Result<UniquePtr<array>>;
        fn transpose(a: &array, axes: &[i32]) -> Result<UniquePtr<array>>;
        fn expand_dims(a: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn squeeze(a: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn broadcast_to(a: &array, shape: &[i32]) -> Result<UniquePtr<array>>;
        fn repeat(a: &array, repeats: i32, axis: i32) -> Result<UniquePtr<array>>;
        fn contiguous(a: &array) -> Result<UniquePtr<array>>;
        fn slice(
            a: &array,
            start: &[i32],
            stop: &[i32],
            strides: &[i32],
        ) -> Result<UniquePtr<array>>;
        fn slice_dynamic(
            a: &array,
            start: &array,
            axes: &[i32],
            sizes: &[i32],
        ) -> Result<UniquePtr<array>>;
        fn slice_update(
            src: &array,
            update: &array,
            start: &[i32],
            stop: &[i32],
            strides: &[i32],
        ) -> Result<UniquePtr<array>>;
        fn slice_update_dynamic(
            src: &array,
            update: &array,
            start: &array,
            axes: &[i32],
        ) -> Result<UniquePtr<array>>;
        fn concatenate(arrays: &ArrayList, axis: i32) -> Result<UniquePtr<array>>;
        fn stack(arrays: &ArrayList, axis: i32) -> Result<UniquePtr<array>>;
        fn split_sections(a: &array, indices: &[i32], axis: i32) -> Result<UniquePtr<ArrayList>>;
        fn take(a: &array, indices: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn take_along_axis(a: &array, indices: &array, axis: i32) -> Result<UniquePtr<array>>;
        fn put_along_axis(
            a: &array,
            indices: &array,
            values: &array,
            axis: i32,
        ) -> Result<UniquePtr<array>>;

        // fast
        fn rms_norm(x: &array, weight: &array, eps: f32) -> Result<UniquePtr<array>>;
        fn layer_norm(
            x: &array,
            weight: &array,
            bias: &array,
            eps: f32,
        ) -> Result<UniquePtr<array>>;
        fn rope(
            x: &array,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: i32,
        ) -> Result<UniquePtr<array>>;
        fn rope_dynamic(
            x: &array,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: &array,
        ) -> Result<UniquePtr<array>>;
        fn rope_freqs(
            x: &array,
            dims: i32,
            traditional: bool,
            scale: f32,
            offset: i32,
            freqs: &array,
        ) -> Result<UniquePtr<array>>;
        fn sdpa(
            q: &array,
            k: &array,
            v: &array,
            scale: f32,
            mask_mode: &str,
        ) -> Result<UniquePtr<array>>;
        fn sdpa_masked(
            q: &array,
            k: &array,
            v: &array,
            scale: f32,
            mask: &array,
        ) -> Result<UniquePtr<array>>;

        // random
        fn random_key(seed: u64) -> Result<UniquePtr<array>>;
        fn random_split(key: &array, num: i32) -> Result<UniquePtr<ArrayList>>;
        fn random_normal(
            shape: &[i32],
            dtype: DType,
            loc: f32,
            scale: f32,
            key: &array,
        ) -> Result<UniquePtr<array>>;
        fn random_uniform(
            shape: &[i32],
            dtype: DType,
            low: f32,
            high: f32,
            key: &array,
        ) -> Result<UniquePtr<array>>;
        fn random_categorical(logits: &array, axis: i32, key: &array) -> Result<UniquePtr<array>>;

        // safetensors
        fn load_safetensors(path: &str) -> Result<UniquePtr<TensorMap>>;
        fn tensor_map_new() -> UniquePtr<TensorMap>;
        fn tensor_map_keys(map: &TensorMap) -> Vec<String>;
        fn tensor_map_get(map: &TensorMap, name: &str) -> Result<UniquePtr<array>>;
        fn tensor_map_insert(map: Pin<&mut TensorMap>, name: &str, a: &array);
        fn tensor_map_metadata(map: &TensorMap) -> Vec<String>;
        fn tensor_map_set_metadata(map: Pin<&mut TensorMap>, key: &str, value: &str);
        fn save_safetensors(path: &str, map: &TensorMap) -> Result<()>;

        // custom kernels
        fn cuda_kernel(
            name: &str,
            inputs: Vec<String>,
            outputs: Vec<String>,
            source: &str,
            header: &str,
            ensure_row_contiguous: bool,
            shared_memory: i32,
        ) -> Result<UniquePtr<Kernel>>;
        fn metal_kernel(
            name: &str,
            inputs: Vec<String>,
            outputs: Vec<String>,
            source: &str,
            header: &str,
            ensure_row_contiguous: bool,
            atomic_outputs: bool,
        ) -> Result<UniquePtr<Kernel>>;
        #[allow(clippy::too_many_arguments)]
        fn kernel_call(
            kernel: &Kernel,
            inputs: &ArrayList,
            output_shapes: &[i32],
            output_ranks: &[i32],
            output_dtypes: &[u8],
            grid: &[i32],
            threadgroup: &[i32],
            template_names: Vec<String>,
            template_kinds: &[i32],
            template_values: &[i32],
            has_init: bool,
            init_value: f32,
        ) -> Result<UniquePtr<ArrayList>>;
    }
}
