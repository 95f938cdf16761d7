//! Turns what the user typed after `--model` into a model directory:
//! a path, a Hugging Face id found in the local cache, or `synthetic:ARCH[:QUANT]`
//! (generated on first use). With no `--model`, mlx-community's 8B 4-bit from
//! the cache if present, else a synthetic default (`default_synthetic`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use engine::synth::{Arch, Quant, SynthOptions, synthesize};

use crate::settings::Settings;

/// The synthetic model used when nothing else is given: the 8B at 4 bits on
/// a GPU (the peers' workload), the tiny model on a CPU, where a real-size
/// vision tower takes minutes per high-resolution image.
pub fn default_synthetic() -> &'static str {
    if mlx::runtime_backend() == "cpu" {
        "synthetic:qwen3-vl-tiny"
    } else {
        "synthetic:qwen3-vl-8b:4"
    }
}
/// Used instead of the synthetic default when present in the HF cache.
pub const DEFAULT_REAL: &str = "mlx-community/Qwen3-VL-8B-Instruct-4bit";

/// The snapshot directory of `org/name` in the Hugging Face cache `cache`,
/// if any.
pub fn find_in_hf_cache(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    // refs/main names the snapshot the hub's "main" points at.
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").exists() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Parsed `synthetic:ARCH[:QUANT]`.
pub fn parse_synthetic(spec: &str) -> Result<Option<SynthOptions>> {
    let Some(rest) = spec.strip_prefix("synthetic:") else {
        return Ok(None);
    };
    // ARCH, then the quantization, which may hold a colon itself (`3:32`).
    let (arch_s, quant_s) = match rest.split_once(':') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let arch = Arch::parse(arch_s).with_context(|| {
        format!(
            "unknown synthetic architecture {arch_s:?}; use qwen3-vl-tiny, -2b, -4b, -8b or -32b"
        )
    })?;
    let quant = match quant_s {
        None => Quant::Bf16,
        Some(q) => {
            Quant::parse(q).with_context(|| format!("unknown quantization {q:?}; {QUANT_HELP}"))?
        }
    };
    Ok(Some(SynthOptions::new(arch, quant, 0)))
}

/// Where a synthetic model of these options lives (or will) under `models`.
pub fn synthetic_dir(models: &Path, opts: &SynthOptions) -> PathBuf {
    models.join(format!(
        "{}-{}-seed{}",
        opts.arch.name(),
        // No colon in a folder's name.
        opts.quant.name().replace(':', "g"),
        opts.seed
    ))
}

/// The quantizations `synth` writes, for messages.
pub const QUANT_HELP: &str = "use f32, bf16, 2, 3, 4, 5, 6 or 8 (bits, affine), or mlx-lm's mixed_2_6, mixed_3_4, mixed_3_6 or mixed_4_6, each with an optional group size :32, :64 (default) or :128";

/// Generates the synthetic model if absent (atomically: a half-written
/// directory never looks complete).
pub fn ensure_synthetic(models: &Path, opts: &SynthOptions, quiet: bool) -> Result<PathBuf> {
    let dir = synthetic_dir(models, opts);
    if dir.join("config.json").exists() && dir.join(".complete").exists() {
        return Ok(dir);
    }
    let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if !quiet {
        eprintln!(
            "generating synthetic model {} ({} weights) in {}",
            opts.arch.name(),
            opts.quant.name(),
            dir.display()
        );
    }
    let summary = synthesize(opts, &tmp, &mut |msg, frac| {
        if !quiet {
            eprintln!("  {msg} ({:.0}%)", frac * 100.0);
        }
    })?;
    std::fs::write(tmp.join(".complete"), b"")?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("moving the new model to {}", dir.display()))?;
    if !quiet {
        eprintln!(
            "  {} parameters, {:.1} MB in {:.1} s",
            summary.parameters,
            summary.bytes as f64 / 1e6,
            summary.seconds
        );
    }
    Ok(dir)
}

/// Resolves the model flags: `--model` (or its absence) to a directory,
/// downloading a Hugging Face id missing from the cache when `--download`.
pub fn resolve_args(
    settings: &Settings,
    args: &crate::cli::ModelArgs,
    quiet: bool,
) -> Result<PathBuf> {
    resolve(settings, args.model.as_deref(), args.download, quiet)
}

fn resolve(
    settings: &Settings,
    spec: Option<&str>,
    download: bool,
    quiet: bool,
) -> Result<PathBuf> {
    let cache = &settings.hf_cache;
    let spec = match spec {
        Some(s) => s.to_string(),
        None => match find_in_hf_cache(cache, DEFAULT_REAL) {
            Some(dir) => return Ok(dir),
            None => default_synthetic().to_string(),
        },
    };
    if let Some(opts) = parse_synthetic(&spec)? {
        return ensure_synthetic(&settings.paths.models_dir(), &opts, quiet);
    }
    let path = Path::new(&spec);
    if path.is_dir() {
        if !path.join("config.json").exists() {
            bail!(
                "{} has no config.json: it is not a model directory",
                path.display()
            );
        }
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        bail!(
            "{} is a file; --model takes a model directory, a Hugging Face id or synthetic:ARCH",
            path.display()
        );
    }
    if spec.matches('/').count() == 1 && !spec.starts_with('.') && !spec.starts_with('/') {
        if let Some(dir) = find_in_hf_cache(cache, &spec) {
            return Ok(dir);
        }
        if download {
            return crate::model_download::download(cache, &spec, "main", None);
        }
        bail!(
            "{spec} is not in the local Hugging Face cache ({}); add --download to fetch it \
             (or `host model download {spec}`), pass a directory, or use synthetic:qwen3-vl-8b:4",
            cache.display()
        );
    }
    bail!("no model directory at {spec}")
}
