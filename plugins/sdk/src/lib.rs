//! The SDK for vlm-bench workload plugins.
//!
//! A plugin is a WebAssembly component (`cargo build --target wasm32-wasip2`)
//! that implements [`Workload`] and exports it with [`export_plugin!`]. It
//! reaches the host only through the imports re-exported here: [`engine`],
//! [`images`], [`results`] and [`progress`]. See `plugins/README.md`.
//!
//! ```no_run
//! use vlmbench_sdk::{Params, Workload, engine, param, types::{ParamKind, PluginInfo}};
//!
//! struct Hello;
//! impl Workload for Hello {
//!     fn describe() -> PluginInfo {
//!         PluginInfo { name: "hello".into(), version: "0.1.0".into(), description: "One request".into(),
//!                      params: vec![param("prompt", ParamKind::Text, "Hi", "What to ask")] }
//!     }
//!     fn run(p: Params) -> Result<(), String> {
//!         let r = vlmbench_sdk::request::text(&p.text("prompt")?, 16);
//!         let out = engine::generate(&[], &r)?;
//!         vlmbench_sdk::results::note(&out.text);
//!         Ok(())
//!     }
//! }
//! vlmbench_sdk::export_plugin!(Hello);
//! ```

// The generated code names this crate by its path, from inside it too.
extern crate self as vlmbench_sdk;

pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "workload",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "vlmbench_sdk::bindings",
        runtime_path: "vlmbench_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::vlmbench::workload::{engine, images, progress, results, types};

pub mod agreement;
pub mod params;
pub mod request;
pub mod response;
pub mod stats;
pub mod table;

pub use params::{Params, param};

/// What a plugin implements.
pub trait Workload {
    /// Name, version, description and parameters (shown by `host plugins inspect`).
    fn describe() -> types::PluginInfo;
    /// Runs the workload; every declared parameter is present in `params`.
    fn run(params: Params) -> Result<(), String>;
}

/// Exports a [`Workload`] as the component's `describe` and `run`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __VlmbenchExport;
        impl $crate::bindings::Guest for __VlmbenchExport {
            fn describe() -> $crate::types::PluginInfo {
                <$plugin as $crate::Workload>::describe()
            }
            fn run(
                params: ::std::vec::Vec<(::std::string::String, $crate::types::ParamValue)>,
            ) -> Result<(), String> {
                <$plugin as $crate::Workload>::run($crate::Params::new(params))
            }
        }
        $crate::bindings::export!(__VlmbenchExport);
    };
}

/// Logs at info level.
pub fn log(message: &str) {
    progress::log(progress::Level::Info, message);
}

/// Logs a warning.
pub fn warn(message: &str) {
    progress::log(progress::Level::Warn, message);
}
