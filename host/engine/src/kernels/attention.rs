//! Attention for one decoding step (`attn_decode.cu`):
//! per-head RMSNorm and RoPE of the new query and key, the new key and value
//! written into the caches in place, and flash-decoding over the cached
//! positions in parts per key/value head, joined by the last block to finish.
//! One launch replaces the ~20 graph nodes of the same step built from MLX
//! ops (reshapes, norms, transposes, RoPE, cache updates, slices, SDPA).

use mlx::cuda::Dims;
use mlx::kernel::{Kernel, KernelSpec, Launch, TemplateArg};
use mlx::{Array, Dtype};

use super::{KernelKey, Kernels};
use crate::error::Result;

/// Threads per block, and positions a block scores at once.
const THREADS: i32 = 128;

/// Splits of the positions per key/value head: enough that each block has
/// at most one tile of positions (a step is bound by memory latency, so
/// blocks should be many and short), a power of two so that few kernel
/// variants get compiled.
fn splits(positions: i32) -> i32 {
    let tiles = ((positions.max(1) + THREADS - 1) / THREADS) as u32;
    tiles.next_power_of_two().min(64) as i32
}

/// Head layout of the attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
}

impl Heads {
    /// Whether the kernels handle this layout in `dtype`.
    pub fn supported(&self, dtype: Dtype) -> bool {
        self.kv_heads > 0
            && self.heads % self.kv_heads == 0
            && self.heads / self.kv_heads <= 8
            // 64, 128 or 256: a lane's share of a value row (head_dim / 32
            // elements) is loaded as one aligned vector.
            && matches!(self.head_dim, 64 | 128 | 256)
            && matches!(dtype, Dtype::BF16 | Dtype::F16)
    }

