//! The engine: a loaded model with its processor, caches and decoder,
//! answering generation requests with timed events. A request runs as named
//! stages: plan (tokens, grids) → prefix lookup → images (vision cache) →
//! vision encoder → prefill → decode loop → response.

mod admission;
mod batch;
mod decode_loop;
mod info;
mod plan;
mod prefill;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{CacheReport, CacheStats, PrefixCache, VisionCache};
use crate::config::{ModelConfig, PreprocessorConfig};
use crate::decode::{DecodePath, Decoder, Pending};
use crate::error::{Error, Result};
use crate::generate::{
    CancelToken, Event, GenerateRequest, GenerateResponse, Timings, validate_request,
};
use crate::kernels::{KernelOptions, Kernels};
use crate::model::Qwen3Vl;
use crate::prompt::{ChatTemplate, PromptBuilder, TextTokenizer};
use crate::sampler::Sampler;
use crate::tuning::Tuning;
use decode_loop::{Clock, Decoded, StopRules};
use plan::{RequestPlan, StageMarks};

pub use admission::{Admission, Budgets, Cost};
pub use batch::{Batch, BatchEvent, SequenceId};
pub use info::{ModelInfo, device_memory_bytes, system_memory_bytes};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub cache_enabled: bool,
    /// Byte budgets; `None` derives them from the device's memory.
    pub prefix_budget: Option<usize>,
    pub vision_budget: Option<usize>,
    /// Compute in this dtype instead of the checkpoint's. The default is f32
    /// on the CPU backend (its bf16 matmul was 20x slower than f32 with
    /// OpenBLAS on a 2-core x86-64) and the checkpoint's own dtype on GPUs.
    pub compute_dtype: Option<mlx::Dtype>,
    /// Keep dense copies of quantized decoder matrices. `None`: when they
    /// fit in a third of device memory. On GPUs they serve prefill (MLX
    /// CUDA's 4-bit matmul ran 3-5x slower than bf16 there); on the CPU, in
    /// f32, they serve every step with the LM head's copy too (2B 4-bit on
    /// the CPU: MLX's quantized matmul gave a 75 s TTFT against 4 s dense).
    pub dense_copies: Option<bool>,
    /// Decoding path, kernels, launches, profiling (`crate::tuning`).
    pub tuning: Tuning,
    /// Where our kernels' shared device functions are written for their
    /// sources to include (`None`: inline).
    pub kernel_header_dir: Option<PathBuf>,
    /// Bytes one request's work may hold at once; `None`: what the device
    /// has beside the weights and the caches' budgets.
    pub request_memory: Option<u64>,
    /// Floating-point operations per piece of prefill or vision work
    /// between looks at the cancel token; `None`: a quarter of a second's
    /// worth on this kind of device.
    pub piece_flops: Option<f64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let on_cpu = mlx::default_device() == mlx::Device::Cpu;
        EngineOptions {
            cache_enabled: true,
            prefix_budget: None,
            vision_budget: None,
            compute_dtype: on_cpu.then_some(mlx::Dtype::F32),
            dense_copies: None,
            tuning: Tuning::default(),
            kernel_header_dir: None,
            request_memory: None,
            piece_flops: None,
        }
    }
}

pub struct Engine {
    model: Qwen3Vl,
    decoder: Decoder,
    prompts: PromptBuilder,
    pre: PreprocessorConfig,
    info: ModelInfo,
    cache_enabled: bool,
    vision_cache: VisionCache,
    prefix_cache: PrefixCache,
    /// Processor settings and model identity, folded into vision cache keys.
    vision_key_salt: blake3::Hash,
    profile_preprocess: bool,
    cancel: CancelToken,
    admission: Admission,
}

impl Engine {
    pub fn load(dir: &Path, opts: EngineOptions) -> Result<Engine> {
        let config = ModelConfig::load(dir)?;
        let pre = PreprocessorConfig::load(dir)?;
        let tokenizer = TextTokenizer::load(dir)?;
        let template = ChatTemplate::load(dir)?;
        let prompts = PromptBuilder::new(tokenizer, template, config.tokens.image)?;
        let config_bytes = std::fs::read(dir.join("config.json"))
            .map_err(|e| Error::io(&dir.join("config.json"), e))?;
        let info_config = config.clone();
        let tuning = &opts.tuning;
        mlx::set_pinned_staging(tuning.pinned_staging);
        let kernels = start_kernels(tuning, opts.kernel_header_dir.clone());
        let mut model = Qwen3Vl::load(dir, config, opts.compute_dtype, &kernels)?;
        let memory = device_memory_bytes() as usize;
        let on_gpu = mlx::default_device() == mlx::Device::Gpu;
        let budget = match opts.dense_copies {
            Some(false) => 0,
            Some(true) => usize::MAX,
            None => memory / 3,
        };
        // On the CPU the copies serve decoding too (no faster kernel there).
        let dense_prefill_bytes = model.text.add_dense_copies(budget, !on_gpu)?;
        let decoder = Decoder::new(&model.text, &kernels, tuning);
        let mut info = ModelInfo::of(dir, &info_config, &model, &config_bytes);
        info.dense_prefill_bytes = dense_prefill_bytes as u64;
        info.custom_kernels = kernels.enabled();
        info.fused_decode = decoder.fused();
        let prefix_budget = opts.prefix_budget.unwrap_or((memory / 8).min(16 << 30));
        let vision_budget = opts.vision_budget.unwrap_or((memory / 32).min(4 << 30));
        let admission = admission_for(
            &info_config,
            &model,
            &opts,
            memory as u64,
            (prefix_budget + vision_budget) as u64,
        );
        let mut salt = blake3::Hasher::new();
        salt.update(info.config_hash.as_bytes());
        salt.update(serde_json::to_string(&pre).unwrap_or_default().as_bytes());
        Ok(Engine {
            model,
            decoder,
            prompts,
            pre,
            info,
            cache_enabled: opts.cache_enabled,
            vision_cache: VisionCache::new(vision_budget),
            prefix_cache: PrefixCache::new(prefix_budget),
            vision_key_salt: salt.finalize(),
            profile_preprocess: tuning.profile_preprocess,
            cancel: CancelToken::new(),
            admission,
        })
    }

