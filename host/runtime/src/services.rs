//! What the host side of a run provides to a plugin, one trait per WIT
//! interface the runner serves: the engine, the results store, the progress
//! display. (The `images` interface is served by the runtime itself, from the
//! sets the user granted.) The sandbox forwards only calls that passed its
//! checks (`host/`).

use std::sync::Arc;
use std::time::Instant;

use imaging::RgbImage;

use crate::bindings::wit_engine::{
    CacheCounters, ErrorKind, GenerateRequest, ModelInfo, RequestError,
};
use crate::bindings::wit_progress::Level;
use crate::pending::{CancelFn, Completion};

/// A failed service call: either the plugin's request was bad (it gets the
/// message back as a WIT error), a request failed as a request can (it gets
/// the typed error), or the run must stop (the call traps).
#[derive(Debug)]
pub enum ServiceError {
    Rejected(String),
    Failed(RequestError),
    Fatal(Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    pub fn rejected(msg: impl Into<String>) -> ServiceError {
        ServiceError::Rejected(msg.into())
    }

    /// The error a request gets from this.
    pub fn into_request_error(self) -> Result<RequestError, ServiceError> {
        match self {
            ServiceError::Rejected(m) => Ok(crate::pending::error(ErrorKind::Invalid, m)),
            ServiceError::Failed(e) => Ok(e),
            fatal @ ServiceError::Fatal(_) => Err(fatal),
        }
    }

    pub fn fatal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ServiceError {
        ServiceError::Fatal(e.into())
    }
}

/// A request the plugin handed over, checked and with its images resolved.
pub struct Submission {
    pub images: Vec<Arc<RgbImage>>,
    pub request: GenerateRequest,
    /// When to send it (the plugin's `start-at-ms`); none means now.
    pub start_at: Option<Instant>,
    /// Asked through `generate`: when nothing else is in flight, the engine
    /// may run it by itself rather than in its batch.
    pub alone: bool,
    /// The run clock's zero (`clock-ms` counts from it).
    pub clock_zero: Instant,
}

/// `vlmbench:workload/engine`: the model (or server) and its caches.
pub trait EngineService: Send {
    fn model_info(&mut self) -> ModelInfo;
    /// Starts `submission`; its outcome, recorded, goes to `done` from
    /// whichever thread runs it. The returned function cancels it.
    fn submit(
        &mut self,
        submission: Submission,
        done: Completion,
    ) -> Result<CancelFn, ServiceError>;
    /// None where the backend has no caches the host can read.
    fn cache_stats(&mut self) -> Option<CacheCounters>;
    fn cache_clear(&mut self) -> Result<(), String>;
    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix_bytes: Option<u64>,
        vision_bytes: Option<u64>,
    ) -> Result<(), String>;
}

/// `vlmbench:workload/results`: what the plugin records beside its requests.
pub trait ResultsService: Send {
    fn metric(&mut self, name: String, value: f64, unit: String) -> Result<(), ServiceError>;
    fn table(
        &mut self,
        name: String,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Result<(), ServiceError>;
    fn note(&mut self, text: String) -> Result<(), ServiceError>;
    fn verdict(&mut self, passed: bool, summary: String) -> Result<(), ServiceError>;
}

/// `vlmbench:workload/progress`: log lines and progress, best effort.
pub trait ProgressService: Send {
    fn log(&mut self, level: Level, message: String);
    fn progress(&mut self, done: u32, total: u32, step: String);
}

/// The services of one store: one implementation per interface.
pub struct Services {
    pub engine: Box<dyn EngineService>,
    pub results: Box<dyn ResultsService>,
    pub progress: Box<dyn ProgressService>,
}

impl Services {
    /// Services for a plugin's `describe`: no engine, nothing recorded,
    /// nothing shown.
    pub fn unavailable() -> Services {
        Services {
            engine: Box::new(Unavailable),
            results: Box::new(Unavailable),
            progress: Box::new(Unavailable),
        }
    }
}

/// Counters of a cache that is off and has seen nothing.
pub fn no_cache_counters() -> CacheCounters {
    CacheCounters {
        enabled: false,
        prefix_lookups: 0,
        prefix_exact_hits: 0,
        prefix_partial_hits: 0,
        prefix_misses: 0,
        prefix_reused_tokens: 0,
        prefix_evictions: 0,
        prefix_entries: 0,
        prefix_bytes: 0,
        prefix_budget_bytes: 0,
        vision_hits: 0,
        vision_misses: 0,
        vision_entries: 0,
        vision_bytes: 0,
    }
}

/// Refuses every call that would reach the engine or the store.
struct Unavailable;

const NOTHING_DURING_DESCRIBE: &str = "nothing is recorded during describe";
const NO_ENGINE: &str = "no engine during describe";

impl EngineService for Unavailable {
    fn model_info(&mut self) -> ModelInfo {
        ModelInfo {
            name: String::new(),
            path: String::new(),
            quantization: String::new(),
            dtype: String::new(),
            compute_dtype: String::new(),
            synthetic: false,
            text_layers: 0,
            hidden_size: 0,
            vision_depth: 0,
            backend: String::new(),
            device: String::new(),
            endpoint: None,
        }
    }

    fn submit(&mut self, _: Submission, _: Completion) -> Result<CancelFn, ServiceError> {
        Err(ServiceError::rejected(NO_ENGINE))
    }

    fn cache_stats(&mut self) -> Option<CacheCounters> {
        None
    }

    fn cache_clear(&mut self) -> Result<(), String> {
        Err(NO_ENGINE.into())
    }

    fn cache_configure(
        &mut self,
        _: Option<bool>,
        _: Option<u64>,
        _: Option<u64>,
    ) -> Result<(), String> {
        Err(NO_ENGINE.into())
    }
}

impl ResultsService for Unavailable {
    fn metric(&mut self, _: String, _: f64, _: String) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(NOTHING_DURING_DESCRIBE))
    }

    fn table(
        &mut self,
        _: String,
        _: Vec<String>,
        _: Vec<Vec<String>>,
    ) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(NOTHING_DURING_DESCRIBE))
    }

    fn note(&mut self, _: String) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(NOTHING_DURING_DESCRIBE))
    }

    fn verdict(&mut self, _: bool, _: String) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(NOTHING_DURING_DESCRIBE))
    }
}

impl ProgressService for Unavailable {
    fn log(&mut self, _: Level, _: String) {}

    fn progress(&mut self, _: u32, _: u32, _: String) {}
}
