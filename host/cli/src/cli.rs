//! Every command and flag, defined in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "host",
    about = "Benchmark Qwen3-VL inference with sandboxed WebAssembly workload plugins",
    version = crate::version::LONG,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what the engine sees: backend, device, memory, MLX library, plugins
    Doctor,
    /// Run one request and print the text and the stage timings
    Generate(GenerateArgs),
    /// Create and inspect model directories
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory, Hugging Face id (from the local cache) or synthetic:ARCH[:QUANT]
    /// [default: mlx-community/Qwen3-VL-8B-Instruct-4bit if cached, else synthetic:qwen3-vl-8b:4
    /// on a GPU and synthetic:qwen3-vl-tiny on a CPU]
    #[arg(long, env = "VLM_BENCH_MODEL")]
    pub model: Option<String>,
    /// Turn the prefix and vision caches off
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image file (PNG, JPEG, WebP, GIF); repeat for several
    #[arg(long)]
    pub image: Vec<PathBuf>,
    #[arg(long, default_value = "Describe this image.")]
    pub prompt: String,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 = greedy
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Generate exactly --max-tokens tokens
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print the response as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Write a complete model directory with random weights
    Synth(SynthArgs),
    /// Print the directory a --model value resolves to
    Resolve {
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// qwen3-vl-tiny, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b or qwen3-vl-32b
    #[arg(long)]
    pub arch: String,
    /// bf16 and f32 write the Hugging Face layout; 8 and 4 the mlx-community layout
    #[arg(long, default_value = "bf16")]
    pub quant: String,
    /// Write this layout whatever the quantization: hf or mlx
    #[arg(long)]
    pub layout: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    /// Largest shard in MB
    #[arg(long, default_value_t = 4096)]
    pub shard_mb: u64,
}
