//! Host-side bindings of the WIT package, one module per version the host
//! serves: `v0_2` from `wit/workload.wit` (the current one, whose types the
//! rest of the host speaks) and `v0_1` from the frozen `wit/0.1.0/`.

pub use crate::image_sets::ImageHandle;
pub use crate::pending::PendingHandle;

pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "workload",
        path: "../../wit",
        imports: { default: trappable },
        // Async calls into the plugin, so that a deadline or Ctrl-C can drop a
        // run blocked in a WASI call (sleep, poll) between host calls.
        exports: { default: async },
        with: {
            "vlmbench:workload/images.image": crate::image_sets::ImageHandle,
            "vlmbench:workload/engine.pending": crate::pending::PendingHandle,
        },
    });
}

pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "workload",
        path: "../../wit/0.1.0",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "vlmbench:workload/images.image": crate::image_sets::ImageHandle,
        },
    });
}

pub use v0_2::vlmbench::workload::{
    engine as wit_engine, images as wit_images, progress as wit_progress, results as wit_results,
    types as wit_types,
};

/// The WIT package this host implements, and every version it serves: a
/// plugin built against `0.M.p` runs here when `0.M.q` is listed with
/// q >= p (patch releases only add).
pub const WIT_PACKAGE: &str = "vlmbench:workload";
pub const WIT_VERSION: &str = "0.2.0";
pub const WIT_VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];
