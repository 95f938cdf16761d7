//! Greedy decoding steps launched outside MLX's graph (`mlx::cuda`): the
//! fused path's kernels (five per layer), plus the embedding lookup and the LM
//! head with the final norm and the argmax, as one launch list per step on
//! a stream of our own. MLX's host cost per launch (~13 µs: graph node,
//! kernel-source hash, CUDA graph node) made building and dispatching a step
//! take about as long as the GPU took to run it (bench/gpu/NOTES.md); here
//! the step's token and `[len, pos]` stay on the device from step to step,
//! and each launch may start while the previous one drains (programmatic
//! dependent launch), its first weight loads overlapping that launch's tail.
//!
//! How steps run is a [`DecodePath`]: by default each step is replayed as a
//! CUDA graph while its launches stay the same (a new request's caches are
//! new buffers, so its first step is launched as it is and recorded while it
//! runs), with programmatic dependent launch, and the attention as one
//! thread-block cluster per key/value head
//! where its caches fit (`kernels/attn_cluster.cuh`, [`StepAttention`]; else
//! the split attention of `kernels/attn.cuh`). The environment can say
//! otherwise:
//! `VLM_BENCH_NO_STEP_RUNNER=1` (MLX's graph), `VLM_BENCH_STEP_GRAPH=0` (each
//! launch issued by the host), `VLM_BENCH_NO_PDL=1` (launches in strict
//! order), `VLM_BENCH_SPLIT_ATTENTION=1` (the split attention always),
//! `VLM_BENCH_ATTN_CLUSTER=N` (clusters of N blocks always; `Nv`: with the
//! values brought in after the scores; `NvqS`: S clusters a key/value head,
//! [`ClusterLayout`]),
//! `VLM_BENCH_SHARED_CARVEOUT=P` (q/k/v and the cluster attention prefer P% of
//! L1 as shared memory), `VLM_BENCH_QMV_SHAPES=KxN=WxU[xM],...` (the 4-bit
//! products of K-wide inputs and N rows in blocks of W warps, U k-tiles at
//! once, compiled to fit M blocks an SM: launch shapes to measure).
//!
//! `VLM_BENCH_TIMELINE=DIR` compiles the kernels with a timeline
//! (`kernels/timeline.cuh`): at the end of each request, the times of every
//! block of its last step go to `DIR/timeline-N.csv` (`bench/gpu/timeline.py`
//! reads them).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::MutexGuard;

use mlx::cuda::{CudaKernel, Dims, KernelOptions, StepRunner};
use mlx::nn::Weight;
use mlx::{Array, Dtype, Quantized};

use super::{FusedDecode, TextModel};
use crate::error::{Error, Result};
use crate::kernels::attention::{self, ClusterLayout, Heads};
use crate::kernels::qmv::{self, Variant};
use crate::kernels::self_check::{AttentionCase, CaseShape};
use crate::kernels::step;
use crate::model::kv_cache::KvCache;

/// The kernels of a step, compiled once each (the split attention once per
/// split count).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Key {
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

/// A quantized matrix's device pointers: packed weights, scales, biases.
#[derive(Clone, Copy)]
struct Matrix {
    w: u64,
    scales: u64,
    biases: u64,
    n: i32,
    k: i32,
}

impl Matrix {
    fn of(q: &Quantized) -> Result<Matrix> {
        Ok(Matrix {
            w: q.weight.device_ptr()?,
            scales: q.scales.device_ptr()?,
            biases: q.biases.device_ptr()?,
            n: q.weight.dim(0),
            k: q.weight.dim(1) * 8,
        })
    }
}

struct LayerPtrs {
    input_norm: u64,
    post_norm: u64,
    q_norm: u64,
    k_norm: u64,
    qkv: Matrix,
    o: Matrix,
    gate_up: Matrix,
    down: Matrix,
}

