//! `vlmbench:workload/images`: image handles, synthesized or opened from the
//! granted sets, resized and re-encoded on the host.

use std::sync::Arc;

use imaging::{Encoding, Pattern, decode_image, encode_image, resize_bicubic, synth_image};
use wasmtime::Result;
use wasmtime::component::Resource;

use super::HostState;
use crate::bindings::v0_1::vlmbench::workload::images as images_0_1;
use crate::bindings::wit_images;
use crate::image_sets::ImageHandle;

macro_rules! images_host {
    ($m:ident) => {
        impl $m::HostImage for HostState {
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
                let max = imaging::MAX_SIDE;
                if width == 0 || height == 0 || width > max || height > max {
                    return Ok(Err(format!(
                        "resize to {width}x{height}: sides must be between 1 and {max}"
                    )));
                }
                if let Err(e) = self.room_for_image(width, height) {
                    return Ok(Err(e));
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
                let (width, height) = (h.image.width, h.image.height);
                if let Err(e) = self.room_for_image(width, height) {
                    return Ok(Err(e));
                }
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
                let h = self.table.delete(img)?;
                self.release_image(&h.image);
                self.live_images = self.live_images.saturating_sub(1);
                Ok(())
            }
        }

        impl $m::Host for HostState {
            fn synthesize(
                &mut self,
                width: u32,
                height: u32,
                pattern: String,
                seed: u64,
            ) -> Result<Result<Resource<ImageHandle>, String>> {
                if let Err(e) = self.room_for_image(width, height) {
                    return Ok(Err(e));
                }
                let image =
                    Pattern::parse(&pattern).and_then(|p| synth_image(width, height, p, seed));
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

            fn list_sets(&mut self) -> Result<Vec<$m::ImageSet>> {
                let names: Vec<String> = self.sets.names().cloned().collect();
                Ok(names
                    .into_iter()
                    .map(|name| {
                        let images = self.sets.list_images(&name).map_or(0, |v| v.len() as u32);
                        $m::ImageSet { name, images }
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
    };
}

images_host!(wit_images);
images_host!(images_0_1);
