//! What the store records and reads back, and its errors.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("results database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("results database {path}: {message}")]
    Other { path: PathBuf, message: String },
    #[error("no run {0} in the results database")]
    NoSuchRun(i64),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Another connection holds a lock SQLite would not wait for (it skips
    /// the busy handler where waiting could deadlock, and while a new
    /// database is switched to WAL).
    pub(crate) fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Sqlite {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            } if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// A run's status. `running` until the runner finishes it.
pub const STATUSES: [&str; 6] = [
    "running",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
    "interrupted",
];

/// What produced a run (written once, at its start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRun {
    pub plugin_name: String,
    pub plugin_version: String,
    pub plugin_blake3: String,
    pub plugin_wit: String,
    pub params: Value,
    pub model_name: String,
    pub model_path: String,
    pub model_config_hash: String,
    pub model_quantization: String,
    pub model_synthetic: bool,
    pub model: Value,
    pub host_version: String,
    pub host_commit: String,
    pub mlx_version: String,
    pub backend: String,
    pub device: String,
    pub machine: Value,
    /// The server measured, when the run did not use the host's engine:
    /// `{"url", "model", "server"}`.
    pub endpoint: Option<Value>,
}

/// An image of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageDesc {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub blake3: String,
}

/// One generate call, as measured by the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestRow {
    pub label: String,
    pub warmup: bool,
    pub started_at: String,
    pub images: Vec<ImageDesc>,
    pub max_tokens: u32,
    pub ignore_eos: bool,
    pub sampling: Value,
    pub prompt_tokens: u32,
    pub image_tokens: u32,
    pub text_tokens: u32,
    pub output_tokens: u32,
    pub finish_reason: String,
    pub preprocess_ms: f64,
    pub vision_ms: f64,
    pub prefill_ms: f64,
    pub ttft_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
    /// When each token reached the host, since the request started.
    pub token_times_ms: Vec<f64>,
    pub cache_prefix: String,
    pub cache_reused_tokens: u32,
    pub vision_hits: u32,
    pub vision_misses: u32,
    pub vision_skipped: u32,
    pub peak_memory_bytes: u64,
    pub output_preview: String,
    /// Sent to a server: the stage timings, image and text token counts,
    /// cache outcome and memory were not reported and read as zero.
    #[serde(default)]
    pub remote: bool,
    /// Why the request failed; its figures are then what was measured
    /// before the failure, and it counts in no statistic.
    #[serde(default)]
    pub error: Option<String>,
    /// `invalid`, `overloaded`, `connection`, `timeout`, `server`,
    /// `protocol` or `cancelled`.
    #[serde(default)]
    pub error_kind: Option<String>,
    /// Tokens each entry of `token_times_ms` brought, when a server sent
    /// several in one event; empty means one token per entry.
    #[serde(default)]
    pub chunk_tokens: Vec<u32>,
    /// When the request was sent, on the run clock, and how late that was
    /// against its schedule (plugins' `start-at-ms`).
    #[serde(default)]
    pub sent_at_ms: Option<f64>,
    #[serde(default)]
    pub late_ms: Option<f64>,
    /// Waiting for the engine behind other requests before its work
    /// began; part of `ttft_ms` and `total_ms`.
    #[serde(default)]
    pub queued_ms: Option<f64>,
}

impl RequestRow {
    /// Whether the request's figures count: not a warm-up, not failed.
    pub fn counts(&self) -> bool {
        !self.warmup && self.error.is_none()
    }

    /// Output tokens after the first arrival (the first chunk, for a
    /// server that sent several tokens at once).
    pub fn tokens_after_first(&self) -> usize {
        if self.chunk_tokens.is_empty() {
            self.token_times_ms.len().saturating_sub(1)
        } else {
            self.chunk_tokens.iter().skip(1).map(|&t| t as usize).sum()
        }
    }
}

