//! Greedy decoding steps launched outside MLX's graph (`mlx::cuda`): the
//! fused path's kernels (five per layer), plus the embedding lookup and the
//! LM head with the final norm and the argmax, as one launch list per step on
//! a stream of our own. MLX's host cost per launch (~13 µs: graph node,
//! kernel-source hash, CUDA graph node) made building and dispatching a step
//! take about as long as the GPU took to run it (`docs/performance.md`, "The
//! step runner: CUDA graphs and programmatic dependent launch"); here the step's token and `[len, pos]` stay on the device
//! from step to step, and each launch may start while the previous one
//! drains (programmatic dependent launch), its first weight loads
//! overlapping that launch's tail.
//!
//! How steps run is a [`DecodePath`]: by default each step is replayed as a
//! CUDA graph while its launches stay the same (a new request's caches are
//! new buffers, so its first step is launched as it is and recorded while it
//! runs), with programmatic dependent launch, and the attention as one
//! thread-block cluster per key/value head where its caches fit
//! (`kernels/attn_cluster.cuh`, [`StepAttention`]; else the split attention
//! of `kernels/attn.cuh`).

mod session;
mod timeline;

use std::collections::HashMap;
use std::path::PathBuf;

use mlx::cuda::{Arg, CudaKernel, Dims, Held, KernelOptions, StepRunner};
use mlx::nn::Weight;
use mlx::{Array, Dtype, Quantized};

pub(crate) use session::StepSession;
use timeline::Timeline;

use super::path::StepAttention;
use crate::error::{Error, Result};
use crate::kernels::attention::{self, ClusterLayout, Heads};
use crate::kernels::launch::LaunchTuning;
use crate::kernels::qmv::{self, Variant};
use crate::kernels::self_check::{AttentionCase, CaseShape};
use crate::kernels::step;
use crate::model::DecoderView;

/// The kernels of a step, compiled once each (the split attention once per
/// split count).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Key {
    Embed,
    Qkv,
    Attention(i32),
    ClusterAttention(ClusterLayout),
    O,
    GateUp,
    Down,
    Head,
}

impl Key {
    /// The kernel's name in a timeline (no commas: a CSV field).
    fn label(&self) -> String {
        match self {
            Key::ClusterAttention(layout) => format!("ClusterAttention({layout})"),
            other => format!("{other:?}"),
        }
    }
}

/// A quantized matrix as the runner holds it: packed weights, scales,
/// biases, and its shape.
#[derive(Clone, Copy)]
struct Matrix {
    w: Held,
    scales: Held,
    biases: Held,
    n: i32,
    k: i32,
}

impl Matrix {
    fn hold(runner: &mut StepRunner, q: &Quantized) -> Result<Matrix> {
        Ok(Matrix {
            w: runner.hold(&q.weight)?,
            scales: runner.hold(&q.scales)?,
            biases: runner.hold(&q.biases)?,
            n: q.weight.dim(0),
            k: q.weight.dim(1) * 8,
        })
    }

    fn args(&self) -> [Arg; 3] {
        [
            Arg::Array(self.w),
            Arg::Array(self.scales),
            Arg::Array(self.biases),
        ]
    }
}

/// A layer's weights as the runner holds them.
struct LayerWeights {
    input_norm: Held,
    post_norm: Held,
    q_norm: Held,
    k_norm: Held,
    qkv: Matrix,
    o: Matrix,
    gate_up: Matrix,
    down: Matrix,
}

/// The step's device buffers, reused by every step and request.
#[derive(Clone, Copy)]
struct Buffers {
    /// A layer's input and output.
    h0: Held,
    /// After the attention.
    h1: Held,
    qkv: Held,
    /// The split attention's partial sums.
    part: Held,
    attn: Held,
    /// After SwiGLU.
    act: Held,
    logits: Held,
    /// The prefill's token, the first step's input.
    tok: Held,
    /// `[len, pos, 0, 0]` of the next step.
    meta: Held,
    /// A `u64`: the LM head's argmax key for the next step's embedding
    /// lookup, which clears it; zero at a request's start.
    pick: Held,
}

