//! `lab`: development tools for the engine's GPU kernels and decoding paths,
//! kept out of the `host` binary that users run. `docs/performance.md` and
//! `docs/experiments.md` say what each measured.
//!
//! ```sh
//! cargo run --release -p lab --features cuda -- kernels
//! cargo run --release -p lab --features cuda -- decode --model DIR --paths mlx,steps-graph
//! cargo run -p lab -- kernel-sources DIR      # every step kernel, for NVRTC
//! ```

mod decode;
mod kernel_sources;
mod kernels;

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand};
use engine::{EngineOptions, Tuning};

#[derive(Parser, Debug)]
#[command(
    name = "lab",
    about = "Kernel and decoding-path measurements for engine developers"
)]
struct Lab {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decoding's matrix-vector products and the vision attention at the 8B
    /// shapes, our kernels against MLX's
    Kernels,
    /// Greedy decoding paths side by side in one process: MLX's graph, and the
    /// step runner with and without programmatic dependent launch or CUDA graphs
    Decode(decode::Args),
    /// Write every step kernel's source (and its timeline form) into DIR, for
    /// compiling them without a GPU (`scripts/check_kernels.sh`)
    KernelSources { dir: PathBuf },
}

fn main() {
    let lab = Lab::parse();
    let result = match lab.command {
        Command::Kernels => engine_options().and_then(|o| kernels::run(&o)),
        Command::Decode(args) => engine_options().and_then(|o| decode::run(args, o)),
        Command::KernelSources { dir } => kernel_sources::write(&dir),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The engine's options from the `VLM_BENCH_*` variables (`docs/tuning.md`),
/// with the kernels' headers in a folder of the lab's own.
fn engine_options() -> Result<EngineOptions> {
    mlx::check_runtime_version().map_err(|e| anyhow!("{e}"))?;
    let tuning = Tuning::from_vars(|name| std::env::var(name).ok()).map_err(|e| anyhow!(e))?;
    if let Some(dir) = std::env::var("CUDA_HOME")
        .ok()
        .or_else(|| std::env::var("CUDA_PATH").ok())
    {
        mlx::cuda::set_toolkit_dir(&dir);
    }
    Ok(EngineOptions {
        cache_enabled: false,
        tuning,
        kernel_header_dir: Some(std::env::temp_dir().join("vlm-bench-lab-kernel-headers")),
        ..EngineOptions::default()
    })
}
