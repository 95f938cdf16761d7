//! What the host side of a run provides to a plugin: the engine, the results
//! store and the terminal. The runner implements this; the sandbox only
//! forwards calls that passed its checks.

use std::sync::Arc;

use engine::image::RgbImage;

use crate::bindings::wit_engine::{CacheCounters, GenerateRequest, GenerateResponse, ModelInfo};
use crate::bindings::wit_progress::Level;

/// A failed service call: either the plugin's request was bad (it gets the
/// message back as a WIT error) or the run must stop (the call traps).
#[derive(Debug)]
pub enum ServiceError {
    Rejected(String),
    Fatal(Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    pub fn rejected(msg: impl Into<String>) -> ServiceError {
        ServiceError::Rejected(msg.into())
    }

    pub fn fatal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ServiceError {
        ServiceError::Fatal(e.into())
    }
}

/// Host services for one run.
pub trait Services: Send {
    fn model_info(&mut self) -> ModelInfo;
    fn generate(
        &mut self,
        images: Vec<Arc<RgbImage>>,
        request: GenerateRequest,
    ) -> Result<GenerateResponse, ServiceError>;
    fn cache_stats(&mut self) -> CacheCounters;
    fn cache_clear(&mut self);
    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix_bytes: Option<u64>,
        vision_bytes: Option<u64>,
    );
    fn metric(&mut self, name: String, value: f64, unit: String) -> Result<(), ServiceError>;
    fn table(
        &mut self,
        name: String,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Result<(), ServiceError>;
    fn note(&mut self, text: String) -> Result<(), ServiceError>;
    fn verdict(&mut self, passed: bool, summary: String) -> Result<(), ServiceError>;
    fn log(&mut self, level: Level, message: String);
    fn progress(&mut self, done: u32, total: u32, step: String);
}
