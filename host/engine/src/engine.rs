//! The engine: a loaded model with its processor and caches, answering
//! generation requests with timed events.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mlx::Array;
use serde::Serialize;

use crate::cache::{CacheReport, CacheStats, PrefixCache, PrefixOutcome, VisionCache, token_keys};
use crate::config::{ModelConfig, PreprocessorConfig};
use crate::error::{Error, Result};
use crate::generate::{
    CancelToken, Event, FinishReason, GenerateRequest, GenerateResponse, Timings,
};
use crate::image::{model_size, patch_array, stage_for_model};
use crate::model::positions::{mrope_tables, rope_positions};
use crate::model::{
    DecodePath, KvCache, Qwen3Vl, Rope, StepSession, VisionFeatures, Visual, assemble_inputs,
    image_spans,
};
use crate::prompt::{ChatTemplate, PromptBuilder, TextTokenizer};
use crate::sampler::Sampler;

/// The longest output one request may ask for.
pub const MAX_NEW_TOKENS: usize = 32_768;
/// Output positions a request's cache holds from its prefill on (151 MB of
/// keys and values for the 8B in bf16, by its shapes); longer outputs grow
/// it in steps as they go.
const RESERVED_OUTPUT: usize = 1024;

/// What produced a result: enough to tell two models apart and to say
/// whether the weights were real.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub name: String,
    /// blake3 of `config.json`.
    pub config_hash: String,
    /// `bf16`, `f32`, `4-bit g64`, ...
    pub quantization: String,
    /// The checkpoint's float dtype.
    pub dtype: String,
    /// The dtype the engine computes in (f32 on CPU, see `EngineOptions`).
    pub compute_dtype: String,
    pub synthetic: bool,
    pub synthetic_info: Option<serde_json::Value>,
    pub text_layers: usize,
    pub hidden_size: usize,
    pub vision_depth: usize,
    pub vocab_size: usize,
    pub eos_token_ids: Vec<u32>,
    pub image_token_id: u32,
    /// Bytes of dense copies of quantized matrices kept (0: none; see
    /// `EngineOptions::dense_copies`).
    pub dense_prefill_bytes: u64,
    /// Whether our own GPU kernels are in use.
    pub custom_kernels: bool,
    /// Whether single-token steps run the fused decoding kernels (4-bit
    /// models on CUDA).
    pub fused_decode: bool,
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub cache_enabled: bool,
    /// Byte budgets; `None` derives them from the device's memory.
    pub prefix_budget: Option<usize>,
    pub vision_budget: Option<usize>,
    /// Compute in this dtype instead of the checkpoint's. The default is f32
    /// on the CPU backend (its bf16 matmul was 20x slower than f32 with
    /// OpenBLAS here) and the checkpoint's own dtype on GPUs.
    pub compute_dtype: Option<mlx::Dtype>,
    /// Keep dense copies of quantized decoder matrices. `None`: when they
    /// fit in a third of device memory. On GPUs they serve prefill (MLX
    /// CUDA's 4-bit matmul ran 3-5x slower than bf16 there); on the CPU, in
    /// f32, they serve every step with the LM head's copy too (2B 4-bit
    /// here: MLX's CPU quantized matmul gave a 75 s TTFT against 4 s dense).
    pub dense_copies: Option<bool>,
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
        }
    }
}

pub struct Engine {
    model: Qwen3Vl,
    prompts: PromptBuilder,
    pre: PreprocessorConfig,
    info: ModelInfo,
    cache_enabled: bool,
    vision_cache: VisionCache,
    prefix_cache: PrefixCache,
    /// Processor settings and model identity, folded into vision cache keys.
    vision_key_salt: blake3::Hash,
    cancel: CancelToken,
}