    /// The limits every request is checked against before any work.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn model(&self) -> &Qwen3Vl {
        &self.model
    }

    /// How greedy decoding steps run from the next request on (by default
    /// as the engine's options said). For comparisons.
    pub fn set_decode_path(&mut self, path: DecodePath) {
        self.decoder.set_path(path);
    }

    pub fn decode_path(&self) -> DecodePath {
        self.decoder.path()
    }

    pub fn preprocessor(&self) -> &PreprocessorConfig {
        &self.pre
    }

    pub fn prompts(&self) -> &PromptBuilder {
        &self.prompts
    }

    /// Cancels the request in progress (checked between steps) and any later
    /// one until `reset` is called on the token.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    // --- cache controls ---

    pub fn cache_enabled(&self) -> bool {
        self.cache_enabled
    }

    pub fn set_cache_enabled(&mut self, enabled: bool) {
        self.cache_enabled = enabled;
    }

    /// Drops every cached entry and resets the counters.
    pub fn clear_cache(&mut self) {
        self.prefix_cache.clear();
        self.vision_cache.clear();
    }

    pub fn set_cache_budget(&mut self, prefix_bytes: Option<usize>, vision_bytes: Option<usize>) {
        if let Some(b) = prefix_bytes {
            self.prefix_cache.set_budget(b);
        }
        if let Some(b) = vision_bytes {
            self.vision_cache.set_budget(b);
        }
    }

    pub fn cache_stats(&self) -> CacheStats {
        let (p, v) = (&self.prefix_cache, &self.vision_cache);
        CacheStats {
            enabled: self.cache_enabled,
            prefix_lookups: p.lookups,
            prefix_exact_hits: p.exact_hits,
            prefix_partial_hits: p.partial_hits,
            prefix_misses: p.misses,
            prefix_reused_tokens: p.reused_tokens,
            prefix_evictions: p.evictions(),
            prefix_entries: p.entries() as u64,
            prefix_bytes: p.bytes() as u64,
            prefix_budget_bytes: p.budget() as u64,
            vision_lookups: v.lookups,
            vision_hits: v.hits,
            vision_misses: v.misses,
            vision_evictions: v.lru().evictions(),
            vision_entries: v.lru().len() as u64,
            vision_bytes: v.lru().used() as u64,
            vision_budget_bytes: v.lru().budget() as u64,
        }
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Runs one request. `on_event` sees each stage and token as it happens.
    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<GenerateResponse> {
        let clock = Clock::start();
        validate_request(req)?;
        mlx::reset_peak_memory();
        self.check_cancel()?;
        self.cancel.clear_finish();
        let mut marks = StageMarks::new(self.profile_preprocess);
        let image_token = self.model.config.tokens.image;
        let mut plan = RequestPlan::new(req, &self.pre, &self.prompts, image_token, &mut marks)?;
        self.admit(&plan, req.max_tokens)?;
        let (mut kv, mut report) = self.lookup_prefix(&plan, req.max_tokens)?;
        marks.mark("prefix lookup");
        let (mut features, to_encode) =
            self.prepare_images(req, &plan, &mut report, &mut marks, false)?;
        marks.report("preprocess profile");
        let preprocessed = clock.now();
        on_event(&Event::Preprocessed { at_s: preprocessed });
        self.check_cancel()?;
        let cancel = self.cancel.clone();
        self.encode_images(to_encode, &mut features, &mut report, &cancel)?;
        let encoded = clock.now();
        on_event(&Event::VisionEncoded { at_s: encoded });
        let mut sampler = Sampler::new(req.sampling)?;
        let reuse = report.reused_tokens;
        let first = self.prefill(&plan, &features, reuse, &mut kv, &mut sampler)?;
        self.remember_prefix(&mut plan, &kv)?;
        let rules = StopRules {
            max_tokens: req.max_tokens,
            ignore_eos: req.ignore_eos,
            eos: &self.info.eos_token_ids,
        };
        let pos = plan.positions.next_position();
        let text = &self.model.text;
        let more = req.max_tokens > 1;
        let mut steps = self
            .decoder
            .start(text, sampler, &first.token, &kv, pos, more)?;
        let first_token = Pending::Mlx(first.token);
        let decoded = decode_loop::decode(
            &mut steps,
            first_token,
            &mut kv,
            &rules,
            &self.cancel,
            clock,
            on_event,
        )?;
        steps.finish()?;
        let total = clock.now();
        on_event(&Event::Finished { at_s: total });
        let first_logits = req.return_logits.then_some(first.logits);
        let stages = [preprocessed, encoded, total];
        self.respond(&plan, decoded, report, first_logits, stages)
    }

    /// The response of a decoded request: its text and counts, and its
    /// stage timings from the times preprocessing, the vision encoder and
    /// the whole request ended.
    fn respond(
        &self,
        plan: &RequestPlan,
        decoded: Decoded,
        cache: CacheReport,
        first_logits: Option<mlx::Array>,
        [preprocessed, encoded, total]: [f64; 3],
    ) -> Result<GenerateResponse> {
        // Copied to the host after decoding, so the copy is not timed as TTFT.
        let first_logits = first_logits.map(|l| l.to_f32_vec()).transpose()?;
        let text = self.prompts.tokenizer.decode(&decoded.ids, true)?;
        let len = plan.len();
        let image_tokens: usize = plan.counts.iter().sum();
        let ttft = decoded.times.first().copied().unwrap_or(total);
        let timings = Timings {
            preprocess_s: preprocessed,
            vision_s: encoded - preprocessed,
            prefill_s: ttft - encoded,
            ttft_s: ttft,
            decode_s: decoded.times.last().copied().unwrap_or(ttft) - ttft,
            total_s: total,
            token_times_s: decoded.times,
        };
        Ok(GenerateResponse {
            text,
            output_tokens: decoded.ids.len(),
            token_ids: decoded.ids,
            prompt_tokens: len,
            image_tokens,
            text_tokens: len - image_tokens,
            finish_reason: decoded.finish,
            timings,
            cache,
            peak_memory_bytes: mlx::memory_stats().peak as u64,
            first_logits,
        })
    }

    /// Refuses a request whose positions or memory pass the engine's
    /// limits; else its cost.
    fn admit(&self, plan: &RequestPlan, max_tokens: usize) -> Result<Cost> {
        let merge = self.pre.merge_size * self.pre.merge_size;
        let patches: Vec<usize> = plan.counts.iter().map(|c| c * merge).collect();
        let cost = self.admission.cost(plan.len(), max_tokens, &patches);
        let image_tokens = plan.counts.iter().sum();
        self.admission.admit(&cost, plan.len(), image_tokens)?;
        Ok(cost)
    }

    fn vision_key(&self, image: &blake3::Hash) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(self.vision_key_salt.as_bytes());
        h.update(image.as_bytes());
        h.finalize()
    }
}

