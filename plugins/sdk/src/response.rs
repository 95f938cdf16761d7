//! Reading a response: derived figures that hold whichever backend answered
//! (the host's engine gives one chunk per token; a server's event may carry
//! several), and request errors as text.

use crate::engine::{ErrorKind, GenerateResponse, RequestError};

/// A request error as one line: its message and kind.
pub fn describe(e: &RequestError) -> String {
    format!("{} ({})", e.message, kind_name(e.kind))
}

impl From<RequestError> for String {
    fn from(e: RequestError) -> String {
        describe(&e)
    }
}

/// The kind's name, as the store records it.
pub fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Invalid => "invalid",
        ErrorKind::Overloaded => "overloaded",
        ErrorKind::Connection => "connection",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Server => "server",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Cancelled => "cancelled",
    }
}

/// Output tokens after the first arrival.
pub fn tokens_after_first(r: &GenerateResponse) -> u32 {
    r.timings.chunks.iter().skip(1).map(|c| c.tokens).sum()
}

/// Decode speed: tokens after the first arrival over the time from the
/// first arrival to the last, in tok/s.
pub fn decode_tok_s(r: &GenerateResponse) -> Option<f64> {
    let n = tokens_after_first(r);
    (n >= 1 && r.timings.decode_ms > 0.0).then(|| n as f64 / (r.timings.decode_ms / 1e3))
}

/// "Speed" as the vllm-mlx image benchmark reports it: output tokens over
/// the whole request time, in tok/s.
pub fn speed_tok_s(r: &GenerateResponse) -> f64 {
    if r.timings.total_ms > 0.0 {
        r.output_tokens as f64 / (r.timings.total_ms / 1e3)
    } else {
        0.0
    }
}

/// Gaps between consecutive arrivals, in ms (a chunk of several tokens is
/// one arrival: its tokens are not spread over time).
pub fn inter_arrival_ms(r: &GenerateResponse) -> Vec<f64> {
    r.timings
        .chunks
        .windows(2)
        .map(|w| w[1].at_ms - w[0].at_ms)
        .collect()
}

/// Whether the host's own engine answered (every figure is known), rather
/// than a server (`host run --endpoint`).
pub fn local_engine() -> bool {
    crate::engine::model().endpoint.is_none()
}
