//! Every standalone kernel the step runner may compile, at the 8B's shapes,
//! so that they can be compiled and checked without a GPU (`lab
//! kernel-sources`, which `scripts/check_kernels.sh` compiles with NVRTC):
//! on a GPU they are compiled only when a request first decodes.

use mlx::Dtype;

use super::attention::{self, ClusterLayout, Heads};
use super::launch::LaunchTuning;
use super::qmv::{Variant, argmax_step_kernel};
use super::step::{StepKernel, embed4};
use crate::error::Result;

/// The 8B's attention layout.
const HEADS_8B: Heads = Heads {
    heads: 32,
    kv_heads: 8,
    head_dim: 128,
};

/// Each kernel with a name for its file: the embedding, the five products
/// (the LM head with and without its argmax), a product compiled to fit 3
/// blocks an SM, the split attention at 1, 16 and 64 splits, and the cluster
/// attention in each layout.
pub fn step_kernels_8b() -> Result<Vec<(String, StepKernel)>> {
    let bf = Dtype::BF16;
    let eps = 1e-6;
    let theta = 5e6;
    let tuning = LaunchTuning::default();
    let mut all = vec![("embed".to_string(), embed4(bf, 4096)?)];
    for (name, v, k, n) in [
        ("qkv", Variant::Norm, 4096, 6144),
        ("o", Variant::Residual, 4096, 4096),
        ("gate_up", Variant::NormSwiGlu, 4096, 24576),
        ("down", Variant::Residual, 12288, 4096),
        ("head_plain", Variant::Norm, 4096, 151_936),
    ] {
        all.push((name.into(), v.step_kernel(&tuning, k, n, bf, eps)?));
    }
    all.push((
        "head".into(),
        argmax_step_kernel(&tuning, 4096, 151_936, bf, eps)?,
    ));
    let bounded = LaunchTuning {
        shapes: vec![((4096, 6144), (8, 2, 3))],
        ..LaunchTuning::default()
    };
    all.push((
        "qkv_3_an_sm".into(),
        Variant::Norm.step_kernel(&bounded, 4096, 6144, bf, eps)?,
    ));
    for splits in [1, 16, 64] {
        let k = attention::step_kernel(HEADS_8B, bf, splits, eps, theta)?;
        all.push((format!("attention_{splits}_splits"), k));
    }
    for name in ["8", "16", "8v", "16v", "16vq2", "16vq4"] {
        let layout = ClusterLayout::parse(name).expect("a layout");
        let k = attention::cluster_step_kernel(HEADS_8B, bf, layout, eps, theta)?;
        all.push((format!("attention_cluster_{name}"), k));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_kernel_is_a_distinct_launchable_function() {
        let all = step_kernels_8b().unwrap();
        let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "file names are unique");
        for (what, k) in &all {
            assert!(k.name.starts_with("vlmbench_"), "{what}");
            assert!(k.dims.blocks > 0 && k.dims.threads % 32 == 0, "{what}");
            assert!(k.dims.threads <= 1024, "{what}");
            // The blocks of a cluster launch fill whole clusters.
            assert_eq!(k.dims.blocks % k.placement.cluster, 0, "{what}");
            // Standalone: headers inline, nothing included from elsewhere.
            assert!(!k.source.contains("#include \"/"), "{what}");
        }
        // The argmax head launches as the plain head does, with more to write.
        let of = |n: &str| &all.iter().find(|(m, _)| m == n).unwrap().1;
        assert_eq!(of("head").dims, of("head_plain").dims);
        assert_ne!(of("head").source, of("head_plain").source);
        assert_eq!(of("qkv_3_an_sm").placement.min_blocks, 3);
        // Each cluster layout: its cluster size, one launch for 8 KV heads.
        for (name, blocks, launched) in [("16v", 16, 128), ("16vq2", 16, 256), ("8", 8, 64)] {
            let k = of(&format!("attention_cluster_{name}"));
            assert_eq!((k.placement.cluster, k.dims.blocks), (blocks, launched));
        }
    }
}