    /// The layout's constants, then how the positions are divided: `SPLITS`
    /// (the split kernel) or `C` and `LV` (the cluster kernel's).
    fn template(
        &self,
        dtype: Dtype,
        parts: &[(&'static str, i32)],
    ) -> Vec<(&'static str, TemplateArg)> {
        let mut t = vec![
            ("T", TemplateArg::Dtype(dtype)),
            ("HD", TemplateArg::Int(self.head_dim)),
            ("NH", TemplateArg::Int(self.heads)),
            ("NKV", TemplateArg::Int(self.kv_heads)),
        ];
        t.extend(parts.iter().map(|&(k, v)| (k, TemplateArg::Int(v))));
        t
    }
}

/// The device functions both attentions include.
pub(super) const HEADERS: [&str; 3] = [
    include_str!("q4_dot.cuh"),
    include_str!("phases.cuh"),
    include_str!("attn.cuh"),
];

/// The body, with the caches' capacity read from `cap` (an expression).
fn body(cap: &str) -> String {
    super::compact(&format!(
        "#define CACHE_CAP {cap}\n{}",
        include_str!("attn_decode.cu")
    ))
}

/// The attention for MLX's custom-kernel API; `header` is what the source
/// includes ([`Kernels`]).
pub(super) fn compile_decode(header: &str) -> Result<Kernel> {
    Ok(Kernel::cuda(
        &KernelSpec {
            name: "vlmbench_attn_decode",
            inputs: &["qkv", "qn", "kn", "kc", "vc", "meta", "counters"],
            outputs: &["part", "out"],
            // MLX passes the shape of an input whose `_shape` the source names.
            source: &body("kc_shape[2]"),
            header,
            // The caches and counters must be the buffers themselves, never
            // copies: the kernel writes into them.
            ensure_row_contiguous: false,
        },
        0,
    )?)
}

/// The template constants of a step over `positions` cached positions (the
/// new one included) split `splits` ways.
fn template(
    heads: Heads,
    dtype: Dtype,
    parts: &[(&'static str, i32)],
    rms_eps: f32,
    rope_theta: f32,
) -> Vec<(&'static str, TemplateArg)> {
    let mut template = heads.template(dtype, parts);
    let bits = |v: f32| TemplateArg::Int(v.to_bits() as i32);
    template.extend([
        ("EPS_BITS", bits(rms_eps)),
        ("LOG2_THETA_BITS", bits(rope_theta.log2())),
        ("SCALE_BITS", bits(1.0 / (heads.head_dim as f32).sqrt())),
    ]);
    template
}

/// The splits of a step whose cache holds `len` positions before it.
pub fn step_splits(len: i32) -> i32 {
    splits(len + 1)
}

/// Floats of the `part` scratch a step needs at most (the most splits).
pub fn part_len(heads: Heads) -> i32 {
    let g = heads.heads / heads.kv_heads;
    heads.kv_heads * splits(i32::MAX / 2) * g * (heads.head_dim + 2)
}

/// The parameters both step attentions start with: `qkv, qn, kn, kc, vc,
/// meta`.
fn step_inputs(dtype: Dtype) -> Vec<super::step::Param> {
    use super::step::Param::In;
    vec![
        In("qkv", dtype),
        In("qn", dtype),
        In("kn", dtype),
        In("kc", dtype),
        In("vc", dtype),
        In("meta", Dtype::I32),
    ]
}

/// The standalone kernel (`step.rs`) for a step split `splits` ways, and its
/// launch. Parameters: `qkv, qn, kn, kc, vc, meta, counters, part, out`, then
/// the caches' capacity as an `int`.
pub fn step_kernel(
    heads: Heads,
    dtype: Dtype,
    splits: i32,
    rms_eps: f32,
    rope_theta: f32,
) -> Result<super::step::StepKernel> {
    use super::step::Param::{In, Int, Out};
    let mut params = step_inputs(dtype);
    params.extend([
        In("counters", Dtype::I32),
        Out("part", Dtype::F32),
        Out("out", dtype),
        Int("cache_cap"),
    ]);
    let dims = Dims {
        blocks: (heads.kv_heads * splits) as u32,
        threads: THREADS as u32,
        shared_bytes: 0,
    };
    super::step::standalone(
        "vlmbench_attn_decode",
        super::step::Placement::ANY,
        &super::source::inline_header(&HEADERS),
        &body("cache_cap"),
        &params,
        &template(heads, dtype, &[("SPLITS", splits)], rms_eps, rope_theta),
        dims,
    )
}

/// How the step runner's attention (`attn_cluster.cu`, thread-block
/// clusters per key/value head) holds a head's cached rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterLayout {
    /// Blocks per cluster: 2, 4, 8 or 16 (past 8 the kernel is allowed to).
    pub blocks: i32,
    /// Only the keys in shared memory before the wait, the values brought
    /// into their rows after the scores, from L2 (half the bytes the scores
    /// wait for where blocks start late, and half the shared memory a
    /// position).
    pub late_values: bool,
    /// Clusters per key/value head, each for an equal share of its query
    /// heads: 1, 2 or 4 (a block scores and sums for fewer heads, in fewer
    /// registers; every cluster reads the head's rows).
    pub query_splits: i32,
}

impl ClusterLayout {
    /// `blocks` blocks, keys and values before the wait, one cluster a head.
    pub const fn of(blocks: i32) -> ClusterLayout {
        ClusterLayout {
            blocks,
            late_values: false,
            query_splits: 1,
        }
    }

    /// `N` (blocks), then `v` (late values), then `qS` (S clusters a head),
    /// as paths and the environment name layouts (and `Display` writes
    /// them): `16`, `16v`, `16vq2`; `None` for anything else.
    pub fn parse(s: &str) -> Option<ClusterLayout> {
        let (s, query_splits) = match s.split_once('q') {
            Some((s, q)) => (s, q.parse().ok().filter(|&q| q > 1)?),
            None => (s, 1),
        };
        let (n, late_values) = s.strip_suffix('v').map_or((s, false), |n| (n, true));
        let blocks = n.parse().ok().filter(|&b| b > 0)?;
        Some(ClusterLayout {
            blocks,
            late_values,
            query_splits,
        })
    }

    /// Blocks a launch takes for `kv_heads` key/value heads.
    pub fn launched_blocks(&self, kv_heads: i32) -> i32 {
        kv_heads * self.query_splits * self.blocks
    }
}

impl std::fmt::Display for ClusterLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let late = if self.late_values { "v" } else { "" };
        write!(f, "{}{late}", self.blocks)?;
        match self.query_splits {
            1 => Ok(()),
            q => write!(f, "q{q}"),
        }
    }
}

/// The layout where [`AUTO`] does not fit or failed its check: 8 blocks is
/// the largest cluster every sm_90 GPU schedules, and keys and values before
/// the wait were faster than late values in clusters of 8 (H100, 1920x1080:
/// 408.7 against 390.2 tok/s; `docs/experiments.md`, "Late values, the pushed
/// join and two passes of scores").
pub const DEFAULT_CLUSTER: ClusterLayout = ClusterLayout::of(8);
/// The automatic layout while it fits: clusters of 16 start only once q/k/v's
/// blocks drain, so their copies come after the wait, and late values halve
/// them. On the H100 16 blocks with keys and values before the wait decoded
/// within −0.4 to +1.3% of it up to ~900 positions and 0.5–2.4% slower past
/// them; clusters of 8 were slower at every context (0.1–4%) (same section).
pub const AUTO: ClusterLayout = ClusterLayout {
    blocks: 16,
    late_values: true,
    query_splits: 1,
};
/// The automatic layout for caches of [`LONG_CAP`] positions or more: two
/// clusters of 16 per key/value head, each for half its query heads. On the
/// H100 (alternating processes) +1.1% at 1920x1080 against [`AUTO`], but
/// −1.4% at 448x448 and −0.5 to +0.2% at 1280x720 and 1024x1024
/// (`docs/experiments.md`, "Two clusters per key/value head"). On the H200
/// (in one process) the values before the wait lost to it at 1920x1080:
/// `16q2` −7.1%, `16` −2.2% (`bench/runs/2026-11-28-h200-cb4cecb-decode.md`).
pub const AUTO_LONG: ClusterLayout = ClusterLayout {
    query_splits: 2,
    ..AUTO
};
/// Caches from which [`AUTO_LONG`] is chosen: the 8B's 1920x1080 requests
/// (2,062 prompt positions), not its 1024x1024 ones (1,046), where it gained
/// nothing.
pub const LONG_CAP: i32 = 1536;
/// Every layout [`auto_cluster`] may choose, in order of preference, each
/// with the smallest cache it is meant for; compiled and checked before
/// automatic steps use them.
pub const AUTO_LAYOUTS: [(ClusterLayout, i32); 3] =
    [(AUTO_LONG, LONG_CAP), (AUTO, 0), (DEFAULT_CLUSTER, 0)];

/// The cluster layout for caches of `cap` positions when none is asked: the
/// first of [`AUTO_LAYOUTS`] meant for caches of this size that is `usable`
/// (compiled and checked) and whose rows fit, if any.
pub fn auto_cluster(
    heads: Heads,
    dtype: Dtype,
    cap: i32,
    usable: impl Fn(ClusterLayout) -> bool,
) -> Option<ClusterLayout> {
    AUTO_LAYOUTS
        .into_iter()
        .filter(|&(_, from)| cap >= from)
        .map(|(c, _)| c)
        .find(|&c| usable(c) && cluster_fits(heads, dtype, c, cap))
}

/// Threads per block of the cluster attention.
const CLUSTER_THREADS: u32 = 256;
/// The largest cluster the kernel's join has room for (`ACL_MAX_CLUSTER`).
const MAX_CLUSTER: u32 = 16;
/// The most dynamic shared memory a cluster attention block asks for: sm_90's
/// 227 KB a block, less 1 KB for static shared memory (the timeline's).
const MAX_SHARED_BYTES: u32 = super::step::BLOCK_SHARED_BYTES - 1024;

/// Dynamic shared memory of a cluster attention block for caches of `cap`
/// positions, as `attn_cluster_smem_bytes` (attn_cluster.cuh) computes it:
/// the fixed part (`AclFixed`: queries, the join's inbox, the position
/// groups' sums, every block's max and sum per head, an mbarrier) rounded to
/// 16 bytes, then per position a key row, a value row (unless late) and G
/// scores, for the G query heads of a cluster.
pub fn cluster_shared_bytes(heads: Heads, dtype: Dtype, layout: ClusterLayout, cap: i32) -> u32 {
    let g = (heads.heads / heads.kv_heads / layout.query_splits.max(1)) as u32;
    let hd = heads.head_dim as u32;
    let groups = CLUSTER_THREADS / (hd / 2);
    let fixed = (4 * (g * hd * (2 + groups) + 2 * g * (MAX_CLUSTER + 1)) + 8).div_ceil(16) * 16;
    let positions = (cap.max(1) as u32).div_ceil(layout.blocks.max(1) as u32);
    let rows = if layout.late_values { 1 } else { 2 };
    fixed + positions * (rows * hd * dtype.size_of() as u32 + 4 * g)
}

/// Whether the cluster attention in `layout` runs a step with caches of
/// `cap` positions: a supported head layout whose outputs divide among the
/// cluster, query heads that divide among a head's clusters, and every
/// block's rows fit in its shared memory (~3.3k positions for the 8B in
/// clusters of 8, ~6.4k with late values).
pub fn cluster_fits(heads: Heads, dtype: Dtype, layout: ClusterLayout, cap: i32) -> bool {
    let g = heads.heads / heads.kv_heads.max(1);
    matches!(layout.blocks, 2 | 4 | 8 | 16)
        && matches!(layout.query_splits, 1 | 2 | 4)
        && heads.supported(dtype)
        && g % layout.query_splits == 0
        && (g / layout.query_splits * heads.head_dim) % layout.blocks == 0
        && cluster_shared_bytes(heads, dtype, layout, cap) <= MAX_SHARED_BYTES
}

/// The cluster attention as a standalone kernel (`step.rs`, sm_90 on), with
/// the launch of the largest caches it takes: a step launches it with
/// [`cluster_shared_bytes`] of its caches. Parameters: `qkv, qn, kn, kc, vc,
/// meta, out`, then the caches' capacity as an `int`.
pub fn cluster_step_kernel(
    heads: Heads,
    dtype: Dtype,
    layout: ClusterLayout,
    rms_eps: f32,
    rope_theta: f32,
) -> Result<super::step::StepKernel> {
    use super::step::Param::{Int, Out};
    let mut params = step_inputs(dtype);
    params.extend([Out("out", dtype), Int("cache_cap")]);
    let parts = [
        ("C", layout.blocks),
        ("LV", i32::from(layout.late_values)),
        ("QS", layout.query_splits),
    ];
    let template = template(heads, dtype, &parts, rms_eps, rope_theta);
    let dims = Dims {
        blocks: layout.launched_blocks(heads.kv_heads) as u32,
        threads: CLUSTER_THREADS,
        shared_bytes: MAX_SHARED_BYTES,
    };
    let [q4, phases, attn] = HEADERS;
    let header =
        super::source::inline_header(&[q4, phases, attn, include_str!("attn_cluster.cuh")]);
    let placement = super::step::Placement {
        cluster: layout.blocks as u32,
        min_blocks: 0,
    };
    super::step::standalone(
        "vlmbench_attn_cluster",
        placement,
        &header,
        &super::compact(include_str!("attn_cluster.cu")),
        &params,
        &template,
        dims,
    )
}

/// The inputs of one step.
pub struct DecodeStep<'a> {
    /// The fused q/k/v projection of the new token, `(…, (NH + 2 NKV) HD)`.
    pub qkv: &'a Array,
    pub q_norm: &'a Array,
    pub k_norm: &'a Array,
    /// Cache buffers `(1, NKV, capacity, HD)`, row-contiguous, holding `len`
    /// positions; position `len` is written by this step.
    pub keys: &'a Array,
    pub values: &'a Array,
    /// `[len, rope position, …]`, int32, best made on the device (a small
    /// array made on the host is read across PCIe by every block).
    pub meta: &'a Array,
    /// At least `kv_heads` int32 zeros in device memory, one array per
    /// chain of dependent steps (the kernel counts finished blocks in them
    /// and leaves them zero; two kernels running at once must not share it).
    pub counters: &'a Array,
    /// The number of cached positions (`meta[0]`), to size the launch.
    pub len: i32,
    pub rms_eps: f32,
    pub rope_theta: f32,
}

