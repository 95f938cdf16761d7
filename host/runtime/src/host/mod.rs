//! The store data of a run and the WIT host functions, one module per
//! interface. Each call is checked here (sizes, counts, handles) before it
//! reaches the services.

mod engine;
mod images;
mod progress;
mod results;

use imaging::DecodeLimits;
use wasmtime::Result;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::wit_types;
use crate::budget::RunBudget;
use crate::image_sets::{ImageHandle, ImageSets};
use crate::services::{ServiceError, Services};

/// Limits on what one call may pass, so a buggy plugin cannot make the host
/// allocate without bound. Image parts count every reference to an image,
/// repeated or not; the text counts every string of a request (roles and
/// the label too).
pub const MAX_IMAGES_PER_REQUEST: usize = 64;
pub const MAX_IMAGE_PARTS: usize = 64;
pub const MAX_MESSAGES: usize = 1024;
pub const MAX_LIVE_IMAGES: usize = 1024;
pub const MAX_TEXT: usize = 1 << 20;
pub const MAX_TABLE_CELLS: usize = 100_000;

/// Store data for one run.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) budget: RunBudget,
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
        Err(format!("{what}: {len}, over the limit of {max}"))
    } else {
        Ok(())
    }
}

/// The bytes of pixels of a `width` x `height` RGB image.
pub(crate) fn image_bytes(width: u32, height: u32) -> usize {
    (width as usize)
        .saturating_mul(height as usize)
        .saturating_mul(3)
}

impl HostState {
    /// Whether the budget has room for another `width` x `height` image:
    /// asked before making one, so a refused image is never allocated.
    fn room_for_image(&self, width: u32, height: u32) -> Result<(), String> {
        if self.live_images >= MAX_LIVE_IMAGES {
            return Err(format!(
                "a plugin may hold at most {MAX_LIVE_IMAGES} images; drop some first"
            ));
        }
        self.budget.check_image(image_bytes(width, height))
    }

    fn push_image(&mut self, handle: ImageHandle) -> Result<Result<Resource<ImageHandle>, String>> {
        if self.live_images >= MAX_LIVE_IMAGES {
            return Ok(Err(format!(
                "a plugin may hold at most {MAX_LIVE_IMAGES} images; drop some first"
            )));
        }
        let bytes = image_bytes(handle.image.width, handle.image.height);
        if let Err(e) = self.budget.take_image(bytes) {
            return Ok(Err(e));
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
