//! safetensors files through MLX's own reader and writer. Loading is lazy:
//! tensors are read from disk when first evaluated.

use std::collections::BTreeMap;
use std::path::Path;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;

/// The tensors (by name) and string metadata of one safetensors file.
#[derive(Debug, Default)]
pub struct Safetensors {
    pub tensors: BTreeMap<String, Array>,
    pub metadata: BTreeMap<String, String>,
}

fn path_str<'a>(op: &'static str, path: &'a Path) -> Result<&'a str> {
    path.to_str()
        .ok_or_else(|| Error::new(op, format!("path is not UTF-8: {}", path.display())))
}

pub fn load_safetensors(path: &Path) -> Result<Safetensors> {
    let p = path_str("load_safetensors", path)?;
    let map = ffi::load_safetensors(p).map_err(|e| {
        Error::new(
            "load_safetensors",
            format!("{}: {}", path.display(), e.what()),
        )
    })?;
    let mut out = Safetensors::default();
    for name in ffi::tensor_map_keys(&map) {
        let a = Array::wrap("load_safetensors", ffi::tensor_map_get(&map, &name))?;
        out.tensors.insert(name, a);
    }
    let meta = ffi::tensor_map_metadata(&map);
    for pair in meta.chunks_exact(2) {
        out.metadata.insert(pair[0].clone(), pair[1].clone());
    }
    Ok(out)
}

/// Writes `tensors` (evaluated as needed) with `metadata` to `path`.
pub fn save_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Array)>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let p = path_str("save_safetensors", path)?;
    let mut map = ffi::tensor_map_new();
    for (name, a) in tensors {
        ffi::tensor_map_insert(map.pin_mut(), name, a.inner());
    }
    for (k, v) in metadata {
        ffi::tensor_map_set_metadata(map.pin_mut(), k, v);
    }
    ffi::save_safetensors(p, &map).map_err(|e| {
        Error::new(
            "save_safetensors",
            format!("{}: {}", path.display(), e.what()),
        )
    })
}
