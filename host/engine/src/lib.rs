//! The Qwen3-VL inference engine on MLX: model directories, preprocessing,
//! the model itself, generation with timed events, and the caches.

pub mod config;
pub mod error;
pub mod image;
pub mod model;
pub mod prompt;

pub use error::{Error, Result};
