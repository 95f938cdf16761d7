//! An OpenAI-compatible API on the engine, served beside the results page
//! by `host serve --model M`: chat completions (whole and streamed), the
//! model list, health and Prometheus metrics. Requests are checked and
//! their images loaded before they queue; the engine's thread batches them
//! continuously and records each in the results database.

pub mod convert;
pub mod images;
mod metrics;
mod routes;
pub mod wire;
mod worker;

pub use images::ImageSources;
pub use metrics::Metrics;
pub use routes::{ServeOptions, router};
pub use worker::{BatchLimits, Control, JobEvent, Recorder, Sink, Ticket, Worker};
