//! The Qwen3-VL inference engine on MLX: model directories, preprocessing,
//! the model itself, decoding, generation with timed events, and the caches.
//! Configuration comes in through [`EngineOptions`] (with [`Tuning`]),
//! resolved by the caller; nothing here reads the environment.

pub mod cache;
pub mod config;
pub mod decode;
mod engine;
pub mod error;
pub mod generate;
pub mod image;
pub mod kernels;
pub mod model;
pub mod prompt;
pub mod sampler;
pub mod synth;
pub mod tuning;

pub use decode::{DecodePath, StepAttention};
pub use engine::{
    Admission, Batch, BatchEvent, Budgets, Cost, Engine, EngineOptions, ModelInfo, SequenceId,
    device_memory_bytes, system_memory_bytes,
};
pub use error::{Error, Result};
pub use generate::{
    CancelToken, Event, FinishReason, GenerateRequest, GenerateResponse, MAX_NEW_TOKENS, Timings,
    validate_request,
};
pub use kernels::attention::ClusterLayout;
pub use sampler::Sampling;
pub use tuning::Tuning;