/// Device memory in bytes (MLX's view, else the system's).
pub fn device_memory_bytes() -> u64 {
    let dev = mlx::default_device();
    if let Ok(json) = mlx::device_info_json(dev)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&json)
    {
        for key in ["memory_size", "total_memory"] {
            if let Some(n) = v.get(key).and_then(serde_json::Value::as_u64) {
                return n;
            }
        }
    }
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|kb| kb.parse::<u64>().ok())
                })
        })
        .map_or(8 << 30, |kb| kb * 1024)
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
        // Our GPU kernels, if this backend has them and they pass their self-check.
        let _ = crate::kernels::enable();
        let mut model = Qwen3Vl::load(dir, config, opts.compute_dtype)?;
        let memory = device_memory_bytes() as usize;
        let on_gpu = mlx::default_device() == mlx::Device::Gpu;
        let budget = match opts.dense_copies {
            Some(false) => 0,
            Some(true) => usize::MAX,
            None => memory / 3,
        };
        // On the CPU the copies serve decoding too (no faster kernel there).
        let dense_prefill_bytes = model.text.add_dense_copies(budget, !on_gpu)?;
        let mut info = model_info(dir, &info_config, &model, &config_bytes);
        info.dense_prefill_bytes = dense_prefill_bytes as u64;
        info.custom_kernels = crate::kernels::enabled();
        info.fused_decode = model.text.fused_decode();
        let prefix_budget = opts.prefix_budget.unwrap_or((memory / 8).min(16 << 30));
        let vision_budget = opts.vision_budget.unwrap_or((memory / 32).min(4 << 30));
        let mut salt = blake3::Hasher::new();
        salt.update(info.config_hash.as_bytes());
        salt.update(serde_json::to_string(&pre).unwrap_or_default().as_bytes());
        Ok(Engine {
            model,
            prompts,
            pre,
            info,
            cache_enabled: opts.cache_enabled,
            vision_cache: VisionCache::new(vision_budget),
            prefix_cache: PrefixCache::new(prefix_budget),
            vision_key_salt: salt.finalize(),
            cancel: CancelToken::new(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn model(&self) -> &Qwen3Vl {
        &self.model
    }

    /// How greedy decoding steps run from the next request on (by default
    /// from the environment: `DecodePath::from_env`). For comparisons.
    pub fn set_decode_path(&mut self, path: DecodePath) {
        self.model.text.set_decode_path(path);
    }

    pub fn decode_path(&self) -> DecodePath {
        self.model.text.decode_path()
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
        let start = Instant::now();
        let since = |t: Instant| t.duration_since(start).as_secs_f64();
        validate_request(req)?;
        mlx::reset_peak_memory();
        self.check_cancel()?;

        // --- preprocessing: grids, prompt ids, cache lookup, patches of the images still needed
        let mut marks = StageMarks::from_env("VLM_BENCH_PROFILE_PREPROCESS");
        let merge = self.pre.merge_size;
        let mut grids = Vec::with_capacity(req.images.len());
        for img in &req.images {
            let (h, w) = model_size(img, &self.pre)?;
            grids.push([
                1,
                h as usize / self.pre.patch_size,
                w as usize / self.pre.patch_size,
            ]);
        }
        let counts: Vec<usize> = grids
            .iter()
            .map(|g| g.iter().product::<usize>() / (merge * merge))
            .collect();
        let ids = self.prompts.encode(&req.messages, &counts)?;
        let image_token = self.model.config.tokens.image;
        let spans = image_spans(&ids, image_token);
        if spans.len() != req.images.len() || spans.iter().zip(&counts).any(|(s, &c)| s.len != c) {
            return Err(Error::request(
                "the prompt's text contains image placeholder tokens of its own; remove them from the text",
            ));
        }
        marks.mark("prompt ids");
        let image_hashes: Vec<blake3::Hash> = req.images.iter().map(|i| i.content_hash()).collect();
        marks.mark("image hashes");
        let keys = token_keys(&ids, &spans, &image_hashes);
        let positions = rope_positions(&ids, image_token, &grids, merge)?;
        let len = ids.len();
        marks.mark("token keys, positions");

        let mut report = CacheReport {
            prefix: PrefixOutcome::Disabled,
            reused_tokens: 0,
            vision_hits: 0,
            vision_misses: 0,
            vision_skipped: 0,
        };
        let mut kv = KvCache::new(self.model.text.config().num_hidden_layers);
        if self.cache_enabled {
            report.prefix = PrefixOutcome::Miss;
            if let Some(hit) = self.prefix_cache.lookup(&keys)? {
                report.prefix = if hit.matched == len {
                    PrefixOutcome::Exact
                } else {
                    PrefixOutcome::Partial
                };
                report.reused_tokens = hit.reuse;
                for (layer, (k, v)) in kv.layers.iter_mut().zip(hit.kv) {
                    *layer = crate::model::kv_cache::LayerCache::from_prefix(k, v);
                }
            }
        }
        let reuse = report.reused_tokens;
        // Room for the output from the start (up to a bound on the memory
        // held for output that may never come).
        kv.reserve((len + req.max_tokens.min(RESERVED_OUTPUT)) as i32);
        marks.mark("prefix lookup");

        // Images whose placeholders all fall in the reused prefix are not needed.
        let mut features: Vec<Option<VisionFeatures>> = vec![None; req.images.len()];
        let mut to_encode = vec![];
        for (i, span) in spans.iter().enumerate() {
            if span.start + span.len <= reuse {
                report.vision_skipped += 1;
                continue;
            }
            let key = self.vision_key(&image_hashes[i]);
            if self.cache_enabled
                && let Some(f) = self.vision_cache.get(&key)
            {
                report.vision_hits += 1;
                features[i] = Some(f);
                continue;
            }
            let u8s = stage_for_model(&req.images[i], &self.pre)?;
            marks.mark("resize into staging");
            let (pixels, grid) = patch_array(&u8s, &self.pre)?;
            marks.mark("patch graph");
            pixels.eval()?;
            marks.mark("upload, normalise, patches");
            to_encode.push((i, key, pixels, grid));
        }
        if let Some(m) = marks {
            m.report("preprocess profile");
        }
        let t_pre = Instant::now();
        on_event(&Event::Preprocessed { at_s: since(t_pre) });
        self.check_cancel()?;

        // --- vision encoder
        for (i, key, pv, grid) in to_encode {
            let f = self.model.vision.forward(&pv, grid)?;
            let mut outs = vec![&f.merged];
            outs.extend(f.deepstack.iter());
            mlx::eval(&outs)?;
            if self.cache_enabled {
                self.vision_cache.insert(key, f.clone());
            }
            report.vision_misses += 1;
            features[i] = Some(f);
            self.check_cancel()?;
        }
        let t_vis = Instant::now();
        on_event(&Event::VisionEncoded { at_s: since(t_vis) });

        // --- prefill of the tokens not reused
        let text = &self.model.text;
        let needed: Vec<(crate::model::ImageSpan, &VisionFeatures)> = spans
            .iter()
            .zip(&features)
            .filter_map(|(s, f)| f.as_ref().map(|f| (*s, f)))
            .collect();
        let (sp, fr): (Vec<_>, Vec<_>) = needed.into_iter().unzip();
        let (x, deep) = assemble_inputs(text, &ids, &sp, &fr, reuse, len)?;
        let suffix = positions.slice(reuse, len);
        let rope = match suffix.is_plain_from() {
            Some(p) => Rope::Offset(p),
            None => {
                let hd = text.config().head_dim;
                let (cos, sin) = mrope_tables(
                    &suffix,
                    text.config().rope_theta,
                    hd,
                    text.config().mrope_section,
                );
                let n = (len - reuse) as i32;
                Rope::Tables {
                    cos: mlx::Staging::f32_array(&cos, &[n, hd as i32])?,
                    sin: mlx::Staging::f32_array(&sin, &[n, hd as i32])?,
                }
            }
        };
        let visual = Visual { deepstack: &deep };
        let h = text.forward(
            &x,
            &rope,
            &mut kv,
            if deep.is_empty() { None } else { Some(&visual) },
        )?;
        let last = h
            .slice_axis(1, (len - reuse) as i32 - 1, (len - reuse) as i32)?
            // Kept 2-D: MLX CUDA's quantized matmul needs a row of inputs.
            .reshape(&[1, -1])?;
        let logits = text.logits(&last)?.reshape(&[-1])?;
        let mut sampler = Sampler::new(req.sampling)?;
        let token = sampler.sample(&logits)?;
        mlx::async_eval(&[&token])?;

        // Keep the prompt's KV for later requests (before decoding extends it).
        if self.cache_enabled {
            let prompt_kv = kv
                .layers
                .iter()
                .map(|l| l.prefix(len as i32))
                .collect::<Result<Option<Vec<_>>>>()?;
            if let Some(prompt_kv) = prompt_kv {
                self.prefix_cache.insert(keys, prompt_kv);
            }
        }
        let text = &self.model.text;
        // Copied to the host after decoding, so the copy is not timed as TTFT.
        let first_logits = req.return_logits.then_some(logits);

        // --- decode, one step ahead of the host (the next step is queued
        // before the current token is read back). Greedy requests run their
        // steps outside MLX's graph where that applies (`TextModel::start_steps`).
        let eos = &self.info.eos_token_ids;
        let mut next_pos = positions.next_position();
        let mut out_ids = Vec::with_capacity(req.max_tokens);
        let mut times = Vec::with_capacity(req.max_tokens);
        let mut finish = FinishReason::Length;
        let mut profile = StepProfile::from_env();
        let mut steps = if sampler.is_greedy() && req.max_tokens > 1 {
            text.start_steps(&token, &kv, next_pos)?
        } else {
            None
        };
        // Queues the step after `pending` (and counts its position): on the
        // step runner, or built from MLX operations and handed to MLX.
        let mut queue = |pending: &Pending,
                         steps: &mut Option<StepSession<'_>>,
                         profile: &mut Option<StepProfile>|
         -> Result<Pending> {
            let started = Instant::now();
            let (next, built) = match (steps.as_mut(), pending) {
                (Some(s), _) => (Pending::Slot(s.queue(&mut kv)?), Instant::now()),
                (None, Pending::Mlx(token)) => {
                    let x = text.embed_array(&token.reshape(&[1])?)?.expand_dims(0)?;
                    let h = text.forward(&x, &Rope::Offset(next_pos), &mut kv, None)?;
                    let logits = text.logits(&h.reshape(&[1, -1])?)?.reshape(&[-1])?;
                    let t = sampler.sample(&logits)?;
                    let built = Instant::now();
                    mlx::async_eval(&[&t])?;
                    (Pending::Mlx(t), built)
                }
                (None, Pending::Slot(_)) => {
                    unreachable!("slots come only from the step runner")
                }
            };
            next_pos += 1;
            if let Some(p) = profile.as_mut() {
                p.build_s += built.duration_since(started).as_secs_f64();
                p.dispatch_s += built.elapsed().as_secs_f64();
                p.steps += 1;
            }
            Ok(next)
        };
        let mut pending = Pending::Mlx(token);
        loop {
            let more = out_ids.len() + 1 < req.max_tokens;
            // The step runner's first token is ready once `start_steps`
            // returns: it is read before the first step is queued, which
            // would delay it.
            let first_on_runner = steps.is_some() && out_ids.is_empty();
            let mut next = None;
            if more && !first_on_runner {
                next = Some(queue(&pending, &mut steps, &mut profile)?);
            }
            let waiting = Instant::now();
            let id = match (&pending, steps.as_mut()) {
                (Pending::Mlx(t), _) => t.item::<u32>()?,
                (Pending::Slot(slot), Some(s)) => s.token(*slot)?,
                (Pending::Slot(_), None) => unreachable!("slots come only from the step runner"),
            };
            if let Some(p) = profile.as_mut() {
                p.wait_s += waiting.elapsed().as_secs_f64();
            }
            let now = since(Instant::now());
            times.push(now);
            on_event(&Event::Token {
                index: out_ids.len(),
                id,
                at_s: now,
            });
            out_ids.push(id);
            if !req.ignore_eos && eos.contains(&id) {
                finish = FinishReason::Stop;
                break;
            }
            if more && first_on_runner {
                next = Some(queue(&pending, &mut steps, &mut profile)?);
            }
            match next {
                Some(p) => pending = p,
                None => break,
            }
            self.check_cancel()?;
        }
        // MLX may read the caches (the prefix cache's copies) only after the
        // steps that wrote them.
        if let Some(s) = steps {
            s.finish()?;
        }
        let total = since(Instant::now());
        if let Some(p) = profile {
            p.report();
        }
        on_event(&Event::Finished { at_s: total });
        let first_logits = first_logits.map(|l| l.to_f32_vec()).transpose()?;

        let text_out = self.prompts.tokenizer.decode(&out_ids, true)?;
        let image_tokens: usize = counts.iter().sum();
        let ttft = times.first().copied().unwrap_or(total);
        let timings = Timings {
            preprocess_s: since(t_pre),
            vision_s: t_vis.duration_since(t_pre).as_secs_f64(),
            prefill_s: ttft - since(t_vis),
            ttft_s: ttft,
            decode_s: times.last().copied().unwrap_or(ttft) - ttft,
            total_s: total,
            token_times_s: times,
        };
        Ok(GenerateResponse {
            text: text_out,
            output_tokens: out_ids.len(),
            token_ids: out_ids,
            prompt_tokens: len,
            image_tokens,
            text_tokens: len - image_tokens,
            finish_reason: finish,
            timings,
            cache: report,
            peak_memory_bytes: mlx::memory_stats().peak as u64,
            first_logits,
        })
    }

    fn vision_key(&self, image: &blake3::Hash) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(self.vision_key_salt.as_bytes());
        h.update(image.as_bytes());
        h.finalize()
    }
}

/// Checks a request before any work: token limits, image count, sampling.
pub fn validate_request(req: &GenerateRequest) -> Result<()> {
    if req.max_tokens == 0 || req.max_tokens > MAX_NEW_TOKENS {
        return Err(Error::request(format!(
            "max_tokens must be between 1 and {MAX_NEW_TOKENS}, got {}",
            req.max_tokens
        )));
    }
    let placeholders: usize = req.messages.iter().map(|m| m.image_count()).sum();
    if placeholders != req.images.len() {
        return Err(Error::request(format!(
            "the messages hold {placeholders} image items but {} images were given",
            req.images.len()
        )));
    }
    if req.messages.is_empty() {
        return Err(Error::request("no messages"));
    }
    req.sampling.validate()
}

fn model_info(dir: &Path, cfg: &ModelConfig, model: &Qwen3Vl, config_bytes: &[u8]) -> ModelInfo {
    let path: PathBuf = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let compute_dtype = format!("{:?}", model.text.dtype()).to_lowercase();
    let dtype = match cfg.torch_dtype.as_deref() {
        Some("bfloat16") => "bf16".to_string(),
        Some("float16") => "f16".to_string(),
        Some("float32") => "f32".to_string(),
        Some(other) => other.to_string(),
        None => compute_dtype.clone(),
    };
    let quantization = match &cfg.quantization {
        Some(q) => format!("{}-bit g{}", q.default.bits, q.default.group_size),
        None => dtype.clone(),
    };
    ModelInfo {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        path: path.display().to_string(),
        config_hash: blake3::hash(config_bytes).to_hex().to_string(),
        quantization,
        dtype,
        compute_dtype,
        synthetic: cfg.is_synthetic(),
        synthetic_info: cfg.synthetic.clone(),
        text_layers: cfg.text.num_hidden_layers,
        hidden_size: cfg.text.hidden_size,
        vision_depth: cfg.vision.depth,
        vocab_size: cfg.text.vocab_size,
        eos_token_ids: cfg.tokens.eos.clone(),
        image_token_id: cfg.tokens.image,
        dense_prefill_bytes: 0,
        custom_kernels: false,
        fused_decode: false,
    }
}

/// Named intervals of one stage, printed to stderr when the environment
/// variable given to [`StageMarks::from_env`] is set (a profiling aid).
struct StageMarks {
    last: Instant,
    spans: Vec<(&'static str, f64)>,
}

impl StageMarks {
    fn from_env(var: &str) -> Option<StageMarks> {
        std::env::var_os(var).map(|_| StageMarks {
            last: Instant::now(),
            spans: vec![],
        })
    }

    fn report(&self, title: &str) {
        let parts: Vec<String> = self
            .spans
            .iter()
            .map(|(name, s)| format!("{name} {:.2} ms", s * 1e3))
            .collect();
        eprintln!("{title}: {}", parts.join(", "));
    }
}

/// Marks the end of a named interval; `None` (profiling off) does nothing.
trait Mark {
    fn mark(&mut self, name: &'static str);
}

impl Mark for Option<StageMarks> {
    fn mark(&mut self, name: &'static str) {
        if let Some(m) = self {
            let now = Instant::now();
            m.spans
                .push((name, now.duration_since(m.last).as_secs_f64()));
            m.last = now;
        }
    }
}

/// A token on its way to the host: an MLX array, or a step runner's slot.
enum Pending {
    Mlx(Array),
    Slot(usize),
}

/// Where the host's time goes in the decode loop, printed to stderr after
/// each request when `VLM_BENCH_PROFILE_DECODE` is set: building a step's
/// graph, handing it to MLX (or, on the step runner, building the launch
/// list and launching it), and waiting for the previous step's token. A
/// wait near zero means the host, not the device, sets the pace.
#[derive(Default)]

struct StepProfile {
    steps: usize,
    build_s: f64,
    dispatch_s: f64,
    wait_s: f64,
}

impl StepProfile {
    fn from_env() -> Option<StepProfile> {
        std::env::var_os("VLM_BENCH_PROFILE_DECODE").map(|_| StepProfile::default())
    }

    fn report(&self) {
        let per = |s: f64| s * 1e6 / self.steps.max(1) as f64;
        eprintln!(
            "decode profile: {} steps; per step: build {:.0} µs, dispatch {:.0} µs, wait {:.0} µs",
            self.steps,
            per(self.build_s),
            per(self.dispatch_s),
            per(self.wait_s)
        );
    }
}
