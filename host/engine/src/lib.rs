//! The Qwen3-VL inference engine on MLX: model directories, preprocessing,
//! the model itself, generation with timed events, and the caches.

pub mod cache;
pub mod config;
mod engine;
pub mod error;
pub mod generate;
pub mod image;
pub mod kernels;
pub mod model;
pub mod prompt;
pub mod sampler;
pub mod synth;

pub use engine::{
    Engine, EngineOptions, MAX_NEW_TOKENS, ModelInfo, device_memory_bytes, validate_request,
};
pub use error::{Error, Result};
pub use generate::{CancelToken, Event, FinishReason, GenerateRequest, GenerateResponse, Timings};
pub use kernels::attention::ClusterLayout;
pub use model::{DecodePath, StepAttention};
pub use sampler::Sampling;
