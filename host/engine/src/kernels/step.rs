//! Kernels of a decoding step launched by `mlx::cuda::StepRunner`, outside
//! MLX's graph: the bodies MLX's custom-kernel API receives (`qmv4.cu`,
//! `attn_decode.cu`), and the step's embedding lookup, each wrapped
//! as a standalone `extern "C"` kernel the way MLX wraps them (parameters in
//! order, template constants declared first in the body).

use mlx::Dtype;
use mlx::cuda::Dims;
use mlx::kernel::TemplateArg;

use crate::error::{Error, Result};

/// What a standalone kernel takes, in order.
#[derive(Clone, Copy, Debug)]
pub enum Param {
    /// `const T* name`.
    In(&'static str, Dtype),
    /// `T* name`.
    Out(&'static str, Dtype),
    /// `int name`.
    Int(&'static str),
}

/// The CUDA type of an element, as MLX names it.
pub fn cuda_type(d: Dtype) -> Result<&'static str> {
    Ok(match d {
        Dtype::BF16 => "__nv_bfloat16",
        Dtype::F16 => "__half",
        Dtype::F32 => "float",
        Dtype::I32 => "int32_t",
        Dtype::U32 => "uint32_t",
        other => {
            return Err(Error::Model(format!(
                "step kernels: no CUDA type for {other:?}"
            )));
        }
    })
}

/// What MLX's kernel preamble provides that the bodies use.
const PRELUDE: &str = "#include <cuda_bf16.h>\n#include <cuda_fp16.h>\n#include <cuda/std/cstdint>\n\
                       using cuda::std::int32_t;\nusing cuda::std::uint32_t;\n";

/// A standalone kernel: its function's name, its source, its launch and
/// where its blocks go.
#[derive(Debug)]
pub struct StepKernel {
    pub name: &'static str,
    pub source: String,
    pub dims: Dims,
    pub placement: Placement,
}

impl StepKernel {
    /// The source compiled to record a timeline (`timeline.cuh`): its
    /// phases go past the [`TIMELINE_BLOCKS`] blocks' slots.
    pub fn timed_source(&self) -> String {
        format!(
            "#define VLM_TIMELINE 1\n#define VLM_TL_PHASE_SLOT {TIMELINE_BLOCKS}\n{}",
            self.source
        )
    }
}

/// Where a standalone kernel's blocks go: in clusters of `cluster` blocks
/// when more than one (`__cluster_dims__`), and at least `min_blocks` an SM
/// when not 0 (`__launch_bounds__`: the compiler caps the registers,
/// spilling if it must).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub cluster: u32,
    pub min_blocks: u32,
}

impl Placement {
    /// No clusters, registers as the compiler chooses.
    pub const ANY: Placement = Placement {
        cluster: 1,
        min_blocks: 0,
    };