/// What stays from request to request: compiled kernels, held weights and
/// buffers.
pub(crate) struct StepDecoder {
    runner: StepRunner,
    kernels: HashMap<Key, (CudaKernel, Dims)>,
    buffers: Buffers,
    layers: Vec<LayerWeights>,
    embed: Matrix,
    head: Matrix,
    final_norm: Held,
    counters: Held,
    heads: Heads,
    dtype: Dtype,
    rms_eps: f32,
    rope_theta: f32,
    launch: LaunchTuning,
    pdl: bool,
    /// Cluster layouts of the attention tried: compiled and checked (sm_90
    /// on) or not.
    clusters: HashMap<ClusterLayout, bool>,
    attention: StepAttention,
    timeline: Option<Timeline>,
}

fn quantized_4bit(w: &Weight) -> Option<&Quantized> {
    match w {
        Weight::Quantized(q) if q.bits == 4 && q.group_size == 64 => Some(q),
        _ => None,
    }
}

/// Bytes a step buffer has at least. MLX's CUDA allocator serves arrays
/// of 8 bytes or less from a pool of managed memory advised read-mostly,
/// where a write collapses the page's copies (CUDA's documented behaviour):
/// the LM head's argmax key there (one `u64`, an atomic from each of its
/// 9,496 blocks) took the head from ~129 µs to ~10.4 ms a step (H100,
/// `docs/experiments.md`, "The managed small pool and the argmax key").
const MIN_BUFFER_BYTES: usize = 16;

/// Elements of a step buffer of `len` elements of `dtype`: `len`, or more
/// where that is under [`MIN_BUFFER_BYTES`].
fn buffer_len(len: i32, dtype: Dtype) -> i32 {
    len.max(MIN_BUFFER_BYTES.div_ceil(dtype.size_of()) as i32)
}

/// A zero-filled buffer of its own (MLX's `zeros` may be a broadcast view)
/// of at least `len` elements ([`buffer_len`]).
fn buffer(len: i32, dtype: Dtype) -> Result<Array> {
    Ok(Array::zeros(&[buffer_len(len, dtype)], dtype)?.contiguous()?)
}

impl StepDecoder {
    /// The decoder for the model `view` shows, whose attention keeps its
    /// block counters in `counters`, or why it does not apply.
    pub(super) fn new(
        view: &DecoderView<'_>,
        counters: &Array,
        launch: &LaunchTuning,
        timeline_dir: Option<PathBuf>,
    ) -> Result<StepDecoder> {
        let cfg = view.config;
        let dtype = view.dtype;
        let unsupported = |what: &str| Error::Model(format!("step runner: {what}"));
        let embed = quantized_4bit(view.embed)
            .ok_or_else(|| unsupported("the embedding is not 4-bit with groups of 64"))?;
        let head = quantized_4bit(view.head)
            .filter(|q| qmv::fits(cfg.hidden_size as i32, dtype, q))
            .ok_or_else(|| unsupported("the LM head does not fit the 4-bit kernel"))?;
        let h = cfg.hidden_size as i32;
        let vocab = head.weight.dim(0);
        if h % 64 != 0 || vocab % 8 != 0 {
            return Err(unsupported(
                "hidden size or vocabulary not in whole vectors",
            ));
        }
        let heads = view.heads;
        // Held arrays must be in memory (loading may leave them lazy).
        let mut weights = vec![view.final_norm, counters];
        for q in [embed, head] {
            weights.extend([&q.weight, &q.scales, &q.biases]);
        }
        for l in &view.layers {
            weights.extend([l.input_norm, l.post_norm, l.q_norm, l.k_norm]);
            for q in [l.qkv, l.o, l.gate_up, l.down] {
                weights.extend([&q.weight, &q.scales, &q.biases]);
            }
        }
        mlx::eval(&weights)?;
        let mut runner = StepRunner::new(false)?;
        let mut layers = Vec::with_capacity(view.layers.len());
        for l in &view.layers {
            layers.push(LayerWeights {
                input_norm: runner.hold(l.input_norm)?,
                post_norm: runner.hold(l.post_norm)?,
                q_norm: runner.hold(l.q_norm)?,
                k_norm: runner.hold(l.k_norm)?,
                qkv: Matrix::hold(&mut runner, l.qkv)?,
                o: Matrix::hold(&mut runner, l.o)?,
                gate_up: Matrix::hold(&mut runner, l.gate_up)?,
                down: Matrix::hold(&mut runner, l.down)?,
            });
        }
        let inter = layers.first().map_or(0, |l| l.down.k);
        let qkv_len = (heads.heads + 2 * heads.kv_heads) * heads.head_dim;
        let mut new_buffer = |len: i32, d: Dtype| -> Result<Held> {
            let a = buffer(len, d)?;
            a.eval()?;
            Ok(runner.hold(&a)?)
        };
        let buffers = Buffers {
            h0: new_buffer(h, dtype)?,
            h1: new_buffer(h, dtype)?,
            qkv: new_buffer(qkv_len, dtype)?,
            part: new_buffer(attention::part_len(heads), Dtype::F32)?,
            attn: new_buffer(heads.heads * heads.head_dim, dtype)?,
            act: new_buffer(inter, dtype)?,
            logits: new_buffer(vocab, dtype)?,
            tok: new_buffer(1, Dtype::U32)?,
            meta: new_buffer(4, Dtype::I32)?,
            pick: new_buffer(2, Dtype::U32)?,
        };
        let timeline = timeline_dir
            .map(|dir| Timeline::new(dir, &mut runner))
            .transpose()?;
        let mut decoder = StepDecoder {
            embed: Matrix::hold(&mut runner, embed)?,
            head: Matrix::hold(&mut runner, head)?,
            final_norm: runner.hold(view.final_norm)?,
            counters: runner.hold(counters)?,
            runner,
            kernels: HashMap::new(),
            buffers,
            layers,
            heads,
            dtype,
            rms_eps: cfg.rms_norm_eps,
            rope_theta: cfg.rope_theta,
            launch: launch.clone(),
            pdl: true,
            clusters: HashMap::new(),
            attention: StepAttention::Split,
            timeline,
        };
        // Every kernel but the attention's split counts, compiled up front so
        // that a failure turns the runner off before any request uses it.
        for key in [
            Key::Embed,
            Key::Qkv,
            Key::O,
            Key::GateUp,
            Key::Down,
            Key::Head,
        ] {
            decoder.kernel(key)?;
        }
        Ok(decoder)
    }

