//! The store data of a run and the WIT host functions, one module per
//! interface. Each call is checked here (sizes, counts, handles) before it
//! reaches the services.

mod engine;
mod images;
mod progress;
mod results;
mod v0_1;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use imaging::RgbImage;

use imaging::DecodeLimits;
use wasmtime::Result;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{v0_1 as wit1, wit_types};
use crate::budget::RunBudget;
use crate::image_sets::{ImageHandle, ImageSets};
use crate::pending::PendingSet;
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
    /// Every distinct image the plugin's handles or pending requests hold,
    /// charged to the budget once however many hold it.
    pub(crate) held_images: HashMap<usize, (Arc<RgbImage>, u32)>,
    pub(crate) pending: PendingSet,
    /// Set on Ctrl-C or at the deadline: blocked waits return.
    pub(crate) stop: Arc<AtomicBool>,
    /// The run clock's zero.
    pub(crate) started: Instant,
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
impl wit1::vlmbench::workload::types::Host for HostState {}

/// A service failure as the plugin sees it: a WIT error, or a trap.
fn forward<T>(r: Result<T, ServiceError>) -> Result<Result<T, String>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(ServiceError::Rejected(msg)) => Ok(Err(msg)),
        Err(ServiceError::Failed(e)) => Ok(Err(e.message)),
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
        if let Err(e) = self.hold_image(&handle.image) {
            return Ok(Err(e));
        }
        self.live_images += 1;
        Ok(Ok(self.table.push(handle)?))
    }

    /// Charges `image` to the budget unless something holds it already.
    fn hold_image(&mut self, image: &Arc<RgbImage>) -> Result<(), String> {
        let key = Arc::as_ptr(image) as usize;
        if let Some((_, refs)) = self.held_images.get_mut(&key) {
            *refs += 1;
            return Ok(());
        }
        self.budget
            .take_image(image_bytes(image.width, image.height))?;
        self.held_images.insert(key, (image.clone(), 1));
        Ok(())
    }

    /// Gives `image` back to the budget once nothing holds it.
    fn release_image(&mut self, image: &Arc<RgbImage>) {
        let key = Arc::as_ptr(image) as usize;
        if let Some((_, refs)) = self.held_images.get_mut(&key) {
            *refs -= 1;
            if *refs == 0 {
                self.held_images.remove(&key);
                self.budget
                    .release_image(image_bytes(image.width, image.height));
            }
        }
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