/// What stays from request to request: compiled kernels, buffers, pointers.
pub(crate) struct StepDecoder {
    runner: StepRunner,
    kernels: HashMap<Key, (CudaKernel, Dims)>,
    /// The step's device buffers by name, with their addresses, reused by
    /// every step and request: `h0` (a layer's input and output), `h1`
    /// (after attention), `qkv`, `part` (attention partials), `attn`, `act`
    /// (after SwiGLU), `logits`, `tok` (the prefill's token, the first
    /// step's input), `meta` (`[len, pos, 0, 0]` of the next step), `pick` (a
    /// `u64`: the LM head's argmax key for the next step's embedding lookup,
    /// which clears it; zero at a request's start).
    buffers: HashMap<&'static str, (Array, u64)>,
    layers: Vec<LayerPtrs>,
    embed: Matrix,
    head: Matrix,
    final_norm: u64,
    counters: u64,
    heads: Heads,
    dtype: Dtype,
    pdl: bool,
    /// Cluster layouts of the attention tried: compiled and checked (sm_90
    /// on) or not.
    clusters: HashMap<ClusterLayout, bool>,
    attention: StepAttention,
    /// The shared-memory carveout (percent) q/k/v and the cluster attention
    /// prefer, so that the attention's blocks (up to 226 KB) may start on SMs
    /// still running q/k/v's; else the driver's.
    carveout: Option<u8>,
    timeline: Option<Timeline>,
}

/// Where the kernels record a step's timeline (`VLM_BENCH_TIMELINE`).
struct Timeline {
    dir: PathBuf,
    /// Four u64 per block (as u32 pairs): start, wait returned, end, SM.
    buf: Array,
    ptr: u64,
    /// The last step's launches: kernel, first slot, blocks.
    launches: Vec<(Key, u32, u32)>,
    written: usize,
}

impl Timeline {
    fn from_env() -> Result<Option<Timeline>> {
        let Some(dir) = std::env::var_os("VLM_BENCH_TIMELINE") else {
            return Ok(None);
        };
        // Four u64 a block, for the blocks and then as many blocks' phases.
        let buf = buffer(step::TIMELINE_BLOCKS as i32 * 16, Dtype::U32)?;
        mlx::eval(&[&buf])?;
        let ptr = buf.device_ptr()?;
        Ok(Some(Timeline {
            dir: PathBuf::from(dir),
            buf,
            ptr,
            launches: Vec::new(),
            written: 0,
        }))
    }

    /// The last step's blocks as CSV, into the next `timeline-N.csv`. Read
    /// through the runner: reading `buf` as an MLX array on the host would
    /// have MLX replace its memory (`move_to_unified_memory`,
    /// mlx/backend/cuda/allocator.h), under the kernels' pointer.
    fn write(&mut self, runner: &mut StepRunner) -> Result<()> {
        let mut raw = vec![0u8; self.buf.nbytes()];
        runner.download(self.ptr, &mut raw)?;
        let csv = timeline_csv(&self.launches, &raw);
        let path = self.dir.join(format!("timeline-{}.csv", self.written));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&path, csv))
            .map_err(|e| Error::Model(format!("writing {}: {e}", path.display())))?;
        self.written += 1;
        Ok(())
    }
}

