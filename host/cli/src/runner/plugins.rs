//! Finding plugins: a path, a built-in (`resolution_sweep.wasm`), or a file in
//! the user's plugin folder (`$VLM_BENCH_HOME/plugins`, [`Paths::plugins_dir`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::settings::Paths;

/// `(display name, component bytes)` for `spec`.
pub fn find(paths: &Paths, spec: &str) -> Result<(String, Vec<u8>)> {
    let path = Path::new(spec);
    if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| spec.to_string());
        return Ok((name, bytes));
    }
    if let Some(bytes) = plugins_built::builtin(spec) {
        let name = if spec.ends_with(".wasm") {
            spec.to_string()
        } else {
            format!("{spec}.wasm")
        };
        return Ok((name, bytes.to_vec()));
    }
    let file = if spec.ends_with(".wasm") {
        spec.to_string()
    } else {
        format!("{spec}.wasm")
    };
    let user = paths.plugins_dir().join(&file);
    if !spec.contains('/') && user.is_file() {
        let bytes = std::fs::read(&user).with_context(|| format!("reading {}", user.display()))?;
        return Ok((file, bytes));
    }
    let builtins: Vec<&str> = plugins_built::BUILTIN.iter().map(|(n, _)| *n).collect();
    bail!(
        "no plugin {spec}: not a file, not a built-in ({}), and not in {}",
        builtins.join(", "),
        paths.plugins_dir().display()
    )
}

/// Built-ins, then the user's plugins: (name, bytes, where).
pub fn all(paths: &Paths) -> Vec<(String, Vec<u8>, String)> {
    let mut out: Vec<(String, Vec<u8>, String)> = plugins_built::BUILTIN
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec(), "built-in".to_string()))
        .collect();
    if let Ok(entries) = std::fs::read_dir(paths.plugins_dir()) {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                out.push((
                    f.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .to_string(),
                    bytes,
                    f.display().to_string(),
                ));
            }
        }
    }
    out
}
