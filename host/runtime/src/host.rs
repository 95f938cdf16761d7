//! The store data of a run and the WIT host functions. Each call is checked
//! here (sizes, counts, handles) before it reaches the services.

use std::sync::Arc;

use engine::image::{
    DecodeLimits, Encoding, Pattern, decode_image, encode_image, resize_bicubic, synth_image,
};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Result, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{wit_engine, wit_images, wit_progress, wit_results, wit_types};
use crate::images::{ImageHandle, ImageSets};
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
    pub(crate) services: Box<dyn Services>,
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

impl wit_types::Host for HostState {}

impl wit_images::HostImage for HostState {
    fn width(&mut self, img: Resource<ImageHandle>) -> Result<u32> {
        Ok(self.table.get(&img)?.image.width)
    }

    fn height(&mut self, img: Resource<ImageHandle>) -> Result<u32> {
        Ok(self.table.get(&img)?.image.height)
    }

    fn content_hash(&mut self, img: Resource<ImageHandle>) -> Result<String> {
        Ok(self
            .table
            .get(&img)?
            .image
            .content_hash()
            .to_hex()
            .to_string())
    }

    fn name(&mut self, img: Resource<ImageHandle>) -> Result<String> {
        Ok(self.table.get(&img)?.name.clone())
    }

    fn resize(
        &mut self,
        img: Resource<ImageHandle>,
        width: u32,
        height: u32,
    ) -> Result<Result<Resource<ImageHandle>, String>> {
        let max = engine::image::MAX_SIDE;
        if width == 0 || height == 0 || width > max || height > max {
            return Ok(Err(format!(
                "resize to {width}x{height}: sides must be between 1 and {max}"
            )));
        }
        let h = self.table.get(&img)?;
        let resized = resize_bicubic(&h.image, width, height);
        let name = format!("{} resized to {width}x{height}", h.name);
        self.push_image(ImageHandle {
            image: Arc::new(resized),
            name,
        })
    }

    fn reencode(
        &mut self,
        img: Resource<ImageHandle>,
        format: String,
        quality: u8,
    ) -> Result<Result<Resource<ImageHandle>, String>> {
        let encoding = match Encoding::parse(&format, quality) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let h = self.table.get(&img)?;
        let name = format!("{} as {format}", h.name);
        let decoded = encode_image(&h.image, encoding)
            .and_then(|bytes| decode_image(&name, &bytes, self.decode_limits));
        match decoded {
            Ok(image) => self.push_image(ImageHandle {
                image: Arc::new(image),
                name,
            }),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    fn drop(&mut self, img: Resource<ImageHandle>) -> Result<()> {
        self.table.delete(img)?;
        self.live_images = self.live_images.saturating_sub(1);
        Ok(())
    }
}

impl wit_images::Host for HostState {
    fn synthesize(
        &mut self,
        width: u32,
        height: u32,
        pattern: String,
        seed: u64,
    ) -> Result<Result<Resource<ImageHandle>, String>> {
        let image = Pattern::parse(&pattern).and_then(|p| synth_image(width, height, p, seed));
        match image {
            Ok(image) => {
                let name = format!("synthetic {pattern} {width}x{height} seed {seed}");
                self.push_image(ImageHandle {
                    image: Arc::new(image),
                    name,
                })
            }
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    fn list_sets(&mut self) -> Result<Vec<wit_images::ImageSet>> {
        let names: Vec<String> = self.sets.names().cloned().collect();
        Ok(names
            .into_iter()
            .map(|name| {
                let images = self.sets.list_images(&name).map_or(0, |v| v.len() as u32);
                wit_images::ImageSet { name, images }
            })
            .collect())
    }

    fn list_images(&mut self, set: String) -> Result<Result<Vec<String>, String>> {
        Ok(self.sets.list_images(&set))
    }

    fn open_image(
        &mut self,
        set: String,
        name: String,
    ) -> Result<Result<Resource<ImageHandle>, String>> {
        match self.sets.open_image(&set, &name, self.decode_limits) {
            Ok(h) => self.push_image(h),
            Err(e) => Ok(Err(e)),
        }
    }

    fn read_text(&mut self, set: String, name: String) -> Result<Result<String, String>> {
        Ok(self.sets.read_text(&set, &name))
    }
}

impl wit_engine::Host for HostState {
    fn model(&mut self) -> Result<wit_engine::ModelInfo> {
        Ok(self.services.model_info())
    }

    fn generate(
        &mut self,
        images: Vec<Resource<ImageHandle>>,
        request: wit_engine::GenerateRequest,
    ) -> Result<Result<wit_engine::GenerateResponse, String>> {
        if let Err(e) = check_len("the image list", images.len(), MAX_IMAGES_PER_REQUEST) {
            return Ok(Err(e));
        }
        let text_len: usize = request
            .messages
            .iter()
            .flat_map(|m| m.content.iter())
            .map(|c| match c {
                wit_engine::ContentPart::Text(t) => t.len(),
                wit_engine::ContentPart::Image(_) => 0,
            })
            .sum();
        if let Err(e) = check_len("the prompt text", text_len, MAX_TEXT) {
            return Ok(Err(e));
        }
        let mut imgs = Vec::with_capacity(images.len());
        for r in &images {
            imgs.push(self.table.get(r)?.image.clone());
        }
        forward(self.services.generate(imgs, request))
    }

    fn cache_stats(&mut self) -> Result<wit_engine::CacheCounters> {
        Ok(self.services.cache_stats())
    }

    fn cache_clear(&mut self) -> Result<()> {
        self.services.cache_clear();
        Ok(())
    }

    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix: Option<u64>,
        vision: Option<u64>,
    ) -> Result<()> {
        self.services.cache_configure(enabled, prefix, vision);
        Ok(())
    }
}

fn trap_on_fatal(r: Result<(), ServiceError>) -> Result<()> {
    match r {
        Ok(()) | Err(ServiceError::Rejected(_)) => Ok(()),
        Err(ServiceError::Fatal(e)) => Err(wasmtime::Error::msg(e.to_string())),
    }
}

impl wit_results::Host for HostState {
    fn metric(&mut self, name: String, value: f64, unit: String) -> Result<()> {
        trap_on_fatal(
            self.services
                .metric(truncate(name, 256), value, truncate(unit, 64)),
        )
    }

    fn table(
        &mut self,
        name: String,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Result<Result<(), String>> {
        let cells = columns.len() * (rows.len() + 1);
        if let Err(e) = check_len("the table", cells, MAX_TABLE_CELLS) {
            return Ok(Err(e));
        }
        if let Some((i, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != columns.len())
        {
            return Ok(Err(format!(
                "row {i} of table {name:?} has {} cells for {} columns",
                r.len(),
                columns.len()
            )));
        }
        forward(self.services.table(truncate(name, 256), columns, rows))
    }

    fn note(&mut self, text: String) -> Result<()> {
        trap_on_fatal(self.services.note(truncate(text, MAX_TEXT)))
    }

    fn verdict(&mut self, passed: bool, summary: String) -> Result<()> {
        trap_on_fatal(self.services.verdict(passed, truncate(summary, MAX_TEXT)))
    }
}

impl wit_progress::Host for HostState {
    fn log(&mut self, level: wit_progress::Level, message: String) -> Result<()> {
        self.services.log(level, truncate(message, 64 * 1024));
        Ok(())
    }

    fn report(&mut self, done: u32, total: u32, step: String) -> Result<()> {
        self.services.progress(done, total, truncate(step, 256));
        Ok(())
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
