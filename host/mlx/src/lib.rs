//! A small, safe binding to MLX's C++ API, linked against the official MLX
//! wheels (CPU, CUDA or Metal backend from one code path).
//!
//! Only this crate contains `unsafe` (the workspace forbids it elsewhere),
//! and only in three kinds of places: the cxx bridge (`ffi.rs`), the `Send`
//! impls of the handle types, and the calls that hand device addresses to
//! the step runner (`cuda.rs`, which holds the arrays behind them). Every C++
//! exception becomes an [`Error`] carrying MLX's message.

mod array;
pub mod cuda;
mod device;
mod error;
pub mod fast;
mod ffi;
pub mod io;
pub mod kernel;
mod list;
pub mod nn;
mod ops;
mod quant;
pub mod random;
mod staging;

pub use array::{Array, Dtype, Element, async_eval, eval};
pub use device::{
    BUILD_BACKEND, BUILD_BLAS, BUILD_LIBDIR, COMPILED_VERSION, Device, MemoryStats,
    check_runtime_version, clear_cache, default_device, device_info_json, is_available,
    memory_stats, reset_peak_memory, runtime_backend, set_cache_limit, set_default_device,
    set_memory_limit, synchronize, version,
};
pub use error::{Error, Result};
pub use quant::{Quantized, quantize};
pub use staging::{Staging, set_pinned_staging};
