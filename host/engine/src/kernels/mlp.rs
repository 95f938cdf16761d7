//! A decoder layer's MLP (RMSNorm, gate/up with SwiGLU, down with the
//! residual) in one persistent launch of the step runner (`mlp.cuh`): down's
//! rows start while gate/up's last groups run, instead of after the last
//! block of a launch of its own.

use mlx::Dtype;
use mlx::cuda::Dims;
use mlx::kernel::TemplateArg;

use super::step::{Param, Placement, StepKernel};
use crate::error::{Error, Result};

/// Warps a block; with 4 blocks an SM (the compiler held to 128 registers)
/// as gate/up's persistent launch runs (`qmv.rs`).
const WARPS: i32 = 4;
const BLOCKS_PER_SM: u32 = 4;

/// How the launch splits its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MlpShape {
    /// Chunks of the intermediate width: a down unit waits for its chunk's
    /// gate/up groups only.
    pub chunks: i32,
    /// K-tiles a warp loads at once (gate/up's own launch: 2).
    pub tiles_at_once: i32,
}

impl MlpShape {
    /// The most chunks a shape may have (the decoder's buffers are sized for it).
    pub const LARGEST: MlpShape = MlpShape {
        chunks: 16,
        tiles_at_once: 4,
    };

    /// The default: 4 chunks, 2 tiles at once, where they fit `inter`.
    pub fn default_for(inter: i32) -> Option<MlpShape> {
        MlpShape {
            chunks: 4,
            tiles_at_once: 2,
        }
        .fitted(inter)
    }

    /// `CxU` (chunks, k-tiles a warp loads at once), e.g. `4x2`; `None` if it
    /// does not parse.
    pub fn parse(v: &str) -> Option<MlpShape> {
        let (c, u) = v.split_once('x')?;
        let shape = MlpShape {
            chunks: c.trim().parse().ok()?,
            tiles_at_once: u.trim().parse().ok()?,
        };
        let fits = (1..=Self::LARGEST.chunks).contains(&shape.chunks)
            && (1..=Self::LARGEST.tiles_at_once).contains(&shape.tiles_at_once);
        fits.then_some(shape)
    }

    /// This shape with as many of its chunks as split `inter` into whole
    /// k-tiles of 128 (halving them), or `None` if not even one does.
    pub fn fitted(self, inter: i32) -> Option<MlpShape> {
        let mut chunks = self.chunks;
        while chunks > 1 && inter % (chunks * 128) != 0 {
            chunks /= 2;
        }
        (inter > 0 && inter % (chunks * 128) == 0).then_some(MlpShape { chunks, ..self })
    }
}

/// Units of work a launch hands out: gate/up's row groups of 8 pairs, then
/// down's 16-row groups in each chunk.
pub fn units(hidden: i32, inter: i32, shape: MlpShape) -> i32 {
    inter / 8 + hidden / 16 * shape.chunks
}

/// The `u32` counters a launch needs (zeros before the first).
pub fn counters_len(hidden: i32, shape: MlpShape) -> i32 {
    2 + shape.chunks + hidden / 16
}

/// The `f32` partial sums of down's chunks.
pub fn part_len(hidden: i32, shape: MlpShape) -> i32 {
    shape.chunks * hidden
}

/// Dynamic shared memory: the staged input of the wider of x and a chunk
/// (`qmv4_shared_bytes`).
fn shared_bytes(hidden: i32, inter: i32, shape: MlpShape) -> i32 {
    let k = hidden.max(inter / shape.chunks);
    (k / 32) * 20 * 4 + (k / 64) * 4
}