    /// Sets how the next steps launch.
    pub(super) fn configure(
        &mut self,
        graph: bool,
        pdl: bool,
        attention: StepAttention,
    ) -> Result<()> {
        self.pdl = pdl;
        self.attention = attention;
        let layouts = match attention {
            StepAttention::Split => vec![],
            StepAttention::Cluster(c) => vec![c],
            StepAttention::Auto => attention::AUTO_LAYOUTS.iter().map(|&(c, _)| c).collect(),
        };
        let untried: Vec<ClusterLayout> = layouts
            .into_iter()
            .filter(|c| !self.clusters.contains_key(c))
            .collect();
        if !untried.is_empty() {
            // The checks launch directly, not into a graph.
            self.runner.set_use_graph(false)?;
            for layout in untried {
                self.prepare_cluster(layout);
            }
        }
        Ok(self.runner.set_use_graph(graph)?)
    }

    /// Compiles and checks the cluster attention in `layout`; a failure
    /// (clusters need sm_90) leaves that layout unused.
    fn prepare_cluster(&mut self, layout: ClusterLayout) {
        let usable = attention::cluster_fits(self.heads, self.dtype, layout, 1);
        let checked = if usable {
            self.kernel(Key::ClusterAttention(layout))
                .and_then(|()| self.check_cluster_attention(layout))
        } else {
            Err(Error::Model(format!(
                "clusters of {} do not fit this model's heads",
                layout.blocks
            )))
        };
        if let Err(e) = &checked {
            eprintln!("warning: decode attention stays split: {e}");
        }
        self.clusters.insert(layout, checked.is_ok());
    }

    /// The cluster layout of a step with caches of `cap` positions, if any:
    /// automatic layouts fall back to the portable default where theirs
    /// failed its check.
    fn cluster_for(&self, cap: i32) -> Option<ClusterLayout> {
        let usable = |c| self.clusters.get(&c) == Some(&true);
        match self.attention {
            StepAttention::Split => None,
            StepAttention::Cluster(c) => Some(c)
                .filter(|&c| usable(c) && attention::cluster_fits(self.heads, self.dtype, c, cap)),
            StepAttention::Auto => attention::auto_cluster(self.heads, self.dtype, cap, usable),
        }
    }

