//! Between the WIT types plugins use and the engine's and store's own.

use std::sync::Arc;

use engine::cache::PrefixOutcome as EnginePrefix;
use engine::image::RgbImage;
use engine::prompt::{Content, Message};
use engine::{GenerateRequest, GenerateResponse, ModelInfo, Sampling};
use runtime::bindings::wit_engine as w;
use store::{ImageDesc, RequestRow};

pub fn request(
    req: &w::GenerateRequest,
    images: &[Arc<RgbImage>],
) -> Result<GenerateRequest, String> {
    let n = images.len() as u32;
    let mut order = vec![];
    let messages = req
        .messages
        .iter()
        .map(|m| {
            let content = m
                .content
                .iter()
                .map(|c| match c {
                    w::ContentPart::Text(t) => Ok(Content::Text { text: t.clone() }),
                    w::ContentPart::Image(i) if *i < n => {
                        order.push(*i as usize);
                        Ok(Content::Image)
                    }
                    w::ContentPart::Image(i) => Err(format!(
                        "content refers to image {i}, but {n} images were passed"
                    )),
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Message {
                role: m.role.clone(),
                content,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    // The engine takes images in the order their parts appear.
    let ordered = order.iter().map(|&i| images[i].clone()).collect();
    Ok(GenerateRequest {
        messages,
        images: ordered,
        max_tokens: req.max_tokens as usize,
        sampling: Sampling {
            temperature: req.sampling.temperature,
            top_p: req.sampling.top_p,
            top_k: req.sampling.top_k,
            seed: req.sampling.seed,
        },
        ignore_eos: req.ignore_eos,
        return_logits: req.return_logits,
    })
}

pub fn prefix(p: EnginePrefix) -> w::PrefixOutcome {
    match p {
        EnginePrefix::Disabled => w::PrefixOutcome::Disabled,
        EnginePrefix::Miss => w::PrefixOutcome::Miss,
        EnginePrefix::Partial => w::PrefixOutcome::Partial,
        EnginePrefix::Exact => w::PrefixOutcome::Exact,
    }
}

pub fn prefix_name(p: EnginePrefix) -> &'static str {
    match p {
        EnginePrefix::Disabled => "disabled",
        EnginePrefix::Miss => "miss",
        EnginePrefix::Partial => "partial",
        EnginePrefix::Exact => "exact",
    }
}

/// How a request is recorded: the plugin's `request` with its `images` (in
/// the order it passed them), `req` (the engine's form of it) and its
/// response, the times in milliseconds.
pub fn request_row(
    request: &w::GenerateRequest,
    images: &[Arc<RgbImage>],
    req: &GenerateRequest,
    resp: &GenerateResponse,
    started_at: String,
) -> RequestRow {
    let mut row = engine_request_row(&request.label, images, req, resp, started_at);
    row.warmup = request.warmup;
    row.max_tokens = request.max_tokens;
    row
}

/// How a request the engine answered is recorded, under `label`.
pub fn engine_request_row(
    label: &str,
    images: &[Arc<RgbImage>],
    req: &GenerateRequest,
    resp: &GenerateResponse,
    started_at: String,
) -> RequestRow {
    let t = &resp.timings;
    RequestRow {
        label: label.to_string(),
        warmup: false,
        started_at,
        images: image_descs(images),
        max_tokens: req.max_tokens as u32,
        ignore_eos: req.ignore_eos,
        sampling: serde_json::to_value(req.sampling).unwrap_or_default(),
        prompt_tokens: resp.prompt_tokens as u32,
        image_tokens: resp.image_tokens as u32,
        text_tokens: resp.text_tokens as u32,
        output_tokens: resp.output_tokens as u32,
        finish_reason: resp.finish_reason.name().into(),
        preprocess_ms: t.preprocess_s * 1e3,
        vision_ms: t.vision_s * 1e3,
        prefill_ms: t.prefill_s * 1e3,
        ttft_ms: t.ttft_s * 1e3,
        decode_ms: t.decode_s * 1e3,
        total_ms: t.total_s * 1e3,
        token_times_ms: t.token_times_s.iter().map(|s| s * 1e3).collect(),
        cache_prefix: prefix_name(resp.cache.prefix).into(),
        cache_reused_tokens: resp.cache.reused_tokens as u32,
        vision_hits: resp.cache.vision_hits as u32,
        vision_misses: resp.cache.vision_misses as u32,
        vision_skipped: resp.cache.vision_skipped as u32,
        peak_memory_bytes: resp.peak_memory_bytes,
        output_preview: preview(&resp.text),
        ..RequestRow::default()
    }
}

/// The images of a request as the store describes them.
pub fn image_descs(images: &[Arc<RgbImage>]) -> Vec<ImageDesc> {
    images
        .iter()
        .map(|i| ImageDesc {
            name: String::new(),
            width: i.width,
            height: i.height,
            blake3: i.content_hash().to_hex().to_string(),
        })
        .collect()
}

/// The first characters of an output, for the store's listing.
pub fn preview(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        text.chars().take(MAX).collect::<String>() + "…"
    }
}

pub fn model_info(m: &ModelInfo, device: &str) -> w::ModelInfo {
    w::ModelInfo {
        name: m.name.clone(),
        path: m.path.clone(),
        quantization: m.quantization.clone(),
        dtype: m.dtype.clone(),
        compute_dtype: m.compute_dtype.clone(),
        synthetic: m.synthetic,
        text_layers: m.text_layers as u32,
        hidden_size: m.hidden_size as u32,
        vision_depth: m.vision_depth as u32,
        backend: mlx::runtime_backend(),
        device: device.to_string(),
        endpoint: None,
    }
}

pub fn cache_counters(s: &engine::cache::CacheStats) -> w::CacheCounters {
    w::CacheCounters {
        enabled: s.enabled,
        prefix_lookups: s.prefix_lookups,
        prefix_exact_hits: s.prefix_exact_hits,
        prefix_partial_hits: s.prefix_partial_hits,
        prefix_misses: s.prefix_misses,
        prefix_reused_tokens: s.prefix_reused_tokens,
        prefix_evictions: s.prefix_evictions,
        prefix_entries: s.prefix_entries,
        prefix_bytes: s.prefix_bytes,
        prefix_budget_bytes: s.prefix_budget_bytes,
        vision_hits: s.vision_hits,
        vision_misses: s.vision_misses,
        vision_entries: s.vision_entries,
        vision_bytes: s.vision_bytes,
    }
}
