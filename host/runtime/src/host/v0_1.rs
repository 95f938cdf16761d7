//! `vlmbench:workload/engine@0.1.0` for plugins built against it: each call
//! converted to the current interface and served by the same code, and each
//! answer converted back. The 0.1 shapes cannot say "unknown", so what a
//! backend did not report reads as zero there.

use wasmtime::Result;
use wasmtime::component::Resource;

use super::HostState;
use crate::bindings::v0_1::vlmbench::workload::engine as e1;
use crate::bindings::wit_engine as e2;
use crate::image_sets::ImageHandle;

impl e1::Host for HostState {
    fn model(&mut self) -> Result<e1::ModelInfo> {
        let m = self.services.engine.model_info();
        Ok(e1::ModelInfo {
            name: m.name,
            path: m.path,
            quantization: m.quantization,
            dtype: m.dtype,
            compute_dtype: m.compute_dtype,
            synthetic: m.synthetic,
            text_layers: m.text_layers,
            hidden_size: m.hidden_size,
            vision_depth: m.vision_depth,
            backend: m.backend,
            device: m.device,
        })
    }

    fn generate(
        &mut self,
        images: Vec<Resource<ImageHandle>>,
        request: e1::GenerateRequest,
    ) -> Result<Result<e1::GenerateResponse, String>> {
        let outcome = self.generate_now(&images, request_of(request))?;
        Ok(outcome.map(response_of).map_err(|e| e.message))
    }

    fn cache_stats(&mut self) -> Result<e1::CacheCounters> {
        let c = self
            .services
            .engine
            .cache_stats()
            .unwrap_or_else(crate::services::no_cache_counters);
        Ok(e1::CacheCounters {
            enabled: c.enabled,
            prefix_lookups: c.prefix_lookups,
            prefix_exact_hits: c.prefix_exact_hits,
            prefix_partial_hits: c.prefix_partial_hits,
            prefix_misses: c.prefix_misses,
            prefix_reused_tokens: c.prefix_reused_tokens,
            prefix_evictions: c.prefix_evictions,
            prefix_entries: c.prefix_entries,
            prefix_bytes: c.prefix_bytes,
            prefix_budget_bytes: c.prefix_budget_bytes,
            vision_hits: c.vision_hits,
            vision_misses: c.vision_misses,
            vision_entries: c.vision_entries,
            vision_bytes: c.vision_bytes,
        })
    }

    // 0.1 has no way to say these failed; the backends that refuse them
    // (servers) log why.
    fn cache_clear(&mut self) -> Result<()> {
        if let Err(e) = self.services.engine.cache_clear() {
            self.warn(&format!("cache-clear: {e}"));
        }
        Ok(())
    }

    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix: Option<u64>,
        vision: Option<u64>,
    ) -> Result<()> {
        if let Err(e) = self
            .services
            .engine
            .cache_configure(enabled, prefix, vision)
        {
            self.warn(&format!("cache-configure: {e}"));
        }
        Ok(())
    }
}

impl HostState {
    fn warn(&mut self, message: &str) {
        self.services
            .progress
            .log(crate::bindings::wit_progress::Level::Warn, message.into());
    }
}

fn request_of(r: e1::GenerateRequest) -> e2::GenerateRequest {
    e2::GenerateRequest {
        messages: r
            .messages
            .into_iter()
            .map(|m| e2::Message {
                role: m.role,
                content: m
                    .content
                    .into_iter()
                    .map(|c| match c {
                        e1::ContentPart::Text(t) => e2::ContentPart::Text(t),
                        e1::ContentPart::Image(i) => e2::ContentPart::Image(i),
                    })
                    .collect(),
            })
            .collect(),
        max_tokens: r.max_tokens,
        sampling: e2::Sampling {
            temperature: r.sampling.temperature,
            top_p: r.sampling.top_p,
            top_k: r.sampling.top_k,
            seed: r.sampling.seed,
        },
        ignore_eos: r.ignore_eos,
        label: r.label,
        warmup: r.warmup,
        return_logits: r.return_logits,
    }
}

fn prefix_of(p: e2::PrefixOutcome) -> e1::PrefixOutcome {
    match p {
        e2::PrefixOutcome::Disabled => e1::PrefixOutcome::Disabled,
        e2::PrefixOutcome::Miss => e1::PrefixOutcome::Miss,
        e2::PrefixOutcome::Partial => e1::PrefixOutcome::Partial,
        e2::PrefixOutcome::Exact => e1::PrefixOutcome::Exact,
    }
}

fn response_of(r: e2::GenerateResponse) -> e1::GenerateResponse {
    let t = r.timings;
    // One time per token: a chunk of several tokens gives each its time.
    let token_times_ms = t
        .chunks
        .iter()
        .flat_map(|c| std::iter::repeat_n(c.at_ms, c.tokens as usize))
        .collect();
    let cache = r.cache.unwrap_or(e2::CacheReport {
        prefix: e2::PrefixOutcome::Disabled,
        reused_tokens: r.reused_tokens.unwrap_or(0),
        vision_hits: 0,
        vision_misses: 0,
        vision_skipped: 0,
    });
    e1::GenerateResponse {
        request_id: r.request_id,
        text: r.text,
        token_ids: r.token_ids,
        prompt_tokens: r.prompt_tokens,
        image_tokens: r.image_tokens.unwrap_or(0),
        text_tokens: r.text_tokens.unwrap_or(0),
        output_tokens: r.output_tokens,
        finish_reason: r.finish_reason,
        timings: e1::Timings {
            preprocess_ms: t.preprocess_ms.unwrap_or(0.0),
            vision_ms: t.vision_ms.unwrap_or(0.0),
            prefill_ms: t.prefill_ms.unwrap_or(0.0),
            ttft_ms: t.ttft_ms,
            decode_ms: t.decode_ms,
            total_ms: t.total_ms,
            token_times_ms,
        },
        cache: e1::CacheReport {
            prefix: prefix_of(cache.prefix),
            reused_tokens: cache.reused_tokens,
            vision_hits: cache.vision_hits,
            vision_misses: cache.vision_misses,
            vision_skipped: cache.vision_skipped,
        },
        peak_memory_bytes: r.peak_memory_bytes.unwrap_or(0),
        first_logits: r.first_logits.unwrap_or_default(),
    }
}