/// The launch for `hidden`-wide layers with an `inter`-wide MLP: parameters
/// `x, nw, gw, gs, gb, act, dw, ds, db, out, part, counters`. Its grid is
/// one block a unit; the step decoder caps it at the blocks the GPU holds
/// at once, which the kernel needs.
pub fn step_kernel(
    hidden: i32,
    inter: i32,
    dtype: Dtype,
    eps: f32,
    shape: MlpShape,
) -> Result<StepKernel> {
    if hidden % 128 != 0 || shape.fitted(inter) != Some(shape) {
        return Err(Error::Model(format!(
            "fused MLP: widths {hidden} and {inter} do not split into {} chunks of whole k-tiles",
            shape.chunks
        )));
    }
    let params = [
        Param::In("x", dtype),
        Param::In("nw", dtype),
        Param::In("gw", Dtype::U32),
        Param::In("gs", dtype),
        Param::In("gb", dtype),
        Param::Out("act", dtype),
        Param::In("dw", Dtype::U32),
        Param::In("ds", dtype),
        Param::In("db", dtype),
        Param::Out("out", dtype),
        Param::Out("part", Dtype::F32),
        Param::Out("counters", Dtype::U32),
    ];
    let template = [
        ("T", TemplateArg::Dtype(dtype)),
        ("H", TemplateArg::Int(hidden)),
        ("I", TemplateArg::Int(inter)),
        ("CH", TemplateArg::Int(shape.chunks)),
        ("WARPS", TemplateArg::Int(WARPS)),
        ("U", TemplateArg::Int(shape.tiles_at_once)),
        ("EPS_BITS", TemplateArg::Int(eps.to_bits() as i32)),
    ];
    let header = super::header(&[
        include_str!("q4_dot.cuh"),
        include_str!("phases.cuh"),
        include_str!("qmv4.cuh"),
        include_str!("mlp.cuh"),
    ]);
    let dims = Dims {
        blocks: units(hidden, inter, shape) as u32,
        threads: (WARPS * 32) as u32,
        shared_bytes: shared_bytes(hidden, inter, shape) as u32,
    };
    let placement = Placement {
        cluster: 1,
        min_blocks: BLOCKS_PER_SM,
    };
    super::step::standalone(
        "vlmbench_mlp",
        placement,
        &header,
        &super::compact(include_str!("mlp.cu")),
        &params,
        &template,
        dims,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_fit_the_widths() {
        assert_eq!(
            MlpShape::parse("4x2"),
            Some(MlpShape {
                chunks: 4,
                tiles_at_once: 2
            })
        );
        for bad in ["4", "x2", "0x2", "17x2", "4x0", "4x5", "ax2"] {
            assert_eq!(MlpShape::parse(bad), None, "{bad}");
        }
        // The 8B's 12288 in 4 chunks of 3072; 2B's 6144 too; 640 only whole.
        let four = MlpShape::default_for(12288).unwrap();
        assert_eq!(four.chunks, 4);
        assert_eq!(MlpShape::default_for(6144).unwrap().chunks, 4);
        assert_eq!(MlpShape::default_for(640).unwrap().chunks, 1);
        assert_eq!(MlpShape::default_for(384).unwrap().chunks, 1);
        assert_eq!(MlpShape::default_for(100), None);
    }

    #[test]
    fn the_8b_launch_counts_its_units_and_buffers() {
        let shape = MlpShape::default_for(12288).unwrap();
        // 1536 gate/up groups, 256 row groups in each of 4 chunks.
        assert_eq!(units(4096, 12288, shape), 1536 + 1024);
        assert_eq!(counters_len(4096, shape), 2 + 4 + 256);
        assert_eq!(part_len(4096, shape), 16384);
        let k = step_kernel(4096, 12288, Dtype::BF16, 1e-6, shape).unwrap();
        assert_eq!(k.dims.blocks, 2560);
        assert_eq!(k.dims.threads, 128);
        // x (4096) is wider than a chunk (3072): 4096 / 32 slots of 80 bytes and 64 sums.
        assert_eq!(k.dims.shared_bytes, 10496);
        assert!(
            k.source
                .contains("void __launch_bounds__(128, 4) vlmbench_mlp(")
        );
        for c in [
            "constexpr int CH = 4;",
            "constexpr int I = 12288;",
            "unsigned* counters",
        ] {
            assert!(k.source.contains(c), "{c}");
        }
        let err = step_kernel(
            4096,
            12288,
            Dtype::BF16,
            1e-6,
            MlpShape {
                chunks: 5,
                tiles_at_once: 2,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("5 chunks"), "{err}");
    }
}
