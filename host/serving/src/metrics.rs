//! The server's counters, in Prometheus' text format at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::GenerateResponse;
use engine::cache::CacheStats;

#[derive(Debug, Default)]
pub struct Metrics {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    /// Refused with 429 or 503 (queue full, engine stopped).
    pub rejected: AtomicU64,
    /// Waiting in the queue.
    pub queued: AtomicU64,
    /// Requests in the running batch (in prefill or decoding).
    pub running: AtomicU64,
    /// Sequences the last step decoded together.
    pub decoding: AtomicU64,
    /// The most sequences decoded together since the server started.
    pub decoding_peak: AtomicU64,
    /// Memory the requests in the batch were admitted for.
    pub batch_bytes: AtomicU64,
    /// Batch steps run.
    pub steps: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub prefix_hits: AtomicU64,
    pub prefix_reused_tokens: AtomicU64,
    pub vision_hits: AtomicU64,
    pub vision_misses: AtomicU64,
    /// Bytes the prefix cache holds (keys and values of cached prompts).
    pub prefix_cache_bytes: AtomicU64,
    /// The last request's peak memory on the device.
    pub peak_memory_bytes: AtomicU64,
}

impl Metrics {
    /// Takes in a finished request (`None`: it failed) and the caches' state.
    pub fn after_request(&self, cache: &CacheStats, response: Option<&(String, GenerateResponse)>) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::SeqCst);
        set(
            &self.prefix_hits,
            cache.prefix_exact_hits + cache.prefix_partial_hits,
        );
        set(&self.prefix_reused_tokens, cache.prefix_reused_tokens);
        set(&self.vision_hits, cache.vision_hits);
        set(&self.vision_misses, cache.vision_misses);
        set(&self.prefix_cache_bytes, cache.prefix_bytes);
        if let Some((_, r)) = response {
            self.completed.fetch_add(1, Ordering::SeqCst);
            self.prompt_tokens
                .fetch_add(r.prompt_tokens as u64, Ordering::SeqCst);
            self.completion_tokens
                .fetch_add(r.output_tokens as u64, Ordering::SeqCst);
            set(&self.peak_memory_bytes, r.peak_memory_bytes);
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "vlm_requests_total",
            "counter",
            "Requests by how they ended.",
            &[
                ("{status=\"completed\"}", get(&self.completed)),
                ("{status=\"failed\"}", get(&self.failed)),
                ("{status=\"cancelled\"}", get(&self.cancelled)),
                ("{status=\"rejected\"}", get(&self.rejected)),
            ],
        );
        let gauges: [(&str, &str, &AtomicU64); 7] = [
            (
                "vlm_queue_depth",
                "Requests waiting for the engine.",
                &self.queued,
            ),
            (
                "vlm_running_requests",
                "Requests in the running batch, in prefill or decoding.",
                &self.running,
            ),
            (
                "vlm_batch_size",
                "Sequences the last step decoded together.",
                &self.decoding,
            ),
            (
                "vlm_batch_size_peak",
                "The most sequences decoded together since the server started.",
                &self.decoding_peak,
            ),
            (
                "vlm_batch_memory_bytes",
                "Memory (KV cache and work) the requests in the batch were admitted for.",
                &self.batch_bytes,
            ),
            (
                "vlm_prefix_cache_bytes",
                "Bytes of keys and values the prefix cache holds.",
                &self.prefix_cache_bytes,
            ),
            (
                "vlm_peak_memory_bytes",
                "The last request's peak device memory.",
                &self.peak_memory_bytes,
            ),
        ];
        for (name, help, v) in gauges {
            metric(name, "gauge", help, &[("", get(v))]);
        }
        let counters: [(&str, &str, &AtomicU64); 7] = [
            ("vlm_batch_steps_total", "Batch steps run.", &self.steps),
            (
                "vlm_prompt_tokens_total",
                "Prompt tokens of completed requests.",
                &self.prompt_tokens,
            ),
            (
                "vlm_completion_tokens_total",
                "Output tokens of completed requests.",
                &self.completion_tokens,
            ),
            (
                "vlm_prefix_cache_hits_total",
                "Prefix cache hits, exact and partial.",
                &self.prefix_hits,
            ),
            (
                "vlm_prefix_cache_reused_tokens_total",
                "Prompt tokens the prefix cache reused.",
                &self.prefix_reused_tokens,
            ),
            (
                "vlm_vision_cache_hits_total",
                "Images whose features came from the vision cache.",
                &self.vision_hits,
            ),
            (
                "vlm_vision_cache_misses_total",
                "Images the vision tower encoded.",
                &self.vision_misses,
            ),
        ];
        for (name, help, v) in counters {
            metric(name, "counter", help, &[("", get(v))]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.completed.store(3, Ordering::SeqCst);
        m.queued.store(2, Ordering::SeqCst);
        let text = m.render();
        assert!(text.contains("# TYPE vlm_requests_total counter\n"));
        assert!(text.contains("vlm_requests_total{status=\"completed\"} 3\n"));
        assert!(text.contains("vlm_queue_depth 2\n"));
        // Every sample line is `name[{labels}] value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("vlm_"), "{line}");
            value.parse::<u64>().unwrap();
        }
    }
}
