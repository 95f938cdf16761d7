//! Reading checkpoint tensors: single or sharded safetensors, Hugging Face and
//! mlx-community names (`docs/qwen3-vl.md` §6), and the bookkeeping that lets a broken
//! checkpoint be reported in one error listing every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mlx::{Array, Dtype};
use serde_json::Value;

use crate::config::{ModelConfig, QuantParams};
use crate::error::{Error, Result};

/// The safetensors files of a model directory, in a stable order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::config(&index, "has no `weight_map` object"))?;
        let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        let missing: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| !dir.join(f).exists())
            .collect();
        if !missing.is_empty() {
            return Err(Error::weights(
                dir,
                format!(
                    "the index lists shards that are not on disk: {}",
                    missing.join(", ")
                ),
            ));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::weights(
            dir,
            "no .safetensors files (expected model.safetensors or an index with shards)",
        ));
    }
    Ok(files)
}

/// Maps any known layout's tensor name to the Hugging Face name.
pub fn canonical_name(name: &str) -> String {
    const RULES: [(&str, &str); 7] = [
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("vision_tower.", "model.visual."),
        ("visual.", "model.visual."),
        ("language_model.", "model.language_model."),
        ("model.layers.", "model.language_model.layers."),
        ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ];
    if name.starts_with("model.visual.")
        || name.starts_with("model.language_model.")
        || name.starts_with("lm_head.")
    {
        return name.to_string();
    }
    for (from, to) in RULES {
        if let Some(rest) = name.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    if name == "model.norm.weight" {
        return "model.language_model.norm.weight".into();
    }
    name.to_string()
}

/// The MLX module path of a Hugging Face layer name (for quantization overrides).
pub fn mlx_module_path(hf_layer: &str) -> String {
    if let Some(rest) = hf_layer.strip_prefix("model.language_model.") {
        format!("language_model.model.{rest}")
    } else if let Some(rest) = hf_layer.strip_prefix("lm_head") {
        format!("language_model.lm_head{rest}")
    } else if let Some(rest) = hf_layer.strip_prefix("model.visual.") {
        format!("vision_tower.{rest}")
    } else {
        hf_layer.to_string()
    }
}

/// Loaded tensors under Hugging Face names, consumed as the model is built.
/// Problems are collected rather than returned one at a time.
pub struct WeightSet {
    dir: PathBuf,
    /// Float tensors are converted to this dtype as they are taken.
    compute_dtype: Option<Dtype>,
    tensors: BTreeMap<String, Array>,
    missing: Vec<String>,
    misshaped: Vec<String>,
}

impl WeightSet {
    /// Reads every tensor of `dir` (lazily); with `compute_dtype`, float
    /// tensors are converted as they are taken (packed codes are not).
    pub fn load(dir: &Path, compute_dtype: Option<Dtype>) -> Result<WeightSet> {
        let mut tensors = BTreeMap::new();
        for file in weight_files(dir)? {
            super::safetensors_check::check_file(&file).map_err(|e| {
                Error::weights(
                    dir,
                    format!("{} is not a valid safetensors file: {e}", file.display()),
                )
            })?;
            let st = mlx::io::load_safetensors(&file).map_err(|e| {
                Error::weights(
                    dir,
                    format!("cannot read {}: {}", file.display(), e.message),
                )
            })?;
            for (name, a) in st.tensors {
                let canon = canonical_name(&name);
                if tensors.insert(canon.clone(), a).is_some() {
                    return Err(Error::weights(
                        dir,
                        format!("tensor {canon} appears twice (as {name})"),
                    ));
                }
            }
        }
        Ok(WeightSet {
            dir: dir.to_path_buf(),
            compute_dtype,
            tensors,
            missing: vec![],
            misshaped: vec![],
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Takes a float tensor, recording it as missing or misshaped when it is not as expected.
    pub fn take(&mut self, name: &str, shape: &[i32]) -> Option<Array> {
        self.take_as(name, shape, true)
    }

    fn take_as(&mut self, name: &str, shape: &[i32], float: bool) -> Option<Array> {
        match self.tensors.remove(name) {
            None => {
                self.missing.push(format!("{name} {shape:?}"));
                None
            }
            Some(a) if a.shape() != shape => {
                self.misshaped
                    .push(format!("{name}: {:?}, expected {shape:?}", a.shape()));
                None
            }
            Some(a) if float && !a.dtype().is_float() => {
                self.misshaped.push(format!(
                    "{name}: dtype {:?}, expected a float type",
                    a.dtype()
                ));
                None
            }
            Some(a) if !float && a.dtype() != Dtype::U32 => {
                self.misshaped.push(format!(
                    "{name}: dtype {:?}, expected packed U32 codes",
                    a.dtype()
                ));
                None
            }
            Some(a) => Some(self.cast(a)),
        }
    }

    fn cast(&self, a: Array) -> Array {
        match self.compute_dtype {
            Some(d) if a.dtype().is_float() && a.dtype() != d => a.astype(d).unwrap_or(a),
            _ => a,
        }
    }

    /// Records a tensor whose shape the caller found wrong.
    pub fn note_misshaped(&mut self, message: String) {
        self.misshaped.push(message);
    }

    /// Takes a tensor of any shape (the caller checks it).
    pub fn take_any(&mut self, name: &str) -> Option<Array> {
        let a = self.tensors.remove(name);
        if a.is_none() {
            self.missing.push(name.to_string());
        }
        a.map(|a| self.cast(a))
    }

    /// Takes a linear layer's weight (dense or quantized) and optional bias.
    pub fn linear(
        &mut self,
        cfg: &ModelConfig,
        layer: &str,
        out_f: usize,
        in_f: usize,
        bias: bool,
    ) -> Option<mlx::nn::Linear> {
        let weight = self.matrix(cfg, layer, out_f, in_f)?;
        let bias = if bias {
            Some(self.take(&format!("{layer}.bias"), &[out_f as i32])?)
        } else {
            None
        };
        Some(mlx::nn::Linear { weight, bias })
    }

    /// A `(rows, cols)` matrix stored dense or affine-quantized (a layer is
    /// quantized iff `{layer}.scales` exists).
    pub fn matrix(
        &mut self,
        cfg: &ModelConfig,
        layer: &str,
        rows: usize,
        cols: usize,
    ) -> Option<mlx::nn::Weight> {
        let (r, c) = (rows as i32, cols as i32);
        if !self.contains(&format!("{layer}.scales")) {
            return self
                .take(&format!("{layer}.weight"), &[r, c])
                .map(mlx::nn::Weight::Dense);
        }
        let params = cfg
            .quantization
            .as_ref()
            .and_then(|q| q.for_layer(&mlx_module_path(layer)));
        let Some(QuantParams { group_size, bits }) = params else {
            // Consume the tensors so they are not also reported as unexpected.
            for part in ["weight", "scales", "biases"] {
                self.tensors.remove(&format!("{layer}.{part}"));
            }
            self.misshaped.push(format!(
                "{layer}: quantized (has scales) but config.json gives no quantization parameters for it"
            ));
            return None;
        };
        if c % group_size != 0 || (c * bits) % 32 != 0 {
            self.misshaped.push(format!(
                "{layer}: {cols} columns do not split into groups of {group_size}"
            ));
            return None;
        }
        let weight = self.take_as(&format!("{layer}.weight"), &[r, c * bits / 32], false);
        let scales = self.take(&format!("{layer}.scales"), &[r, c / group_size]);
        let biases = self.take(&format!("{layer}.biases"), &[r, c / group_size]);
        let (weight, scales, biases) = (weight?, scales?, biases?);
        Some(mlx::nn::Weight::Quantized(mlx::Quantized {
            weight,
            scales,
            biases,
            group_size,
            bits,
        }))
    }

    /// Ends loading: one error listing every missing, misshaped and unexpected tensor.
    pub fn finish(self) -> Result<()> {
        let unexpected: Vec<String> = self.tensors.keys().cloned().collect();
        if self.missing.is_empty() && self.misshaped.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let mut parts = vec![];
        let list = |title: &str, items: &[String]| {
            const SHOW: usize = 12;
            let mut s = format!(
                "{} {title}: {}",
                items.len(),
                items
                    .iter()
                    .take(SHOW)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            if items.len() > SHOW {
                s.push_str(&format!("; … and {} more", items.len() - SHOW));
            }
            s
        };
        if !self.missing.is_empty() {
            parts.push(list("missing", &self.missing));
        }
        if !self.misshaped.is_empty() {
            parts.push(list("misshaped", &self.misshaped));
        }
        if !unexpected.is_empty() {
            parts.push(list("unexpected", &unexpected));
        }
        Err(Error::weights(
            &self.dir,
            format!(
                "the checkpoint does not match config.json. {}",
                parts.join(". ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_every_layout_map_to_hugging_face() {
        let cases = [
            (
                "language_model.model.layers.0.mlp.up_proj.weight",
                "model.language_model.layers.0.mlp.up_proj.weight",
            ),
            ("language_model.lm_head.weight", "lm_head.weight"),
            (
                "vision_tower.blocks.3.attn.qkv.bias",
                "model.visual.blocks.3.attn.qkv.bias",
            ),
            (
                "visual.merger.norm.weight",
                "model.visual.merger.norm.weight",
            ),
            (
                "language_model.embed_tokens.weight",
                "model.language_model.embed_tokens.weight",
            ),
            (
                "model.layers.2.self_attn.q_norm.weight",
                "model.language_model.layers.2.self_attn.q_norm.weight",
            ),
            ("model.norm.weight", "model.language_model.norm.weight"),
            (
                "model.visual.pos_embed.weight",
                "model.visual.pos_embed.weight",
            ),
            ("lm_head.weight", "lm_head.weight"),
        ];
        for (raw, hf) in cases {
            assert_eq!(canonical_name(raw), hf, "{raw}");
        }
        assert_eq!(
            mlx_module_path("model.language_model.layers.3.mlp.down_proj"),
            "language_model.model.layers.3.mlp.down_proj"
        );
    }
}