    /// The cluster attention against MLX's operations on random data at
    /// the model's head layout and constants: a cache of 300 positions, and
    /// one of 5 (some blocks without positions).
    fn check_cluster_attention(&mut self, layout: ClusterLayout) -> Result<()> {
        let shape = CaseShape {
            heads: self.heads,
            dtype: self.dtype,
            rms_eps: self.rms_eps,
            rope_theta: self.rope_theta,
        };
        for (cap, len, pos) in [(320, 300, 307), (128, 5, 9)] {
            let case = AttentionCase::new(shape, cap, len, pos, 11)?;
            let out = buffer(self.heads.heads * self.heads.head_dim, self.dtype)?;
            out.eval()?;
            let r = &mut self.runner;
            let held = [
                &case.qkv,
                &case.q_norm,
                &case.k_norm,
                &case.keys,
                &case.values,
                &case.meta,
                &out,
            ]
            .into_iter()
            .map(|a| r.hold(a))
            .collect::<mlx::Result<Vec<_>>>()?;
            let mut args: Vec<Arg> = held.iter().map(|&h| Arg::Array(h)).collect();
            args.push(Arg::Int(cap as u64));
            if let Some(t) = &self.timeline {
                args.extend([Arg::Array(t.buf), Arg::Int(0)]);
            }
            let (kernel, own) = &self.kernels[&Key::ClusterAttention(layout)];
            let dims = Dims {
                shared_bytes: attention::cluster_shared_bytes(self.heads, self.dtype, layout, cap),
                ..*own
            };
            r.clear();
            let ran = r
                .add(kernel, dims, false, &args)
                .and_then(|()| r.launch())
                .and_then(|()| r.synchronize());
            r.clear();
            for h in held {
                r.release(h)?;
            }
            r.synchronize()?;
            ran?;
            case.check(&out.reshape(&[1, 1, -1])?).map_err(|e| {
                Error::Model(format!(
                    "cluster attention (clusters {layout}) at {len} positions: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// The source and launch of `key`'s kernel.
    fn source(&self, key: Key) -> Result<step::StepKernel> {
        let (eps, theta, dtype) = (self.rms_eps, self.rope_theta, self.dtype);
        let l = &self.layers[0];
        let tuning = &self.launch;
        let qmv = |v: Variant, m: &Matrix| v.step_kernel(tuning, m.k, m.n, dtype, eps);
        match key {
            Key::Embed => step::embed4(dtype, self.embed.k),
            Key::Qkv => qmv(Variant::Norm, &l.qkv),
            Key::O => qmv(Variant::Residual, &l.o),
            Key::GateUp => qmv(Variant::NormSwiGlu, &l.gate_up),
            Key::Down => qmv(Variant::Residual, &l.down),
            Key::Head => qmv::argmax_step_kernel(tuning, self.head.k, self.head.n, dtype, eps),
            Key::Attention(splits) => attention::step_kernel(self.heads, dtype, splits, eps, theta),
            Key::ClusterAttention(layout) => {
                attention::cluster_step_kernel(self.heads, dtype, layout, eps, theta)
            }
        }
    }

    /// Compiles `key`'s kernel unless done before.
    fn kernel(&mut self, key: Key) -> Result<()> {
        if self.kernels.contains_key(&key) {
            return Ok(());
        }
        let src = self.source(key)?;
        let (name, dims, cluster) = (src.name, src.dims, src.placement.cluster);
        let source = match self.timeline {
            Some(_) => src.timed_source(),
            None => src.source,
        };
        let options = KernelOptions {
            shared_bytes: dims.shared_bytes,
            cluster_blocks: cluster,
            shared_carveout: match key {
                Key::Qkv | Key::ClusterAttention(_) => self.launch.carveout,
                _ => None,
            },
        };
        let k = CudaKernel::compile_with(name, &source, &options)
            .map_err(|e| Error::Model(format!("step kernel {key:?}: {e}")))?;
        self.kernels.insert(key, (k, dims));
        Ok(())
    }
}

/// The model's step decoder: made at the first greedy request.
pub(crate) enum StepState {
    Untried,
    Ready(Box<StepDecoder>),
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_buffers_stay_out_of_mlx_small_pool() {
        // The argmax key (2 x u32) and the token (1 x u32) would be 8 and 4
        // bytes; every buffer must be more than 8.
        for (len, dtype) in [
            (2, Dtype::U32),
            (1, Dtype::U32),
            (1, Dtype::BF16),
            (4, Dtype::I32),
        ] {
            let bytes = buffer(len, dtype).unwrap().nbytes();
            assert!(
                bytes > 8 && bytes >= len as usize * dtype.size_of(),
                "{len} x {dtype:?}: {bytes} bytes"
            );
        }
        assert_eq!(buffer_len(4096, Dtype::BF16), 4096);
    }
}