/// A stored request with its derived figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredRequest {
    pub id: i64,
    pub seq: i64,
    #[serde(flatten)]
    pub row: RequestRow,
    /// "Speed" as the vllm-mlx image benchmark reports it: output tokens over
    /// the whole request time.
    pub speed_tok_s: f64,
    /// Tokens after the first over the time they took.
    pub decode_tok_s: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p90_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub id: i64,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub verdict_passed: Option<bool>,
    pub plugin_name: String,
    pub plugin_version: String,
    pub model_name: String,
    pub model_quantization: String,
    pub model_synthetic: bool,
    pub backend: String,
    pub device: String,
    pub host_version: String,
    pub requests: i64,
    /// The server's URL, for a run that measured one.
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl RunSummary {
    /// The model as a phrase: its name, with its quantization and whether
    /// its weights are synthetic where known.
    pub fn model_text(&self) -> String {
        let mut notes = vec![];
        if !self.model_quantization.is_empty() {
            notes.push(self.model_quantization.clone());
        }
        if self.model_synthetic {
            notes.push("synthetic weights".into());
        }
        if notes.is_empty() {
            self.model_name.clone()
        } else {
            format!("{} ({})", self.model_name, notes.join(", "))
        }
    }

    /// What answered the requests: the host's engine on its backend and
    /// device, or a server at its URL.
    pub fn engine_text(&self) -> String {
        match &self.endpoint {
            Some(url) if self.device.is_empty() || self.device == *url => {
                format!("server at {url}")
            }
            Some(url) => format!("server at {url} ({})", self.device),
            None => format!("{} {}", self.backend, self.device),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub name: String,
    /// NaN and the infinities are kept as they were recorded; JSON has no
    /// numbers for them, so there they are the strings "NaN", "inf", "-inf".
    #[serde(with = "number_or_name")]
    pub value: f64,
    pub unit: String,
}

/// Serde for a float that may not be finite: a JSON number when it is
/// finite, else its name.
mod number_or_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrName {
        Number(f64),
        Name(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(match NumberOrName::deserialize(d)? {
            NumberOrName::Number(v) => v,
            NumberOrName::Name(n) => match n.as_str() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                other => return Err(serde::de::Error::custom(format!("not a number: {other}"))),
            },
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultTable {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub at: String,
    pub level: String,
    pub message: String,
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDetail {
    pub summary: RunSummary,
    pub verdict_summary: Option<String>,
    pub plugin_blake3: String,
    pub plugin_wit: String,
    pub params: Value,
    pub model: Value,
    pub model_path: String,
    pub model_config_hash: String,
    pub host_commit: String,
    pub mlx_version: String,
    pub machine: Value,
    pub requests: Vec<StoredRequest>,
    pub metrics: Vec<Metric>,
    pub tables: Vec<ResultTable>,
    pub notes: Vec<String>,
    pub logs: Vec<LogLine>,
    /// The vllm-mlx image benchmark's table derived from the measured
    /// requests (`report::resolution_table`), for readers that show it.
    #[serde(default)]
    pub resolution_table: Option<ResultTable>,
    /// What the host sampled while the run ran, in time order.
    #[serde(default)]
    pub samples: Vec<Sample>,
}

/// One sampled value of a series (`host.rss_bytes`, `mlx.active_bytes`,
/// `gpu0.power_w`, ...), `t_ms` after the run started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub t_ms: f64,
    pub name: String,
    pub value: f64,
}

/// The values present, for filter menus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Facets {
    pub plugins: Vec<String>,
    pub models: Vec<String>,
    pub devices: Vec<String>,
    pub statuses: Vec<String>,
}

/// Filters for listing runs (all optional, combined with AND).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunFilter {
    pub plugin: Option<String>,
    pub model: Option<String>,
    pub device: Option<String>,
    pub status: Option<String>,
    /// Runs started at or after this RFC 3339 prefix (e.g. `2026-11-26`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}