/// A timeline's CSV: one row per block of `launches` (kernel, first slot,
/// blocks) from `raw`, four little-endian u64 per slot (start, wait
/// returned, end, SM; `timeline.cuh`), then the phases the cluster attention
/// marked at slot `step::TIMELINE_BLOCKS` + its slot (0 for other kernels).
fn timeline_csv(launches: &[(Key, u32, u32)], raw: &[u8]) -> String {
    let at = |slot: usize, i: usize| {
        let j = 8 * (4 * slot + i);
        raw.get(j..j + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let phase_slot = step::TIMELINE_BLOCKS as usize;
    let mut csv =
        String::from("launch,kernel,layer,block,sm,start_ns,wait_ns,end_ns,p0,p1,p2,p3\n");
    // A layer starts at its q/k/v launch (-1: the embedding).
    let mut layer = -1;
    for (n, &(key, base, blocks)) in launches.iter().enumerate() {
        layer += i32::from(key == Key::Qkv);
        // Only the cluster attention marks phases; other kernels' slots may
        // hold stale marks (of its start-up check, which records at base 0, or
        // of earlier steps whose launches were laid out otherwise).
        let marks = matches!(key, Key::ClusterAttention(_));
        for b in 0..blocks {
            let slot = (base + b) as usize;
            let (start, wait, end, sm) = (at(slot, 0), at(slot, 1), at(slot, 2), at(slot, 3));
            let p = |i| if marks { at(phase_slot + slot, i) } else { 0 };
            let _ = writeln!(
                csv,
                "{n},{},{layer},{b},{sm},{start},{wait},{end},{},{},{},{}",
                key.label(),
                p(0),
                p(1),
                p(2),
                p(3)
            );
        }
    }
    csv
}

/// How greedy decoding steps run on the fused path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodePath {
    /// Built as MLX operations and custom kernels, evaluated by MLX.
    Mlx,
    /// Launched by the step runner (CUDA only; MLX's graph elsewhere).
    Steps {
        /// Replay each step as a CUDA graph while its launches stay the same.
        graph: bool,
        /// Let each launch start while the previous one drains.
        pdl: bool,
        attention: StepAttention,
    },
}

/// How the step runner computes a step's attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepAttention {
    /// Split in parts per key/value head, joined through global memory.
    Split,
    /// A thread-block cluster per key/value head in this layout where its
    /// caches fit, else split.
    Cluster(ClusterLayout),
    /// Clusters of 16 with late values while their rows fit (two a
    /// key/value head for long caches), then of 8, then split
    /// ([`attention::auto_cluster`]).
    Auto,
}

const NO_STEP_RUNNER: &str = "VLM_BENCH_NO_STEP_RUNNER";
const STEP_GRAPH: &str = "VLM_BENCH_STEP_GRAPH";
const NO_PDL: &str = "VLM_BENCH_NO_PDL";
const SPLIT_ATTENTION: &str = "VLM_BENCH_SPLIT_ATTENTION";
const ATTN_CLUSTER: &str = "VLM_BENCH_ATTN_CLUSTER";

impl DecodePath {
    /// The environment variables [`DecodePath::from_env`] reads: a caller
    /// that picks its paths itself (`host bench decode`) can say that they
    /// do not apply rather than ignore them silently.
    pub const ENV_VARS: [&'static str; 5] = [
        NO_STEP_RUNNER,
        STEP_GRAPH,
        NO_PDL,
        SPLIT_ATTENTION,
        ATTN_CLUSTER,
    ];

    /// The step runner as CUDA graphs with programmatic dependent launch,
    /// unless the environment says otherwise (see the module's documentation).
    pub fn from_env() -> DecodePath {
        if std::env::var_os(NO_STEP_RUNNER).is_some() {
            return DecodePath::Mlx;
        }
        DecodePath::Steps {
            graph: std::env::var(STEP_GRAPH).map_or(true, |v| v != "0"),
            pdl: std::env::var_os(NO_PDL).is_none(),
            attention: if std::env::var_os(SPLIT_ATTENTION).is_some() {
                StepAttention::Split
            } else {
                std::env::var(ATTN_CLUSTER)
                    .ok()
                    .and_then(|v| ClusterLayout::parse(&v))
                    .map_or(StepAttention::Auto, StepAttention::Cluster)
            },
        }
    }
}

fn quantized_4bit(w: &Weight) -> Option<&Quantized> {
    match w {
        Weight::Quantized(q) if q.bits == 4 && q.group_size == 64 => Some(q),
        _ => None,
    }
}

