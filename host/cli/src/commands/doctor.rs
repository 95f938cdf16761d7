//! `host doctor`: what the engine sees, and whether plugins can run.

use anyhow::Result;

use crate::settings::Settings;
use crate::{model_resolve, version};

/// The libmlx this process actually loaded (from /proc/self/maps).
fn loaded_libmlx() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .find(|l| l.contains("libmlx"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string)
}

fn wasm_target_installed() -> Option<bool> {
    let out = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2"),
    )
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

pub fn run(settings: &Settings) -> Result<()> {
    let paths = &settings.paths;
    println!("host        {}", version::VERSION);
    println!(
        "MLX         {} (built against {})",
        mlx::version(),
        mlx::COMPILED_VERSION
    );
    println!(
        "backend     {} (built for {})",
        mlx::runtime_backend(),
        mlx::BUILD_BACKEND
    );
    let device = mlx::default_device();
    println!(
        "device      {device:?} (gpu available: {})",
        mlx::is_available(mlx::Device::Gpu)
    );
    match mlx::device_info_json(device) {
        Ok(info) => {
            let v: serde_json::Value = serde_json::from_str(&info).unwrap_or_default();
            if let Some(name) = v.get("device_name").and_then(|x| x.as_str()) {
                println!("device name {name}");
            }
            if let Some(arch) = v.get("architecture").and_then(|x| x.as_str()) {
                println!("arch        {arch}");
            }
        }
        Err(e) => println!("device info unavailable: {e}"),
    }
    println!("memory      {}", gib(engine::device_memory_bytes()));
    if let Some(sms) = mlx::cuda::sm_count() {
        println!("SMs         {sms}");
    }
    println!(
        "libmlx      {}",
        loaded_libmlx().unwrap_or_else(|| format!("{} (rpath)", mlx::BUILD_LIBDIR))
    );
    println!("BLAS        {}", mlx::BUILD_BLAS);
    println!("data dir    {}", paths.data_dir().display());
    println!("results db  {}", paths.default_db().display());
    let wasm = match wasm_target_installed() {
        Some(true) => "installed",
        Some(false) => "missing (rustup target add wasm32-wasip2; needed only to build plugins)",
        None => "unknown (rustup not found; needed only to build plugins)",
    };
    println!("wasm target {wasm}");
    match model_resolve::find_in_hf_cache(&settings.hf_cache, model_resolve::DEFAULT_REAL) {
        Some(dir) => println!(
            "default model {} ({})",
            model_resolve::DEFAULT_REAL,
            dir.display()
        ),
        None => {
            let spec = model_resolve::default_synthetic();
            let opts = model_resolve::parse_synthetic(spec)?.expect("synthetic spec");
            let dir = model_resolve::synthetic_dir(&paths.models_dir(), &opts);
            let state = if dir.join(".complete").exists() {
                "ready"
            } else {
                "generated on first use"
            };
            println!("default model {spec} ({state}: {})", dir.display());
        }
    }
    // What the VLM_BENCH_* variables resolved to (docs/tuning.md).
    println!("\nengine settings");
    for (name, value) in settings.tuning.settings() {
        println!("  {name:<20} {value}");
    }
    if let Some(dir) = &settings.cuda_toolkit {
        println!("  {:<20} {dir}", "CUDA toolkit");
    }
    Ok(())
}
