//! Any OpenAI-compatible server as a run's backend (`host run --endpoint`):
//! each request goes out on a thread of its own at its scheduled time, as a
//! streamed chat completion with its images as `data:` URIs (PNG, so the
//! server gets exactly the host's pixels), and is timed here, on the host,
//! from the events as they arrive.

mod client;
mod metrics;
pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use imaging::RgbImage;
use runtime::bindings::wit_engine as w;
use runtime::{CancelFn, Completion, EngineService, ServiceError, Submission};

use super::local::sleep_until;
use super::record::{Answer, Recorder, asked_row, error, lock};
pub use client::{Endpoint, ServerInfo};
pub use metrics::{ServerMetrics, metrics_table};

/// Encoded images kept for reuse, at most (a sweep sends the same few
/// images many times).
const ENCODED_CACHE_BYTES: usize = 512 << 20;

/// A server as the engine of a run.
pub struct EndpointEngine {
    endpoint: Arc<Endpoint>,
    info: w::ModelInfo,
    recorder: Recorder,
    encoded: Arc<Mutex<EncodedImages>>,
}

/// PNG `data:` URIs by image content.
#[derive(Default)]
struct EncodedImages {
    by_hash: HashMap<blake3::Hash, Arc<String>>,
    bytes: usize,
}

impl EncodedImages {
    fn get(&mut self, img: &RgbImage) -> Result<Arc<String>, String> {
        let hash = img.content_hash();
        if let Some(uri) = self.by_hash.get(&hash) {
            return Ok(uri.clone());
        }
        let png = imaging::encode_image(img, imaging::Encoding::Png)
            .map_err(|e| format!("cannot encode an image as PNG: {e}"))?;
        use base64::Engine as _;
        let uri = Arc::new(format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        ));
        if self.bytes + uri.len() > ENCODED_CACHE_BYTES {
            self.by_hash.clear();
            self.bytes = 0;
        }
        self.bytes += uri.len();
        self.by_hash.insert(hash, uri.clone());
        Ok(uri)
    }
}

impl EndpointEngine {
    pub fn new(endpoint: Endpoint, server: &ServerInfo, recorder: Recorder) -> EndpointEngine {
        let info = w::ModelInfo {
            name: endpoint.model.clone(),
            path: String::new(),
            quantization: String::new(),
            dtype: String::new(),
            compute_dtype: String::new(),
            synthetic: false,
            text_layers: 0,
            hidden_size: 0,
            vision_depth: 0,
            backend: "endpoint".into(),
            device: server.server.clone(),
            endpoint: Some(w::EndpointInfo {
                url: endpoint.base.clone(),
                model: endpoint.model.clone(),
                server: server.server.clone(),
            }),
        };
        EndpointEngine {
            endpoint: Arc::new(endpoint),
            info,
            recorder,
            encoded: Arc::default(),
        }
    }
}

const NO_CACHE_CONTROL: &str =
    "the run measures a server (--endpoint): its caches are out of the host's reach";

impl EngineService for EndpointEngine {
    fn model_info(&mut self) -> w::ModelInfo {
        self.info.clone()
    }

    fn submit(&mut self, sub: Submission, done: Completion) -> Result<CancelFn, ServiceError> {
        if sub.request.return_logits {
            return Err(ServiceError::rejected(
                "return-logits: a server does not return logits; ask without it",
            ));
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let endpoint = self.endpoint.clone();
        let recorder = self.recorder.clone();
        let encoded = self.encoded.clone();
        let id = done.id();
        std::thread::Builder::new()
            .name(format!("request-{id}"))
            .stack_size(512 << 10)
            .spawn(move || {
                let started_at = store::now_rfc3339();
                let mut row = asked_row(&sub.request, &sub.images, started_at, true);
                // Encoded before the clock starts: the server's time is measured.
                let uris: Result<Vec<Arc<String>>, String> =
                    sub.images.iter().map(|i| lock(&encoded).get(i)).collect();
                let body = uris.and_then(|u| client::chat_body(&endpoint, &sub.request, &u));
                let body = match body {
                    Ok(b) => b,
                    Err(e) => {
                        let err = error(w::ErrorKind::Invalid, e, None, None);
                        return recorder.failed(done, row, err);
                    }
                };
                if let Some(at) = sub.start_at {
                    sleep_until(at, &flag);
                }
                if flag.load(Ordering::SeqCst) {
                    let err = error(
                        w::ErrorKind::Cancelled,
                        "dropped before it was sent",
                        None,
                        None,
                    );
                    return done.finish(Err(err));
                }
                let now = Instant::now();
                row.started_at = store::now_rfc3339();
                row.sent_at_ms = Some(now.duration_since(sub.clock_zero).as_secs_f64() * 1e3);
                row.late_ms = Some(sub.start_at.map_or(0.0, |at| {
                    now.saturating_duration_since(at).as_secs_f64() * 1e3
                }));
                let outcome = endpoint.chat(&body, now, &|| flag.load(Ordering::SeqCst));
                finish(&recorder, done, row, outcome, now);
            })
            .map_err(|e| ServiceError::fatal(format!("cannot start a request's thread: {e}")))?;
        Ok(Box::new(move || cancelled.store(true, Ordering::SeqCst)))
    }

    fn cache_stats(&mut self) -> Option<w::CacheCounters> {
        None
    }

    fn cache_clear(&mut self) -> Result<(), String> {
        Err(NO_CACHE_CONTROL.into())
    }

    fn cache_configure(
        &mut self,
        _: Option<bool>,
        _: Option<u64>,
        _: Option<u64>,
    ) -> Result<(), String> {
        Err(NO_CACHE_CONTROL.into())
    }
}

/// Records what the server answered (or how it failed) as `row`.
fn finish(
    recorder: &Recorder,
    done: Completion,
    mut row: store::RequestRow,
    outcome: Result<stream::Answer, w::RequestError>,
    sent: Instant,
) {
    let total_ms = sent.elapsed().as_secs_f64() * 1e3;
    let answer = match outcome {
        Ok(a) => a,
        Err(e) => {
            row.total_ms = total_ms;
            return recorder.failed(done, row, e);
        }
    };
    let chunk_count = answer.arrivals.len() as u32;
    let output_tokens = answer.completion_tokens.unwrap_or(chunk_count);
    let tokens = stream::tokens_per_arrival(&answer.arrivals, output_tokens);
    row.token_times_ms = answer.arrivals.iter().map(|a| a.at_ms).collect();
    row.chunk_tokens = tokens;
    row.ttft_ms = answer.arrivals.first().map_or(total_ms, |a| a.at_ms);
    row.decode_ms = match (answer.arrivals.first(), answer.arrivals.last()) {
        (Some(first), Some(last)) => last.at_ms - first.at_ms,
        _ => 0.0,
    };
    row.total_ms = total_ms;
    row.prompt_tokens = answer.prompt_tokens.unwrap_or(0);
    row.output_tokens = output_tokens;
    row.cache_reused_tokens = answer.cached_tokens.unwrap_or(0);
    row.finish_reason = answer.finish_reason.clone().unwrap_or_default();
    row.output_preview = super::convert::preview(&answer.text);
    if !answer.complete {
        row.text_tokens = 0;
        let err = error(
            w::ErrorKind::Protocol,
            "the stream ended before `data: [DONE]`: the answer may be cut short",
            None,
            None,
        );
        return recorder.failed(done, row, err);
    }
    let reused = answer.cached_tokens;
    recorder.answered(
        done,
        row,
        Answer {
            text: answer.text,
            token_ids: vec![],
            first_logits: None,
            prefix: None,
            reused_tokens: reused,
        },
    );
}