/// Bytes a step buffer has at least. MLX's CUDA allocator serves arrays
/// of 8 bytes or less from a pool of managed memory advised
/// read-mostly, where a write collapses the page's copies (CUDA's documented
/// behaviour): the LM head's argmax key there (one `u64`, an atomic from
/// each of its 9,496 blocks) took the head from ~129 µs to ~10.4 ms a step
/// (H100, bench/gpu/NOTES.md, stop 29).
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
    /// The decoder for `model`, or why it does not apply.
    pub(super) fn new(model: &TextModel, fused: &FusedDecode) -> Result<StepDecoder> {
        let cfg = &model.cfg;
        let dtype = model.dtype();
        let unsupported = |what: &str| Error::Model(format!("step runner: {what}"));
        let embed = quantized_4bit(&model.embed)
            .ok_or_else(|| unsupported("the embedding is not 4-bit with groups of 64"))?;
        let head_w = model.lm_head.as_ref().unwrap_or(&model.embed);
        let head = quantized_4bit(head_w)
            .filter(|q| qmv::fits(cfg.hidden_size as i32, dtype, q))
            .ok_or_else(|| unsupported("the LM head does not fit the 4-bit kernel"))?;
        let h = cfg.hidden_size as i32;
        let vocab = head.weight.dim(0);
        if h % 64 != 0 || vocab % 8 != 0 {
            return Err(unsupported(
                "hidden size or vocabulary not in whole vectors",
            ));
        }
        let heads = fused.heads;
        let fused_layers = model
            .layers
            .iter()
            .map(|l| Some((l, l.fused_weights()?)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unsupported("a layer without fused 4-bit weights"))?;
        // Kernels read these by address: they must be in memory (loading may
        // leave them lazy).
        let mut weights = vec![&model.norm, &fused.counters];
        for q in [embed, head] {
            weights.extend([&q.weight, &q.scales, &q.biases]);
        }
        for (l, w) in &fused_layers {
            weights.extend([&l.input_norm, &l.post_norm, &l.attn.q_norm, &l.attn.k_norm]);
            for q in [w.qkv, w.o, w.gate_up, w.down] {
                weights.extend([&q.weight, &q.scales, &q.biases]);
            }
        }
        mlx::eval(&weights)?;
        let layers = fused_layers
            .iter()
            .map(|(l, w)| {
                Ok(LayerPtrs {
                    input_norm: l.input_norm.device_ptr()?,
                    post_norm: l.post_norm.device_ptr()?,
                    q_norm: l.attn.q_norm.device_ptr()?,
                    k_norm: l.attn.k_norm.device_ptr()?,
                    qkv: Matrix::of(w.qkv)?,
                    o: Matrix::of(w.o)?,
                    gate_up: Matrix::of(w.gate_up)?,
                    down: Matrix::of(w.down)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inter = layers.first().map_or(0, |l| l.down.k);
        let qkv_len = (heads.heads + 2 * heads.kv_heads) * heads.head_dim;
        let sizes = [
            ("h0", h, dtype),
            ("h1", h, dtype),
            ("qkv", qkv_len, dtype),
            ("part", attention::part_len(heads), Dtype::F32),
            ("attn", heads.heads * heads.head_dim, dtype),
            ("act", inter, dtype),
            ("logits", vocab, dtype),
            ("tok", 1, Dtype::U32),
            ("meta", 4, Dtype::I32),
            ("pick", 2, Dtype::U32),
        ];
        let arrays = sizes
            .iter()
            .map(|&(_, len, d)| buffer(len, d))
            .collect::<Result<Vec<_>>>()?;
        mlx::eval(&arrays.iter().collect::<Vec<_>>())?;
        let mut buffers = HashMap::new();
        for ((name, ..), a) in sizes.iter().zip(arrays) {
            let p = a.device_ptr()?;
            buffers.insert(*name, (a, p));
        }
        let mut decoder = StepDecoder {
            runner: StepRunner::new(false)?,
            kernels: HashMap::new(),
            buffers,
            layers,
            embed: Matrix::of(embed)?,
            head: Matrix::of(head)?,
            final_norm: model.norm.device_ptr()?,
            counters: fused.counters.device_ptr()?,
            heads,
            dtype,
            pdl: true,
            clusters: HashMap::new(),
            attention: StepAttention::Split,
            carveout: std::env::var("VLM_BENCH_SHARED_CARVEOUT")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&p| p <= 100),
            timeline: Timeline::from_env()?,
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
            decoder.kernel(model, key)?;
        }
        Ok(decoder)
    }

    /// Sets how the next steps launch.
    pub(super) fn configure(
        &mut self,
        model: &TextModel,
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
                self.prepare_cluster(model, layout);
            }
        }
        Ok(self.runner.set_use_graph(graph)?)
    }

    /// Compiles and checks the cluster attention in `layout`; a failure
    /// (clusters need sm_90) leaves that layout unused.
    fn prepare_cluster(&mut self, model: &TextModel, layout: ClusterLayout) {
        let usable = attention::cluster_fits(self.heads, self.dtype, layout, 1);
        let checked = if usable {
            self.kernel(model, Key::ClusterAttention(layout))
                .and_then(|()| self.check_cluster_attention(model, layout))
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
    fn check_cluster_attention(&mut self, model: &TextModel, layout: ClusterLayout) -> Result<()> {
        let (kernel, own) = &self.kernels[&Key::ClusterAttention(layout)];
        let shape = CaseShape {
            heads: self.heads,
            dtype: self.dtype,
            rms_eps: model.cfg.rms_norm_eps,
            rope_theta: model.cfg.rope_theta,
        };
        for (cap, len, pos) in [(320, 300, 307), (128, 5, 9)] {
            let case = AttentionCase::new(shape, cap, len, pos, 11)?;
            let out = buffer(self.heads.heads * self.heads.head_dim, self.dtype)?;
            out.eval()?;
            let ptr = |a: &Array| a.device_ptr();
            let mut args = vec![
                ptr(&case.qkv)?,
                ptr(&case.q_norm)?,
                ptr(&case.k_norm)?,
                ptr(&case.keys)?,
                ptr(&case.values)?,
                ptr(&case.meta)?,
                ptr(&out)?,
                cap as u64,
            ];
            if let Some(t) = &self.timeline {
                args.extend([t.ptr, 0]);
            }
            let dims = Dims {
                shared_bytes: attention::cluster_shared_bytes(self.heads, self.dtype, layout, cap),
                ..*own
            };
            self.runner.clear();
            self.runner.add(kernel, dims, false, &args)?;
            self.runner.launch()?;
            self.runner.synchronize()?;
            self.runner.clear();
            case.check(&out.reshape(&[1, 1, -1])?).map_err(|e| {
                Error::Model(format!(
                    "cluster attention (clusters {layout}) at {len} positions: {e}"
                ))
            })?;
        }
        Ok(())
    }

    fn ptr(&self, buffer: &str) -> u64 {
        self.buffers[buffer].1
    }

    /// The source and launch of `key`'s kernel.
    fn source(&self, model: &TextModel, key: Key) -> Result<step::StepKernel> {
        let cfg = &model.cfg;
        let eps = cfg.rms_norm_eps;
        let l = &self.layers[0];
        let qmv = |v: Variant, m: &Matrix| v.step_kernel(m.k, m.n, self.dtype, eps);
        match key {
            Key::Embed => step::embed4(self.dtype, self.embed.k),
            Key::Qkv => qmv(Variant::Norm, &l.qkv),
            Key::O => qmv(Variant::Residual, &l.o),
            Key::GateUp => qmv(Variant::NormSwiGlu, &l.gate_up),
            Key::Down => qmv(Variant::Residual, &l.down),
            Key::Head => {
                let m = &self.head;
                qmv::argmax_step_kernel(m.k, m.n, self.dtype, eps)
            }
            Key::Attention(splits) => {
                attention::step_kernel(self.heads, self.dtype, splits, eps, cfg.rope_theta)
            }
            Key::ClusterAttention(layout) => {
                attention::cluster_step_kernel(self.heads, self.dtype, layout, eps, cfg.rope_theta)
            }
        }
    }

    /// Compiles `key`'s kernel unless done before.
    fn kernel(&mut self, model: &TextModel, key: Key) -> Result<()> {
        if self.kernels.contains_key(&key) {
            return Ok(());
        }
        let src = self.source(model, key)?;
        let (name, dims, cluster) = (src.name, src.dims, src.cluster);
        let source = match self.timeline {
            Some(_) => src.timed_source(),
            None => src.source,
        };
        let options = KernelOptions {
            shared_bytes: dims.shared_bytes,
            cluster_blocks: cluster,
            shared_carveout: match key {
                Key::Qkv | Key::ClusterAttention(_) => self.carveout,
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

/// One request's decoding through the model's [`StepDecoder`] (held locked).
pub(crate) struct StepSession<'a> {
    state: MutexGuard<'a, StepState>,
    model: &'a TextModel,
    /// The caches' device pointers and capacity, refreshed when they grow.
    caches: Vec<(u64, u64, i32)>,
    next_slot: usize,
}

impl<'a> StepSession<'a> {
    /// Starts decoding after the prefill's `token` (a `u32` scalar) with the
    /// cache holding `len` positions and the next RoPE position `pos`.
    /// Waits for the prefill to finish.
    pub(crate) fn start(
        mut state: MutexGuard<'a, StepState>,
        model: &'a TextModel,
        token: &Array,
        kv: &KvCache,
        pos: i32,
    ) -> Result<StepSession<'a>> {
        if token.dtype() != Dtype::U32 || token.size() != 1 {
            return Err(Error::Model(format!(
                "step runner: the first token is {:?} {:?}, not one u32",
                token.dtype(),
                token.shape()
            )));
        }
        mlx::eval(&[token])?;
        let meta: Vec<u8> = [kv.len(), pos, 0, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let StepState::Ready(decoder) = &mut *state else {
            return Err(Error::Model("step runner: not ready".into()));
        };
        let (tok, meta_at, pick) = (decoder.ptr("tok"), decoder.ptr("meta"), decoder.ptr("pick"));
        let r = &mut decoder.runner;
        r.copy(tok, token.device_ptr()?, 4)?;
        r.upload(meta_at, &meta)?;
        // The last request's argmax: the first step takes `tok`.
        r.upload(pick, &[0; 8])?;
        // The token's buffer is MLX's: done with it before returning.
        r.synchronize()?;
        Ok(StepSession {
            state,
            model,
            caches: Vec::new(),
            next_slot: 0,
        })
    }
}

impl StepSession<'_> {
    fn decoder(&mut self) -> &mut StepDecoder {
        match &mut *self.state {
            StepState::Ready(d) => d,
            _ => unreachable!("a session starts only with a ready decoder"),
        }
    }

    /// Queues the next step (its token is read with [`StepSession::token`]
    /// from the returned slot) and counts its position in `kv`.
    pub(crate) fn queue(&mut self, kv: &mut KvCache) -> Result<usize> {
        let model = self.model;
        let mut caches = std::mem::take(&mut self.caches);
        let slot = self.next_slot;
        let d = self.decoder();
        let len = kv.len();
        let grows = kv.layers.iter().any(|l| l.write_needs_new_buffers());
        if caches.is_empty() || grows {
            // Growing copies the cached rows (on MLX's stream): the steps
            // writing them must be done first.
            d.runner.synchronize()?;
            let mut bufs = Vec::with_capacity(kv.layers.len());
            for lc in &mut kv.layers {
                let (k, v) = lc.buffers_for_write()?;
                bufs.push((k.clone(), v.clone()));
            }
            let all: Vec<&Array> = bufs.iter().flat_map(|(k, v)| [k, v]).collect();
            mlx::eval(&all)?;
            caches = bufs
                .iter()
                .map(|(k, v)| Ok((k.device_ptr()?, v.device_ptr()?, k.dim(2))))
                .collect::<Result<_>>()?;
        }
        // Every layer's caches have the same capacity.
        let cap = caches.first().map_or(0, |c| c.2);
        let (attention_key, attention_dims) = if let Some(c) = d.cluster_for(cap) {
            let key = Key::ClusterAttention(c);
            let mut dims = d.kernels[&key].1;
            dims.shared_bytes = attention::cluster_shared_bytes(d.heads, d.dtype, c, cap);
            (key, dims)
        } else {
            let key = Key::Attention(attention::step_splits(len));
            d.kernel(model, key)?;
            (key, d.kernels[&key].1)
        };
        let p = |name: &str| d.ptr(name);
        let (h0, h1, qkv, part, attn, act, logits, tok, meta, pick) = (
            p("h0"),
            p("h1"),
            p("qkv"),
            p("part"),
            p("attn"),
            p("act"),
            p("logits"),
            p("tok"),
            p("meta"),
            p("pick"),
        );
        let StepDecoder {
            runner,
            kernels,
            layers,
            embed: e,
            head: hm,
            final_norm,
            counters,
            pdl,
            timeline,
            ..
        } = d;
        runner.clear();
        if let Some(t) = timeline.as_mut() {
            t.launches.clear();
        }
        // The step's first launch waits for the previous step in full; the
        // others may start early (`pdl`).
        let mut add = |key: Key, pdl: bool, args: &[u64]| -> Result<()> {
            let (kernel, own) = &kernels[&key];
            // The cluster attention's shared memory follows the caches.
            let dims = if key == attention_key {
                &attention_dims
            } else {
                own
            };
            let Some(t) = timeline.as_mut() else {
                return Ok(runner.add(kernel, *dims, pdl, args)?);
            };
            // Two more arguments: the timeline and this launch's first slot.
            let base = t.launches.last().map_or(0, |&(.., b, n)| b + n);
            if base + dims.blocks > step::TIMELINE_BLOCKS {
                return Err(Error::Model("timeline: more blocks than it holds".into()));
            }
            t.launches.push((key, base, dims.blocks));
            let mut all = args.to_vec();
            all.extend([t.ptr, u64::from(base)]);
            Ok(runner.add(kernel, *dims, pdl, &all)?)
        };
        add(Key::Embed, false, &[tok, e.w, e.scales, e.biases, h0, pick])?;
        for (l, &(kc, vc, cap)) in layers.iter().zip(&caches) {
            let m = |m: &Matrix| [m.w, m.scales, m.biases];
            let [w, s, b] = m(&l.qkv);
            add(Key::Qkv, *pdl, &[h0, l.input_norm, w, s, b, qkv])?;
            if matches!(attention_key, Key::ClusterAttention(_)) {
                let attention = [qkv, l.q_norm, l.k_norm, kc, vc, meta, attn, cap as u64];
                add(attention_key, *pdl, &attention)?;
            } else {
                let attention = [
                    qkv, l.q_norm, l.k_norm, kc, vc, meta, *counters, part, attn, cap as u64,
                ];
                add(attention_key, *pdl, &attention)?;
            }
            let [w, s, b] = m(&l.o);
            add(Key::O, *pdl, &[attn, w, s, b, h0, h1])?;
            let [w, s, b] = m(&l.gate_up);
            add(Key::GateUp, *pdl, &[h1, l.post_norm, w, s, b, act])?;
            let [w, s, b] = m(&l.down);
            add(Key::Down, *pdl, &[act, w, s, b, h1, h0])?;
        }
        let head = [
            h0,
            *final_norm,
            hm.w,
            hm.scales,
            hm.biases,
            logits,
            meta,
            pick,
        ];
        add(Key::Head, *pdl, &head)?;
        runner.launch()?;
        // The low half of the head's argmax key (`token` decodes it).
        runner.read_u32(pick, slot)?;
        self.next_slot = (slot + 1) % StepRunner::SLOTS;
        self.caches = caches;
        for lc in &mut kv.layers {
            lc.advance(1);
        }
        Ok(slot)
    }

    /// The token of the step queued with `slot` (waits for it).
    pub(crate) fn token(&mut self, slot: usize) -> Result<u32> {
        // The key's low half is `u32::MAX -` the token (`qmv4_pick_key`).
        Ok(u32::MAX - self.decoder().runner.slot(slot)?)
    }

    /// Waits for every queued step, so that MLX may read the caches (and
    /// writes the last step's timeline when asked: a failure to is a
    /// warning, the request stands).
    pub(crate) fn finish(mut self) -> Result<()> {
        let d = self.decoder();
        d.runner.synchronize()?;
        if let Some(t) = d.timeline.as_mut()
            && let Err(e) = t.write(&mut d.runner)
        {
            eprintln!("warning: step timeline not written: {e}");
        }
        Ok(())
    }
}

impl Drop for StepSession<'_> {
    /// A session left early (an error, a cancelled request) still waits for
    /// its steps: they write into caches that are freed after it.
    fn drop(&mut self) {
        if let Err(e) = self.decoder().runner.synchronize() {
            eprintln!("warning: waiting for the decoding steps: {e}");
        }
    }
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

    #[test]
    fn a_timeline_row_per_block_with_its_layer_and_phases() {
        // Embedding (1 block), then a layer's q/k/v (2 blocks) and attention
        // (1, with phases).
        let late8 = ClusterLayout::parse("8v").unwrap();
        let launches = [
            (Key::Embed, 0, 1),
            (Key::Qkv, 1, 2),
            (Key::ClusterAttention(late8), 3, 1),
        ];
        let slots = 2 * step::TIMELINE_BLOCKS as usize;
        let mut raw = vec![0u8; slots * 32];
        let mut put = |slot: usize, field: usize, v: u64| {
            raw[8 * (4 * slot + field)..][..8].copy_from_slice(&v.to_le_bytes());
        };
        let t = 1u64 << 40;
        for slot in 0..4 {
            for field in 0..4 {
                put(slot, field, 1000 * slot as u64 + field as u64 + t);
            }
        }
        for field in 0..4 {
            put(
                step::TIMELINE_BLOCKS as usize + 3,
                field,
                t + 500 + field as u64,
            );
            // A stale mark at q/k/v's slot is not its own.
            put(step::TIMELINE_BLOCKS as usize + 1, field, t + 900);
        }
        let csv = timeline_csv(&launches, &raw);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "launch,kernel,layer,block,sm,start_ns,wait_ns,end_ns,p0,p1,p2,p3"
        );
        assert_eq!(
            lines[1],
            format!("0,Embed,-1,0,{},{},{},{},0,0,0,0", t + 3, t, t + 1, t + 2)
        );
        assert_eq!(
            lines[3],
            format!(
                "1,Qkv,0,1,{},{},{},{},0,0,0,0",
                t + 2003,
                t + 2000,
                t + 2001,
                t + 2002
            )
        );
        assert_eq!(
            lines[4],
            format!(
                "2,ClusterAttention(8v),0,0,{},{},{},{},{},{},{},{}",
                t + 3003,
                t + 3000,
                t + 3001,
                t + 3002,
                t + 500,
                t + 501,
                t + 502,
                t + 503
            )
        );
        assert_eq!(lines.len(), 5);
        // A short buffer reads as zeros rather than failing.
        assert!(
            timeline_csv(&launches, &raw[..64])
                .lines()
                .nth(4)
                .unwrap()
                .ends_with(",0,0,0,0,0,0,0,0")
        );
    }
}
