//! How a finished request reaches the store and the plugin, whichever
//! backend ran it: one row (answered or failed), then the plugin's answer
//! with that row's id.

use std::sync::{Arc, Mutex};

use runtime::Completion;
use runtime::bindings::wit_engine as w;
use store::{RequestRow, Store};

use super::terminal::Terminal;

/// Shared by the runner, the backends' threads and the plugin's store.
pub struct Shared {
    pub store: Mutex<Store>,
    pub terminal: Mutex<Terminal>,
    pub device: String,
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock must not hide the results recorded so far.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an answered request carries beside its row.
pub struct Answer {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub first_logits: Option<Vec<f32>>,
    /// The engine's prefix outcome (none for a server).
    pub prefix: Option<w::PrefixOutcome>,
    /// Prompt tokens a server said its cache reused.
    pub reused_tokens: Option<u32>,
}

/// Records rows of one run.
#[derive(Clone)]
pub struct Recorder {
    pub shared: Arc<Shared>,
    pub run_id: i64,
}

impl Recorder {
    fn record(&self, row: &RequestRow) -> Result<i64, String> {
        lock(&self.shared.store)
            .record_request(self.run_id, row)
            .map_err(|e| format!("the host could not record the request: {e}"))
    }

    /// Records an answered request and hands the plugin its response.
    pub fn answered(&self, done: Completion, row: RequestRow, answer: Answer) {
        let outcome = match self.record(&row) {
            Ok(id) => Ok(response(id as u64, &row, answer)),
            Err(e) => Err(error(w::ErrorKind::Server, e, None, None)),
        };
        done.finish(outcome);
    }

    /// Records a failed request (its row says why) and hands the plugin
    /// the error, with the row's id.
    pub fn failed(&self, done: Completion, mut row: RequestRow, mut err: w::RequestError) {
        row.error = Some(err.message.clone());
        row.error_kind = Some(kind_name(err.kind).into());
        let _ = lock(&self.shared.store).record_log(
            self.run_id,
            "warn",
            &format!(
                "request {:?} failed ({}): {}",
                row.label,
                kind_name(err.kind),
                err.message
            ),
        );
        match self.record(&row) {
            Ok(id) => err.request_id = Some(id as u64),
            Err(e) => err.message = format!("{}; {e}", err.message),
        }
        done.finish(Err(err));
    }
}

pub fn error(
    kind: w::ErrorKind,
    message: impl Into<String>,
    http_status: Option<u16>,
    request_id: Option<u64>,
) -> w::RequestError {
    w::RequestError {
        kind,
        message: message.into(),
        http_status,
        request_id,
    }
}

pub fn kind_name(k: w::ErrorKind) -> &'static str {
    match k {
        w::ErrorKind::Invalid => "invalid",
        w::ErrorKind::Overloaded => "overloaded",
        w::ErrorKind::Connection => "connection",
        w::ErrorKind::Timeout => "timeout",
        w::ErrorKind::Server => "server",
        w::ErrorKind::Protocol => "protocol",
        w::ErrorKind::Cancelled => "cancelled",
    }
}

/// The row of a request as the plugin asked it, before any measurement:
/// what a failure that measured nothing is recorded as.
pub fn asked_row(
    request: &w::GenerateRequest,
    images: &[Arc<imaging::RgbImage>],
    started_at: String,
    remote: bool,
) -> RequestRow {
    RequestRow {
        label: request.label.clone(),
        warmup: request.warmup,
        started_at,
        images: super::convert::image_descs(images),
        max_tokens: request.max_tokens,
        ignore_eos: request.ignore_eos,
        sampling: serde_json::json!({
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "top_k": request.sampling.top_k,
            "seed": request.sampling.seed,
        }),
        cache_prefix: if remote { "unknown" } else { "disabled" }.into(),
        remote,
        ..RequestRow::default()
    }
}

/// The plugin's view of a response recorded as `row` with the id `id`:
/// what the backend measured, as recorded, and what it could not measure
/// left out.
pub fn response(id: u64, row: &RequestRow, a: Answer) -> w::GenerateResponse {
    let known = |v: f64| (!row.remote).then_some(v);
    let chunks = if row.chunk_tokens.is_empty() {
        row.token_times_ms
            .iter()
            .map(|&at_ms| w::TokenChunk { at_ms, tokens: 1 })
            .collect()
    } else {
        row.token_times_ms
            .iter()
            .zip(&row.chunk_tokens)
            .map(|(&at_ms, &tokens)| w::TokenChunk { at_ms, tokens })
            .collect()
    };
    w::GenerateResponse {
        request_id: id,
        text: a.text,
        token_ids: a.token_ids,
        prompt_tokens: row.prompt_tokens,
        image_tokens: (!row.remote).then_some(row.image_tokens),
        text_tokens: (!row.remote).then_some(row.text_tokens),
        output_tokens: row.output_tokens,
        finish_reason: row.finish_reason.clone(),
        timings: w::Timings {
            queued_ms: row.queued_ms,
            preprocess_ms: known(row.preprocess_ms),
            vision_ms: known(row.vision_ms),
            prefill_ms: known(row.prefill_ms),
            ttft_ms: row.ttft_ms,
            decode_ms: row.decode_ms,
            total_ms: row.total_ms,
            chunks,
            sent_at_ms: row.sent_at_ms.unwrap_or(0.0),
            late_ms: row.late_ms.unwrap_or(0.0),
        },
        cache: a.prefix.map(|prefix| w::CacheReport {
            prefix,
            reused_tokens: row.cache_reused_tokens,
            vision_hits: row.vision_hits,
            vision_misses: row.vision_misses,
            vision_skipped: row.vision_skipped,
        }),
        reused_tokens: if row.remote {
            a.reused_tokens
        } else {
            Some(row.cache_reused_tokens)
        },
        peak_memory_bytes: (!row.remote).then_some(row.peak_memory_bytes),
        first_logits: a.first_logits,
    }
}