/// Limits per request: the options' when given, else what `memory`
/// holds beside the loaded weights and `caches` bytes of cache budgets (a
/// tenth kept for the allocator and the process). Pieces of work take an
/// eighth of it, at most 4 GiB, and about a quarter of a second: 1.5e14
/// operations on a GPU (an H100 at about 300 TFLOP/s in prefill, a single
/// piece up to 8,000 tokens of the 8B), 2e9 on the CPU (MLX's CPU attention
/// ran at about 5 GFLOP/s on a 2-core x86-64).
fn admission_for(
    cfg: &ModelConfig,
    model: &Qwen3Vl,
    opts: &EngineOptions,
    memory: u64,
    caches: u64,
) -> Admission {
    let weights = mlx::memory_stats().active as u64;
    let limit = opts.request_memory.unwrap_or_else(|| {
        (memory - memory / 10)
            .saturating_sub(weights)
            .saturating_sub(caches)
    });
    let on_gpu = mlx::default_device() == mlx::Device::Gpu;
    let budgets = Budgets {
        memory: limit,
        scratch: (limit / 8).clamp(16 << 20, 4 << 30),
        piece_flops: opts
            .piece_flops
            .unwrap_or(if on_gpu { 1.5e14 } else { 2e9 }),
    };
    Admission::new(cfg, model.text.dtype().size_of(), budgets)
}

/// Our kernels as `tuning` asks, shaped for this GPU's SMs; a warning where
/// their check turned them off.
fn start_kernels(tuning: &Tuning, header_dir: Option<PathBuf>) -> Arc<Kernels> {
    let mut launch = tuning.launch.clone();
    launch.sms = mlx::cuda::sm_count().map_or(0, |n| n as i32);
    let (kernels, warning) = Kernels::start(KernelOptions {
        enabled: tuning.kernels,
        launch,
        header_dir,
    });
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    kernels
}
