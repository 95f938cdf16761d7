//! The plugin host: runs workload components (wasm32-wasip2) against the WIT
//! interface in `wit/`, sandboxed. A plugin gets no filesystem, network or
//! environment; it sees images only through handles, from sets the user
//! granted; it runs under a memory limit and a deadline.

pub mod bindings;
mod budget;
mod host;
pub mod image_sets;
pub mod params;
pub mod pending;
mod plugin;
mod services;

pub use bindings::{WIT_PACKAGE, WIT_VERSION, WIT_VERSIONS};
pub use host::{
    MAX_IMAGE_PARTS, MAX_IMAGES_PER_REQUEST, MAX_LIVE_IMAGES, MAX_MESSAGES, MAX_TABLE_CELLS,
    MAX_TEXT,
};
pub use image_sets::ImageSets;
pub use pending::{CancelFn, Completion, MAX_PENDING, Outcome};
pub use plugin::{
    Plugin, PluginMeta, PluginRuntime, RunLimits, RunOutcome, RunStatus, RuntimeError,
};
pub use services::{
    EngineService, ProgressService, ResultsService, ServiceError, Services, Submission,
    no_cache_counters,
};