/// The attention output `(1, 1, NH HD)` of one decoding step.
pub fn decode(kernels: &Kernels, step: &DecodeStep<'_>, heads: Heads) -> Result<Array> {
    let dtype = step.qkv.dtype();
    let g = heads.heads / heads.kv_heads;
    let splits = splits(step.len + 1);
    let template = template(
        heads,
        dtype,
        &[("SPLITS", splits)],
        step.rms_eps,
        step.rope_theta,
    );
    let mut outs = kernels.with_kernel(KernelKey::AttnDecode, |k| {
        k.call(
            &[
                step.qkv,
                step.q_norm,
                step.k_norm,
                step.keys,
                step.values,
                step.meta,
                step.counters,
            ],
            &Launch {
                output_shapes: vec![
                    vec![heads.kv_heads * splits * g * (heads.head_dim + 2)],
                    vec![1, 1, heads.heads * heads.head_dim],
                ],
                output_dtypes: vec![Dtype::F32, dtype],
                grid: [heads.kv_heads * splits * THREADS, 1, 1],
                threadgroup: [THREADS, 1, 1],
                template,
                init_value: None,
            },
        )
    })?;
    Ok(outs.pop().expect("two outputs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_give_each_block_at_most_one_tile_up_to_the_cap() {
        assert_eq!(splits(0), 1);
        assert_eq!(splits(1), 1);
        assert_eq!(splits(128), 1);
        assert_eq!(splits(129), 2);
        assert_eq!(splits(2062), 32);
        assert_eq!(splits(8192), 64);
        // Past 64 tiles a block loops over several.
        assert_eq!(splits(100_000), 64);
        for p in 1..5000 {
            let s = splits(p);
            assert!(
                s.count_ones() == 1 && (s == 64 || s * THREADS >= p),
                "{p} -> {s}"
            );
        }
    }

    #[test]
    fn cluster_blocks_hold_their_rows_in_shared_memory_up_to_the_limit() {
        let bf = Dtype::BF16;
        let h = Heads {
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
        };
        let of = ClusterLayout::of;
        let late = |blocks| ClusterLayout {
            late_values: true,
            ..of(blocks)
        };
        // AclFixed: 4 (512 (2 + 4) + 2 * 4 * 17) + 8 = 12,840 -> 12,848;
        // then a key row, a value row and 4 scores per position, or with
        // late values a key row and the scores.
        assert_eq!(cluster_shared_bytes(h, bf, of(8), 2304), 12_848 + 288 * 528);
        assert_eq!(
            cluster_shared_bytes(h, bf, late(8), 2304),
            12_848 + 288 * 272
        );
        assert!(cluster_fits(h, bf, of(8), 3304) && !cluster_fits(h, bf, of(8), 3312));
        assert!(cluster_fits(h, bf, of(16), 6608) && !cluster_fits(h, bf, of(16), 6624));
        assert!(cluster_fits(h, bf, late(8), 6424) && !cluster_fits(h, bf, late(8), 6432));
        assert!(cluster_fits(h, bf, late(16), 12848) && !cluster_fits(h, bf, late(16), 12864));
        // Sizes the kernel is not built for, outputs that do not divide.
        assert!(!cluster_fits(h, bf, of(32), 256) && !cluster_fits(h, bf, of(3), 256));
        assert!(!cluster_fits(h, Dtype::F32, of(8), 256));
        assert_eq!(ClusterLayout::parse("16"), Some(of(16)));
        assert_eq!(ClusterLayout::parse("8v"), Some(late(8)));
        let halves = |c: ClusterLayout| ClusterLayout {
            query_splits: 2,
            ..c
        };
        assert_eq!(ClusterLayout::parse("16vq2"), Some(halves(late(16))));
        assert_eq!(ClusterLayout::parse("8q2"), Some(halves(of(8))));
        for name in ["8", "16v", "16vq2", "8q4"] {
            assert_eq!(ClusterLayout::parse(name).unwrap().to_string(), name);
        }
        for bad in [
            "", "v", "0", "-8", "8w", "8vv", "x8", "8q", "8q1", "8q0", "8qv", "q2", "8vq2v",
        ] {
            assert_eq!(ClusterLayout::parse(bad), None, "{bad:?}");
        }
        // Two clusters a head: each block holds a key row and the scores of
        // 2 query heads a position, its fixed part sized for 2 heads. A
        // head's 4 query heads split 1, 2 or 4 ways, not 3 or 8.
        // AclFixed for 2 heads: 4 (256 (2 + 4) + 2 * 2 * 17) + 8 = 6,424 ->
        // 6,432; then a key row and 2 scores for each of 144 positions.
        assert_eq!(
            cluster_shared_bytes(h, bf, halves(late(16)), 2304),
            6_432 + 144 * 264
        );
        assert_eq!(halves(late(16)).launched_blocks(8), 256);
        assert!(cluster_fits(
            h,
            bf,
            ClusterLayout::parse("16vq4").unwrap(),
            2304
        ));
        for bad in ["16vq3", "16vq8"] {
            assert!(
                !cluster_fits(h, bf, ClusterLayout::parse(bad).unwrap(), 256),
                "{bad}"
            );
        }
        // 16 blocks with late values while they fit, in two clusters a head
        // from LONG_CAP on; 8 with both where 16 failed its check; past
        // both's room none (the split kernel: 8 without late values hold
        // ~3.3k).
        let any = |_| true;
        assert_eq!(auto_cluster(h, bf, 256, any), Some(late(16)));
        assert_eq!(auto_cluster(h, bf, LONG_CAP - 1, any), Some(late(16)));
        assert_eq!(auto_cluster(h, bf, LONG_CAP, any), Some(AUTO_LONG));
        assert_eq!(auto_cluster(h, bf, 2304, any), Some(halves(late(16))));
        // (Two scores a position instead of 4: room for ~13.6k positions.)
        assert_eq!(auto_cluster(h, bf, 13632, any), Some(AUTO_LONG));
        assert_eq!(auto_cluster(h, bf, 13648, any), None);
        assert_eq!(
            auto_cluster(h, bf, 2304, |c| c != AUTO_LONG),
            Some(late(16))
        );
        let portable = |c| c == DEFAULT_CLUSTER;
        assert_eq!(auto_cluster(h, bf, 256, portable), Some(of(8)));
        assert_eq!(auto_cluster(h, bf, 3304, portable), Some(of(8)));
        assert_eq!(auto_cluster(h, bf, 3312, portable), None);
    }

    #[test]
    fn supported_layouts() {
        let h = |heads, kv_heads, head_dim| Heads {
            heads,
            kv_heads,
            head_dim,
        };
        // The Qwen3-VL family: 2B (16/8), 8B (32/8), 32B (64/8), head dim 128.
        for (nh, nkv) in [(16, 8), (32, 8), (64, 8)] {
            assert!(h(nh, nkv, 128).supported(Dtype::BF16));
        }
        assert!(!h(32, 8, 128).supported(Dtype::F32));
        assert!(!h(32, 8, 96).supported(Dtype::BF16));
        // A 6-element share of a value row is no aligned vector.
        assert!(!h(16, 8, 192).supported(Dtype::BF16));
        assert!(h(16, 8, 64).supported(Dtype::BF16) && h(64, 8, 256).supported(Dtype::BF16));
        assert!(!h(48, 4, 128).supported(Dtype::BF16));
        assert!(!h(30, 8, 128).supported(Dtype::BF16));
    }
}
