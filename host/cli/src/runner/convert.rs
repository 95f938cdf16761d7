//! Between the WIT types plugins use and the engine's and store's own.

use engine::cache::PrefixOutcome as EnginePrefix;
use engine::prompt::{Content, Message};
use engine::{FinishReason, GenerateRequest, GenerateResponse, ModelInfo, Sampling};
use runtime::bindings::wit_engine as w;

pub fn request(
    req: &w::GenerateRequest,
    images: Vec<std::sync::Arc<engine::image::RgbImage>>,
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

pub fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

pub fn response(id: u64, r: GenerateResponse) -> w::GenerateResponse {
    let t = &r.timings;
    w::GenerateResponse {
        request_id: id,
        text: r.text,
        token_ids: r.token_ids,
        prompt_tokens: r.prompt_tokens as u32,
        image_tokens: r.image_tokens as u32,
        text_tokens: r.text_tokens as u32,
        output_tokens: r.output_tokens as u32,
        finish_reason: finish_name(r.finish_reason).into(),
        timings: w::Timings {
            preprocess_ms: t.preprocess_s * 1e3,
            vision_ms: t.vision_s * 1e3,
            prefill_ms: t.prefill_s * 1e3,
            ttft_ms: t.ttft_s * 1e3,
            decode_ms: t.decode_s * 1e3,
            total_ms: t.total_s * 1e3,
            token_times_ms: t.token_times_s.iter().map(|s| s * 1e3).collect(),
        },
        cache: w::CacheReport {
            prefix: prefix(r.cache.prefix),
            reused_tokens: r.cache.reused_tokens as u32,
            vision_hits: r.cache.vision_hits as u32,
            vision_misses: r.cache.vision_misses as u32,
            vision_skipped: r.cache.vision_skipped as u32,
        },
        peak_memory_bytes: r.peak_memory_bytes,
        first_logits: r.first_logits.unwrap_or_default(),
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
