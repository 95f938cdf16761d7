//! Where the platform keeps its files: `$VLM_BENCH_HOME`, else
//! `$XDG_DATA_HOME/vlm-bench`, else `~/.local/share/vlm-bench`.

use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VLM_BENCH_HOME") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("vlm-bench");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/vlm-bench")
}

/// Synthetic models generated on first use.
pub fn models_dir() -> PathBuf {
    data_dir().join("models")
}

/// The results database unless `--db` says otherwise.
pub fn default_db() -> PathBuf {
    data_dir().join("results.db")
}

/// Compiled plugins (wasmtime's cache: keyed by the wasm's hash and the engine settings).
pub fn plugin_cache_dir() -> PathBuf {
    data_dir().join("plugin-cache")
}

/// Kernel headers written for the GPU compiler to include (see
/// `engine::kernels::set_header_dir`).
pub fn kernel_header_dir() -> PathBuf {
    data_dir().join("kernel-headers")
}
