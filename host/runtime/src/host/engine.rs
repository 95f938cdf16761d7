//! `vlmbench:workload/engine`: requests checked for size, image handles
//! resolved, then handed to the engine service.

use wasmtime::Result;
use wasmtime::component::Resource;

use super::{
    HostState, MAX_IMAGE_PARTS, MAX_IMAGES_PER_REQUEST, MAX_MESSAGES, MAX_TEXT, check_len, forward,
};
use crate::bindings::wit_engine;
use crate::image_sets::ImageHandle;

impl wit_engine::Host for HostState {
    fn model(&mut self) -> Result<wit_engine::ModelInfo> {
        Ok(self.services.engine.model_info())
    }

    fn generate(
        &mut self,
        images: Vec<Resource<ImageHandle>>,
        request: wit_engine::GenerateRequest,
    ) -> Result<Result<wit_engine::GenerateResponse, String>> {
        if let Err(e) = check_request(images.len(), &request) {
            return Ok(Err(e));
        }
        let mut imgs = Vec::with_capacity(images.len());
        for r in &images {
            imgs.push(self.table.get(r)?.image.clone());
        }
        forward(self.services.engine.generate(imgs, request))
    }

    fn cache_stats(&mut self) -> Result<wit_engine::CacheCounters> {
        Ok(self.services.engine.cache_stats())
    }

    fn cache_clear(&mut self) -> Result<()> {
        self.services.engine.cache_clear();
        Ok(())
    }

    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix: Option<u64>,
        vision: Option<u64>,
    ) -> Result<()> {
        self.services
            .engine
            .cache_configure(enabled, prefix, vision);
        Ok(())
    }
}

/// The sizes of a request, checked before anything is copied: images,
/// messages, image parts (every reference counts, repeated or not) and the
/// text the model reads (roles too). The label is the store's to cut.
fn check_request(images: usize, request: &wit_engine::GenerateRequest) -> Result<(), String> {
    check_len("images in one request", images, MAX_IMAGES_PER_REQUEST)?;
    check_len(
        "messages in one request",
        request.messages.len(),
        MAX_MESSAGES,
    )?;
    let parts = request.messages.iter().flat_map(|m| m.content.iter());
    let image_parts = parts
        .clone()
        .filter(|c| matches!(c, wit_engine::ContentPart::Image(_)))
        .count();
    check_len("image parts in one request", image_parts, MAX_IMAGE_PARTS)?;
    let text: usize = parts
        .map(|c| match c {
            wit_engine::ContentPart::Text(t) => t.len(),
            wit_engine::ContentPart::Image(_) => 0,
        })
        .chain(request.messages.iter().map(|m| m.role.len()))
        .sum();
    check_len(
        "bytes of text in one request (prompts and roles)",
        text,
        MAX_TEXT,
    )
}
