//! Everything the host takes from its environment, read once at start-up
//! (`main`) and passed down: where its files live, the Hugging Face cache,
//! the engine's tuning variables (`docs/tuning.md`) and the CUDA toolkit.
//! Nothing below the command line reads the environment.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use engine::{EngineOptions, Tuning};

/// Where the platform keeps its files: `$VLM_BENCH_HOME`, else
/// `$XDG_DATA_HOME/vlm-bench`, else `~/.local/share/vlm-bench`.
#[derive(Debug, Clone)]
pub struct Paths {
    data: PathBuf,
}

impl Paths {
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    /// Synthetic models generated on first use.
    pub fn models_dir(&self) -> PathBuf {
        self.data.join("models")
    }

    /// The results database unless `--db` says otherwise.
    pub fn default_db(&self) -> PathBuf {
        self.data.join("results.db")
    }

    /// Compiled plugins (wasmtime's cache: keyed by the wasm's hash and the
    /// engine settings).
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.data.join("plugin-cache")
    }

    /// Plugins installed by the user, found by name.
    pub fn plugins_dir(&self) -> PathBuf {
        self.data.join("plugins")
    }

    /// Kernel headers written for the GPU compiler to include.
    pub fn kernel_header_dir(&self) -> PathBuf {
        self.data.join("kernel-headers")
    }
}

/// The host's settings from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Paths,
    /// The Hugging Face hub cache (`HF_HUB_CACHE`, `HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`).
    pub hf_cache: PathBuf,
    /// How the engine runs (the `VLM_BENCH_*` variables).
    pub tuning: Tuning,
    /// The CUDA toolkit our kernels' compiler includes headers from
    /// (`CUDA_HOME`, else `CUDA_PATH`), where MLX's package has none.
    pub cuda_toolkit: Option<String>,
}

impl Settings {
    /// The settings from the variables `get` reads (the environment).
    pub fn read(get: impl Fn(&str) -> Option<OsString>) -> Result<Settings> {
        let home = get("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let data = match (get("VLM_BENCH_HOME"), get("XDG_DATA_HOME")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(xdg)) => PathBuf::from(xdg).join("vlm-bench"),
            (None, None) => home.join(".local/share/vlm-bench"),
        };
        let hf_cache = match (get("HF_HUB_CACHE"), get("HF_HOME")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(hf)) => PathBuf::from(hf).join("hub"),
            (None, None) => home.join(".cache/huggingface/hub"),
        };
        let text = |name: &str| get(name).map(|v| v.to_string_lossy().into_owned());
        let tuning = Tuning::from_vars(text).map_err(|e| anyhow!(e))?;
        let cuda_toolkit = text("CUDA_HOME").or_else(|| text("CUDA_PATH"));
        Ok(Settings {
            paths: Paths { data },
            hf_cache,
            tuning,
            cuda_toolkit,
        })
    }

    /// The engine's options under these settings and the model flags.
    pub fn engine_options(&self, model: &crate::cli::ModelArgs) -> EngineOptions {
        EngineOptions {
            cache_enabled: !model.no_cache,
            request_memory: model.request_mb.map(|mb| mb << 20),
            tuning: self.tuning.clone(),
            kernel_header_dir: Some(self.paths.kernel_header_dir()),
            ..EngineOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings> {
        Settings::read(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn data_and_caches_follow_the_variables_in_order() {
        let s = read(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            s.paths.data_dir(),
            PathBuf::from("/home/u/.local/share/vlm-bench")
        );
        assert_eq!(s.hf_cache, PathBuf::from("/home/u/.cache/huggingface/hub"));
        let s = read(&[
            ("HOME", "/home/u"),
            ("XDG_DATA_HOME", "/x"),
            ("HF_HOME", "/hf"),
        ])
        .unwrap();
        assert_eq!(s.paths.data_dir(), PathBuf::from("/x/vlm-bench"));
        assert_eq!(s.hf_cache, PathBuf::from("/hf/hub"));
        let s = read(&[
            ("XDG_DATA_HOME", "/x"),
            ("VLM_BENCH_HOME", "/v"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
        ])
        .unwrap();
        assert_eq!(s.paths.default_db(), PathBuf::from("/v/results.db"));
        assert_eq!(s.hf_cache, PathBuf::from("/c"));
    }

    #[test]
    fn tuning_comes_from_its_variables_and_bad_values_are_refused() {
        let s = read(&[("VLM_BENCH_NO_PDL", "1"), ("CUDA_PATH", "/opt/cuda")]).unwrap();
        assert_eq!(s.tuning.decode.to_string(), "steps-graph-nopdl");
        assert_eq!(s.cuda_toolkit.as_deref(), Some("/opt/cuda"));
        let err = read(&[("VLM_BENCH_ATTN_CLUSTER", "7x")]).unwrap_err();
        assert!(err.to_string().contains("VLM_BENCH_ATTN_CLUSTER"), "{err}");
        let model = crate::cli::ModelArgs {
            model: None,
            no_cache: true,
            download: false,
            request_mb: Some(64),
        };
        let opts = read(&[("HOME", "/h")]).unwrap().engine_options(&model);
        assert!(!opts.cache_enabled);
        assert_eq!(opts.request_memory, Some(64 << 20));
        assert_eq!(
            opts.kernel_header_dir,
            Some(PathBuf::from("/h/.local/share/vlm-bench/kernel-headers"))
        );
    }
}
