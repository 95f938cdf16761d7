//! Image preprocessing exactly as transformers' default Qwen3-VL processor
//! (`docs/qwen3-vl.md` §4): the decoded, oriented RGB image (from `imaging`)
//! smart-resized with the Pillow/PyTorch-exact bicubic, rescaled and
//! normalised, duplicated in time, and cut into patches in merge-window order.

mod patchify;

pub use imaging::{
    DecodeLimits, Encoding, MAX_SIDE, Pattern, Resampler, RgbImage, decode_image, encode_image,
    resize_bicubic, resize_bicubic_into, resize_bicubic_with, smart_resize, synth_image,
};
pub use patchify::{
    PreparedImage, model_size, patch_array, prepare_image, resize_for_model, stage_for_model,
};
