//! The cluster attention with q/k/v's product inside (`attn_qkv.cuh`): one
//! launch where the step runner has two, so that each block's copy of its
//! cached keys lands while it multiplies, instead of after q/k/v's blocks
//! drain (`bench/gpu/NOTES.md`, stop 23). A measuring path for now
//! (`VLM_BENCH_FUSED_QKV`), checked against the two launches it replaces.

use mlx::Dtype;
use mlx::cuda::Dims;
use mlx::kernel::TemplateArg;

use super::attention::{self, ClusterLayout, Heads};
use super::step::{Param, Placement, StepKernel};
use crate::error::{Error, Result};

/// The most dynamic shared memory a launch takes: the cluster attention's,
/// less room for the product's static shared memory (its sums of R row
/// groups) within the H100's 227 KB a block.
const MAX_SHARED_BYTES: u32 = attention::MAX_SHARED_BYTES - 4 * 1024;

/// Dynamic shared memory for caches of `cap` positions and a hidden size of
/// `k`: the attention's, then the product's input row.
pub fn shared_bytes(heads: Heads, dtype: Dtype, layout: ClusterLayout, cap: i32, k: i32) -> u32 {
    attention::cluster_shared_bytes(heads, dtype, layout, cap) + super::qmv::shared_bytes(k) as u32
}

/// Whether a launch with caches of `cap` positions fits: the cluster
/// attention's conditions, the product's shared memory too, and each head's
/// rows of q/k/v in 16-row groups split evenly across its cluster.
pub fn fits(heads: Heads, dtype: Dtype, layout: ClusterLayout, cap: i32, k: i32) -> bool {
    let groups = (heads.heads / heads.kv_heads + 2) * heads.head_dim / 16;
    attention::cluster_fits(heads, dtype, layout, cap)
        && heads.head_dim % 16 == 0
        && groups % layout.blocks == 0
        && shared_bytes(heads, dtype, layout, cap, k) <= MAX_SHARED_BYTES
}

/// The kernel for a `k`-wide input and q/k/v of `n` rows, each warp loading
/// `tiles_at_once` k-tiles at once, with the launch of the largest caches it
/// takes. Parameters: `x, nw, w, scales, biases, qkv` (written), then those
/// of the cluster attention (`qn, kn, kc, vc, meta, out, cache_cap`).
pub fn step_kernel(
    heads: Heads,
    dtype: Dtype,
    layout: ClusterLayout,
    (k, n, tiles_at_once): (i32, i32, i32),
    rms_eps: f32,
    rope_theta: f32,
) -> Result<StepKernel> {
    if !fits(heads, dtype, layout, 1, k) || n != (heads.heads + 2 * heads.kv_heads) * heads.head_dim
    {
        return Err(Error::Model(format!(
            "q/k/v in the attention: clusters of {} do not fit {heads:?} with {n} rows",
            layout.blocks
        )));
    }
    let mut params = vec![
        Param::In("x", dtype),
        Param::In("nw", dtype),
        Param::In("w", Dtype::U32),
        Param::In("scales", dtype),
        Param::In("biases", dtype),
        Param::Out("qkv", dtype),
    ];
    // The attention's inputs after `qkv`, its output and the capacity.
    params.extend(attention::step_inputs(dtype).into_iter().skip(1));
    params.extend([Param::Out("out", dtype), Param::Int("cache_cap")]);
    let parts = [
        ("C", layout.blocks),
        ("LV", i32::from(layout.late_values)),
        ("K", k),
        ("N", n),
        ("U", tiles_at_once),
    ];
    let template: Vec<(&str, TemplateArg)> =
        attention::template(heads, dtype, &parts, rms_eps, rope_theta);
    let dims = Dims {
        blocks: (heads.kv_heads * layout.blocks) as u32,
        threads: attention::CLUSTER_THREADS,
        shared_bytes: MAX_SHARED_BYTES,
    };
    let header = super::header(&[
        include_str!("q4_dot.cuh"),
        include_str!("phases.cuh"),
        include_str!("qmv4.cuh"),
        include_str!("attn.cuh"),
        include_str!("attn_cluster.cuh"),
        include_str!("attn_qkv.cuh"),
    ]);
    let placement = Placement {
        cluster: layout.blocks as u32,
        min_blocks: 0,
    };
    super::step::standalone(
        "vlmbench_qkv_attn_cluster",
        placement,
        &header,
        &super::compact(include_str!("attn_qkv.cu")),
        &params,
        &template,
        dims,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_launches_fit_where_the_row_groups_split_evenly() {
        let qwen8b = Heads {
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
        };
        let late16 = ClusterLayout::parse("16v").unwrap();
        let eight = ClusterLayout::parse("8").unwrap();
        assert!(fits(qwen8b, Dtype::BF16, late16, 4096, 4096));
        // The product's input row takes room the attention alone has.
        let cap = (1..40_000)
            .rev()
            .find(|&c| attention::cluster_fits(qwen8b, Dtype::BF16, late16, c))
            .unwrap();
        assert!(!fits(qwen8b, Dtype::BF16, late16, cap, 4096));
        assert_eq!(
            shared_bytes(qwen8b, Dtype::BF16, late16, cap, 4096),
            attention::cluster_shared_bytes(qwen8b, Dtype::BF16, late16, cap) + 128 * 80 + 64 * 4
        );
        // Three query heads a key/value head: 40 row groups, not a multiple of 16.
        let g3 = Heads {
            heads: 24,
            kv_heads: 8,
            head_dim: 128,
        };
        assert!(!fits(g3, Dtype::BF16, late16, 1024, 3072));
        assert!(fits(g3, Dtype::BF16, eight, 1024, 3072));
        let wrong_rows = step_kernel(qwen8b, Dtype::BF16, late16, (4096, 4096, 2), 1e-6, 1e6);
        assert!(wrong_rows.is_err());
    }
}
