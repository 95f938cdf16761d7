//! `vlmbench:workload/engine`: requests checked for size, image handles
//! resolved, then handed to the engine service.

use wasmtime::Result;
use wasmtime::component::Resource;

use super::{HostState, MAX_IMAGES_PER_REQUEST, MAX_TEXT, check_len, forward};
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
