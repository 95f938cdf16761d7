//! NVIDIA GPUs through NVML, the driver's management library (loaded at
//! run time; absent on machines without the driver).

use nvml_wrapper::Nvml;

use crate::Reading;

/// The GPUs NVML sees.
pub struct Gpus {
    nvml: Nvml,
    count: u32,
}

impl Gpus {
    /// None where the NVIDIA driver's library is not installed, or sees no GPU.
    pub fn open() -> Option<Gpus> {
        let nvml = Nvml::init().ok()?;
        let count = nvml.device_count().ok().filter(|&n| n > 0)?;
        Some(Gpus { nvml, count })
    }

    /// Each GPU's memory in use, utilisation and power draw, as
    /// `gpuN.memory_used_bytes`, `gpuN.utilization_pct`, `gpuN.power_w`
    /// (whatever the driver answers; a GPU that answers nothing is skipped).
    pub fn read(&self) -> Reading {
        let mut out = vec![];
        for i in 0..self.count {
            let Ok(d) = self.nvml.device_by_index(i) else {
                continue;
            };
            if let Ok(m) = d.memory_info() {
                out.push((format!("gpu{i}.memory_used_bytes"), m.used as f64));
            }
            if let Ok(u) = d.utilization_rates() {
                out.push((format!("gpu{i}.utilization_pct"), u.gpu as f64));
            }
            if let Ok(mw) = d.power_usage() {
                out.push((format!("gpu{i}.power_w"), mw as f64 / 1e3));
            }
        }
        out
    }
}
