//! `lab kernel-sources DIR`: every standalone kernel the step runner may
//! compile (`engine::kernels::catalog`), as it compiles them and with the
//! timeline on, one file each, for NVRTC to compile without a GPU.

use std::path::Path;

use anyhow::{Context, Result};

pub fn write(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let kernels = engine::kernels::catalog::step_kernels_8b()?;
    for (name, k) in &kernels {
        for (file, source) in [
            (format!("{name}.cu"), k.source.clone()),
            (format!("{name}_timeline.cu"), k.timed_source()),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, source).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    println!("{} kernels written to {}", kernels.len(), dir.display());
    Ok(())
}