    /// The attributes ahead of the kernel's name for blocks of `threads`.
    fn attributes(self, threads: u32) -> String {
        let mut attrs = String::new();
        if self.min_blocks > 0 {
            attrs += &format!("__launch_bounds__({threads}, {}) ", self.min_blocks);
        }
        if self.cluster > 1 {
            attrs += &format!("__cluster_dims__({}, 1, 1) ", self.cluster);
        }
        attrs
    }
}

/// `extern "C" __global__ void name(params) { constants; body }` after the
/// headers, launched as `dims`, its blocks placed as `placement` says. With
/// `VLM_TIMELINE` defined ahead of the source, it takes two more parameters
/// and records a timeline (`timeline.cuh`).
pub fn standalone(
    name: &'static str,
    placement: Placement,
    header: &str,
    body: &str,
    params: &[Param],
    template: &[(&str, TemplateArg)],
    dims: Dims,
) -> Result<StepKernel> {
    let mut sig = Vec::with_capacity(params.len());
    for p in params {
        sig.push(match *p {
            Param::In(n, d) => format!("const {}* {n}", cuda_type(d)?),
            Param::Out(n, d) => format!("{}* {n}", cuda_type(d)?),
            Param::Int(n) => format!("int {n}"),
        });
    }
    let mut consts = String::new();
    for (n, arg) in template {
        consts += &match *arg {
            TemplateArg::Int(v) => format!("constexpr int {n} = {v};\n"),
            TemplateArg::Bool(b) => format!("constexpr bool {n} = {b};\n"),
            TemplateArg::Dtype(d) => format!("using {n} = {};\n", cuda_type(d)?),
        };
    }
    let timeline = super::compact(include_str!("timeline.cuh"));
    let source = format!(
        "{PRELUDE}{timeline}\n{header}extern \"C\" __global__ void {attrs}{name}({} \
         VLM_TL_PARAMS) {{\nVLM_TL_BEGIN\n{consts}{body}\n}}\n",
        sig.join(", "),
        attrs = placement.attributes(dims.threads),
    );
    Ok(StepKernel {
        name,
        source,
        dims,
        placement: Placement {
            cluster: placement.cluster.max(1),
            ..placement
        },
    })
}

/// Shared memory a block of an sm_90 GPU may have, static and dynamic
/// together (227 KB); a standalone kernel's dynamic share leaves room for
/// its static shared memory.
pub const BLOCK_SHARED_BYTES: u32 = 227 * 1024;

/// Blocks a step's timeline records (the 8B's ~100k, with room); as many
/// slots after them hold the phases kernels mark (`timeline.cuh`).
pub const TIMELINE_BLOCKS: u32 = 1 << 17;

/// Threads of the embedding's single block.
const EMBED_THREADS: u32 = 512;

/// A kernel of one block of `threads` threads whose body uses only the
/// launch-order hooks of `phases.cuh`.
fn one_block(
    name: &'static str,
    body: &str,
    params: &[Param],
    template: &[(&str, TemplateArg)],
    threads: u32,
) -> Result<StepKernel> {
    let header = super::source::inline_header(&[include_str!("phases.cuh")]);
    let dims = Dims {
        blocks: 1,
        threads,
        shared_bytes: 0,
    };
    standalone(
        name,
        Placement::ANY,
        &header,
        &super::compact(body),
        params,
        template,
        dims,
    )
}

/// The embedding row of the step's token from a 4-bit, group-64 table of
/// width `h`: parameters `tok, w, scales, biases, out, pick`; the token is
/// the one the LM head left in `pick` (two `u32`, cleared), or `tok` where
/// `pick` is zero.
pub fn embed4(dtype: Dtype, h: i32) -> Result<StepKernel> {
    let params = [
        Param::In("tok", Dtype::U32),
        Param::In("w", Dtype::U32),
        Param::In("scales", dtype),
        Param::In("biases", dtype),
        Param::Out("out", dtype),
        Param::Out("pick", Dtype::U32),
    ];
    let template = [("T", TemplateArg::Dtype(dtype)), ("H", TemplateArg::Int(h))];
    let body = include_str!("embed4.cu");
    one_block("vlmbench_embed4", body, &params, &template, EMBED_THREADS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_kernel_declares_its_parameters_and_constants_in_order() {
        let dims = Dims {
            blocks: 1,
            threads: 32,
            shared_bytes: 0,
        };
        let k = standalone(
            "k",
            Placement::ANY,
            "// header\n",
            "out[0] = x[0];",
            &[
                Param::In("x", Dtype::BF16),
                Param::Out("out", Dtype::F32),
                Param::Int("n"),
            ],
            &[
                ("T", TemplateArg::Dtype(Dtype::F16)),
                ("K", TemplateArg::Int(7)),
            ],
            dims,
        )
        .unwrap();
        let src = &k.source;
        assert!(src.starts_with(PRELUDE), "{src}");
        assert_eq!((k.name, k.dims), ("k", dims));
        assert!(src.contains(
            "// header\nextern \"C\" __global__ void k(const __nv_bfloat16* x, float* out, int n \
             VLM_TL_PARAMS) {\nVLM_TL_BEGIN\nusing T = __half;\nconstexpr int K = 7;\nout[0] = x[0];\n}\n"
        ));
        let err = standalone(
            "k",
            Placement::ANY,
            "",
            "",
            &[Param::In("x", Dtype::F64)],
            &[],
            dims,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no CUDA type"), "{err}");
    }

    #[test]
    fn asked_placements_reach_the_kernel() {
        let dims = Dims {
            blocks: 4,
            threads: 256,
            shared_bytes: 0,
        };
        let placed = |cluster, min_blocks| {
            standalone(
                "k",
                Placement {
                    cluster,
                    min_blocks,
                },
                "",
                "",
                &[],
                &[],
                dims,
            )
            .unwrap()
        };
        let plain = placed(1, 0);
        assert_eq!(plain.placement, Placement::ANY);
        let bounded = placed(1, 3);
        let clustered = placed(8, 0);
        assert_eq!(
            (bounded.placement.min_blocks, clustered.placement.cluster),
            (3, 8)
        );
        // Each asks the compiler for something the plain kernel does not.
        for k in [&bounded, &clustered] {
            assert_ne!(k.source, plain.source);
        }
        // A cluster of 0 blocks is no cluster.
        assert_eq!(placed(0, 0).placement.cluster, 1);
    }
}
