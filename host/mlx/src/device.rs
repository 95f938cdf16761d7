//! Devices, the default stream, memory statistics and the build's identity.

use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;

pub use ffi::DeviceKind as Device;

/// The MLX version of the loaded `libmlx` (what runs, not what we compiled against).
pub fn version() -> String {
    ffi::mlx_version()
}

/// The MLX version whose headers this binding was compiled against.
pub const COMPILED_VERSION: &str = env!("MLX_BUILD_VERSION");

/// The backend this binary was built for: `cpu`, `cuda` or `metal`.
pub const BUILD_BACKEND: &str = env!("MLX_BUILD_BACKEND");

/// The BLAS linked ahead of the wheel's own: a library path, or `bundled`.
pub const BUILD_BLAS: &str = env!("MLX_BUILD_BLAS");

/// Where the build found `libmlx` (the rpath baked into binaries).
pub const BUILD_LIBDIR: &str = env!("MLX_BUILD_LIBDIR");

/// The backend the loaded library provides: `metal`, `cuda` or `cpu`.
pub fn runtime_backend() -> String {
    ffi::build_backend()
}

/// Fails with a message saying how to fix it when the loaded library is not
/// the version we compiled against (a stale `MLX_DIR` or `LD_LIBRARY_PATH`).
pub fn check_runtime_version() -> Result<()> {
    let loaded = version();
    if loaded
        .split(['.', '+'])
        .take(3)
        .collect::<Vec<_>>()
        .join(".")
        != COMPILED_VERSION
    {
        return Err(Error::new(
            "version check",
            format!(
                "libmlx {loaded} was loaded but this binary was built against {COMPILED_VERSION}; \
                 rebuild, or make sure no other libmlx comes first on LD_LIBRARY_PATH \
                 (built against {BUILD_LIBDIR})"
            ),
        ));
    }
    Ok(())
}

pub fn is_available(device: Device) -> bool {
    ffi::device_available(device)
}

pub fn set_default_device(device: Device) -> Result<()> {
    ffi::set_default_device(device).map_err(|e| Error::from_cxx("set_default_device", e))
}

pub fn default_device() -> Device {
    ffi::default_device_kind()
}

/// MLX's description of a device as JSON (`device_name`, `architecture`,
/// memory sizes; keys vary by backend).
pub fn device_info_json(device: Device) -> Result<String> {
    ffi::device_info_json(device).map_err(|e| Error::from_cxx("device_info", e))
}

/// Waits for all work queued on the default stream.
pub fn synchronize() -> Result<()> {
    ffi::synchronize_default().map_err(|e| Error::from_cxx("synchronize", e))
}

/// MLX allocator statistics, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    pub active: usize,
    pub peak: usize,
    pub cache: usize,
}

pub fn memory_stats() -> MemoryStats {
    MemoryStats {
        active: ffi::active_memory(),
        peak: ffi::peak_memory(),
        cache: ffi::cache_memory(),
    }
}

pub fn reset_peak_memory() {
    ffi::reset_peak()
}

/// Returns cached, unused buffers to the system.
pub fn clear_cache() {
    ffi::clear_memory_cache()
}

/// Returns the previous limit.
pub fn set_memory_limit(bytes: usize) -> usize {
    ffi::set_memory_limit_bytes(bytes)
}

/// Returns the previous limit.
pub fn set_cache_limit(bytes: usize) -> usize {
    ffi::set_cache_limit_bytes(bytes)
}
