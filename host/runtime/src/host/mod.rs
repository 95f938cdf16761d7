//! The store data of a run and the WIT host functions, one module per
//! interface. Each call is checked here (sizes, counts, handles) before it
//! reaches the services.

mod engine;
mod images;
mod progress;
mod results;

use imaging::DecodeLimits;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Result, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::wit_types;
use crate::image_sets::{ImageHandle, ImageSets};
use crate::services::{ServiceError, Services};

/// Limits on what one call may pass, so a buggy plugin cannot make the host
/// allocate without bound.
pub const MAX_IMAGES_PER_REQUEST: usize = 64;
pub const MAX_LIVE_IMAGES: usize = 1024;
pub const MAX_TEXT: usize = 1 << 20;
pub const MAX_TABLE_CELLS: usize = 100_000;

/// Store data for one run.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) services: Services,
    pub(crate) sets: ImageSets,
    pub(crate) decode_limits: DecodeLimits,
    pub(crate) live_images: usize,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_types::Host for HostState {}

/// A service failure as the plugin sees it: a WIT error, or a trap.
fn forward<T>(r: Result<T, ServiceError>) -> Result<Result<T, String>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(ServiceError::Rejected(msg)) => Ok(Err(msg)),
        Err(ServiceError::Fatal(e)) => Err(wasmtime::Error::msg(e.to_string())),
    }
}

fn check_len(what: &str, len: usize, max: usize) -> Result<(), String> {
    if len > max {
        Err(format!("{what} is {len} long, over the limit of {max}"))
    } else {
        Ok(())
    }
}

impl HostState {
    fn push_image(&mut self, handle: ImageHandle) -> Result<Result<Resource<ImageHandle>, String>> {
        if self.live_images >= MAX_LIVE_IMAGES {
            return Ok(Err(format!(
                "a plugin may hold at most {MAX_LIVE_IMAGES} images; drop some first"
            )));
        }
        self.live_images += 1;
        Ok(Ok(self.table.push(handle)?))
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
