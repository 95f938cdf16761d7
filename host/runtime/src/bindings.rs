//! Host-side bindings of `wit/workload.wit`, generated once here.

pub use crate::image_sets::ImageHandle;

wasmtime::component::bindgen!({
    world: "workload",
    path: "../../wit",
    imports: { default: trappable },
    // Async calls into the plugin, so that a deadline or Ctrl-C can drop a
    // run blocked in a WASI call (sleep, poll) between host calls.
    exports: { default: async },
    with: {
        "vlmbench:workload/images.image": crate::image_sets::ImageHandle,
    },
});

pub use vlmbench::workload::{
    engine as wit_engine, images as wit_images, progress as wit_progress, results as wit_results,
    types as wit_types,
};

/// The WIT package versions this host implements. A plugin built against
/// 0.1.y runs here when y <= the patch version below (additive changes only).
pub const WIT_PACKAGE: &str = "vlmbench:workload";
pub const WIT_VERSION: &str = "0.1.0";
