//! What a run records about the machine and software that produced it.

use serde_json::{Value, json};

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The device MLX computes on, by name ("cpu" when MLX has no name for it).
pub fn device_name() -> String {
    mlx::device_info_json(mlx::default_device())
        .ok()
        .and_then(|j| serde_json::from_str::<Value>(&j).ok())
        .and_then(|v| {
            v.get("device_name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("{:?}", mlx::default_device()).to_lowercase())
}

pub fn machine() -> Value {
    json!({
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpu": cpu_model(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_bytes": engine::system_memory_bytes(),
        "device": device_name(),
        "device_info": mlx::device_info_json(mlx::default_device()).ok().and_then(|j| serde_json::from_str::<Value>(&j).ok()),
        "blas": mlx::BUILD_BLAS,
    })
}
