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
    /// Run a workload plugin and record its results
    Run(RunArgs),
    /// List and inspect workload plugins
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Show, export and compare stored runs
    #[command(subcommand)]
    Results(ResultsCommand),
    /// Serve the results page and its JSON API; with --model, an OpenAI-compatible API too
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8370")]
    pub addr: std::net::SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// Also serve this model through an OpenAI-compatible API (/v1/chat/completions,
    /// /v1/models, /health, /metrics): a directory, Hugging Face id or synthetic:ARCH[:QUANT]
    #[arg(long)]
    pub model: Option<String>,
    /// Turn the prefix and vision caches off
    #[arg(long)]
    pub no_cache: bool,
    /// The most memory one request's work may hold at once, and all the requests of the
    /// running batch together, in MiB [default: the device's memory beside the weights and
    /// the caches]
    #[arg(long)]
    pub request_mb: Option<u64>,
    /// Requests decoded together at most (continuous batching)
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch: u32,
    /// Prompt tokens one batch step prefills at most beside the running streams
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub prefill_chunk: u32,
    /// A folder `file://` image URLs may read from; repeat for several
    #[arg(long)]
    pub images: Vec<PathBuf>,
    /// Refuse `http(s)://` image URLs instead of fetching them
    #[arg(long)]
    pub no_fetch: bool,
    /// Requests that may wait for the engine; past it the API answers 429
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Largest request body, in MiB
    #[arg(long, default_value_t = 32)]
    pub max_body_mb: usize,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// The results database [default: ~/.local/share/vlm-bench/results.db]
    #[arg(long, env = "VLM_BENCH_DB")]
    pub db: Option<PathBuf>,
}

impl DbArgs {
    /// `--db`, else the default under `paths`.
    pub fn path(&self, paths: &crate::settings::Paths) -> PathBuf {
        self.db.clone().unwrap_or_else(|| paths.default_db())
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A .wasm file, a built-in plugin (resolution_sweep.wasm, cache_verification.wasm,
    /// image_set.wasm, serving_sweep.wasm) or a plugin in ~/.local/share/vlm-bench/plugins
    #[arg(long)]
    pub plugin: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Grant the plugin a folder of images, as DIR or NAME=DIR; repeat for several
    #[arg(long)]
    pub images: Vec<String>,
    /// A plugin parameter, key=value (see `host plugins inspect`); repeat for several
    #[arg(long = "set")]
    pub sets: Vec<String>,
    /// Stop the run after this many seconds
    #[arg(long, default_value_t = 3600.0)]
    pub timeout: f64,
    /// The plugin's memory limit in MiB
    #[arg(long, default_value_t = 512)]
    pub memory_mb: usize,
    /// What the plugin may make the run store (logs, notes, tables,
    /// metrics), in MiB; past it they are dropped, and a note says so
    #[arg(long, default_value_t = 256)]
    pub store_mb: u64,
    #[command(flatten)]
    pub db: DbArgs,
    /// Print only the results
    #[arg(long, short)]
    pub quiet: bool,
    /// Requests the host's engine decodes together at most, when the plugin submits several
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch: u32,
    /// Prompt tokens one batch step prefills at most beside the running streams
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub prefill_chunk: u32,
    /// Send the plugin's requests to this OpenAI-compatible server instead of loading a model,
    /// e.g. http://127.0.0.1:8000/v1 (the model flags are then not used)
    #[arg(long, value_name = "URL", conflicts_with_all = ["model", "download"])]
    pub endpoint: Option<String>,
    /// The model name to send to the endpoint [default: the one its /v1/models lists]
    #[arg(long, value_name = "NAME", requires = "endpoint")]
    pub endpoint_model: Option<String>,
    /// The environment variable holding the endpoint's API key (sent as a bearer token)
    #[arg(long, value_name = "VAR", requires = "endpoint")]
    pub api_key_env: Option<String>,
    /// Seconds to wait for the endpoint's next bytes before a request counts as timed out
    #[arg(long, default_value_t = 300.0, requires = "endpoint")]
    pub read_timeout: f64,
}

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// The built-in plugins and those in ~/.local/share/vlm-bench/plugins
    List,
    /// Metadata, parameters, WIT version and imports of a plugin
    Inspect {
        /// A .wasm file or a plugin name
        plugin: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ResultsCommand {
    /// Stored runs, newest first
    List {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One run: identity, the resolution table, what the plugin recorded
    Show {
        /// A run id, or `latest`
        run: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// One run as md (the resolution table), csv (one line per request) or json
    Export {
        run: String,
        #[arg(long, default_value = "md")]
        format: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Runs side by side, with ratios to the first and whether each difference exceeds the noise
    Compare {
        #[arg(required = true, num_args = 2..)]
        runs: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
    },
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
    /// Download a Hugging Face id that is not in the local cache
    #[arg(long)]
    pub download: bool,
    /// The most memory one request's work may hold at once, in MiB; larger
    /// requests are refused before any work [default: the device's memory
    /// beside the weights and the caches]
    #[arg(long)]
    pub request_mb: Option<u64>,
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
    /// Download a model from the Hugging Face Hub into the local cache
    Download {
        /// ORG/NAME, e.g. mlx-community/Qwen3-VL-8B-Instruct-4bit
        id: String,
        #[arg(long, default_value = "main")]
        revision: String,
        /// Another hub (a mirror); HF_ENDPOINT also works
        #[arg(long)]
        endpoint: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// qwen3-vl-tiny, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b or qwen3-vl-32b
    #[arg(long)]
    pub arch: String,
    /// bf16 and f32 write the Hugging Face layout; affine bits (2, 3, 4, 5, 6, 8) and mlx-lm's
    /// mixed recipes (mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6) the mlx-community layout, each
    /// with an optional group size (3:32; 64 by default, or 128)
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
