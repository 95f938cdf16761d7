//! Decoding: how a request's single-token steps run after its prefill. The
//! model (`crate::model`) holds the math and exposes its weights
//! ([`crate::model::DecoderView`]); this module decides how a step runs on
//! them:
//!
//! - the model's own forward pass, as MLX operations (any model, any backend);
//! - the fused kernels as MLX operations (`fused.rs`: 4-bit models on CUDA);
//! - the step runner (`steps/`: greedy requests on CUDA), the same kernels
//!   launched outside MLX's graph as CUDA graphs.
//!
//! `docs/performance.md` describes the design and its figures.

mod fused;
mod path;
mod steps;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mlx::Array;

pub use path::{DecodePath, PATH_NAMES, StepAttention};

use crate::error::Result;
use crate::kernels::Kernels;
use crate::kernels::launch::LaunchTuning;
use crate::model::{KvCache, Rope, TextModel, Visual};
use crate::sampler::Sampler;
use crate::tuning::Tuning;
use fused::FusedDecode;
use steps::{StepDecoder, StepSession, StepState};

/// How an engine decodes: the fused path when it applies, the step runner
/// (made at the first greedy request), and the path asked for.
pub struct Decoder {
    path: DecodePath,
    fused: Option<FusedDecode>,
    steps: StepState,
    launch: LaunchTuning,
    timeline_dir: Option<PathBuf>,
    profile: bool,
}

impl Decoder {
    /// The decoder for `text`, on `kernels`, as `tuning` asks.
    pub fn new(text: &TextModel, kernels: &Arc<Kernels>, tuning: &Tuning) -> Decoder {
        let fused = if tuning.fused_decode {
            FusedDecode::new(text.decoder_view().as_ref(), kernels).unwrap_or_else(|e| {
                eprintln!("warning: fused decoding off: {e}");
                None
            })
        } else {
            None
        };
        Decoder {
            path: tuning.decode,
            fused,
            steps: StepState::Untried,
            launch: kernels.launch().clone(),
            timeline_dir: tuning.timeline_dir.clone(),
            profile: tuning.profile_decode,
        }
    }

    /// Whether single-token steps run the fused kernels.
    pub fn fused(&self) -> bool {
        self.fused.is_some()
    }

    /// How greedy steps run from the next request on.
    pub fn path(&self) -> DecodePath {
        self.path
    }

    pub fn set_path(&mut self, path: DecodePath) {
        self.path = path;
    }

    /// `x` `(1, L, hidden)` through the decoder after what `cache` holds:
    /// through the fused kernels when it is one token at a plain RoPE
    /// position after cached ones (a decoding step, or an exact prefix hit's
    /// last prompt token), else through the model's layers.
    pub fn forward(
        &mut self,
        text: &TextModel,
        x: &Array,
        rope: &Rope,
        cache: &mut KvCache,
        visual: Option<&Visual<'_>>,
    ) -> Result<Array> {
        if let (Some(f), Rope::Offset(pos), None, 1) = (&mut self.fused, rope, visual, x.dim(1))
            && !cache.is_empty()
            && let Some(view) = text.decoder_view()
        {
            return f.forward(&view, x, *pos, cache);
        }
        text.forward(x, rope, cache, visual)
    }

    /// Starts a request's decoding after its prefill's token `first` (a
    /// `u32` scalar), with `kv` holding the prompt and `pos` the next RoPE
    /// position: on the step runner when the request is greedy, has `steps`
    /// to take and the path asks for it (and it applies here), else on MLX's
    /// graph.
    pub fn start<'a>(
        &'a mut self,
        text: &'a TextModel,
        sampler: Sampler,
        first: &Array,
        kv: &KvCache,
        pos: i32,
        steps: bool,
    ) -> Result<Steps<'a>> {
        let profile = self.profile.then(StepProfile::default);
        let runner = match self.path {
            DecodePath::Steps {
                graph,
                pdl,
                attention,
            } if steps && sampler.is_greedy() => self.step_decoder(text, graph, pdl, attention)?,
            _ => false,
        };
        let how = if runner {
            let StepState::Ready(decoder) = &mut self.steps else {
                unreachable!("the step decoder was just made ready");
            };
            How::Runner(StepSession::start(decoder, first, kv, pos)?)
        } else {
            How::Mlx {
                decoder: self,
                text,
                sampler,
            }
        };
        Ok(Steps {
            how,
            next_pos: pos,
            profile,
        })
    }

    /// Makes the step decoder ready for greedy steps launched as asked, the
    /// first time it is needed; whether it is (CUDA, the fused kernels on,
    /// the model's formats supported).
    fn step_decoder(
        &mut self,
        text: &TextModel,
        graph: bool,
        pdl: bool,
        attention: StepAttention,
    ) -> Result<bool> {
        let Some(fused) = &self.fused else {
            return Ok(false);
        };
        if !mlx::cuda::available() {
            return Ok(false);
        }
        if matches!(self.steps, StepState::Untried) {
            let made = text
                .decoder_view()
                .ok_or_else(|| crate::Error::Model("no fused weights".into()))
                .and_then(|view| {
                    let dir = self.timeline_dir.clone();
                    StepDecoder::new(&view, &fused.counters, &self.launch, dir)
                });
            self.steps = match made {
                Ok(d) => StepState::Ready(Box::new(d)),
                Err(e) => {
                    eprintln!("warning: decoding steps stay on MLX's graph: {e}");
                    StepState::Off
                }
            };
        }
        let StepState::Ready(decoder) = &mut self.steps else {
            return Ok(false);
        };
        decoder.configure(graph, pdl, attention)?;
        Ok(true)
    }
}

/// A token on its way to the host: an MLX array, or a step runner's slot.
pub enum Pending {
    Mlx(Array),
    Slot(usize),
}

/// One request's decoding steps, each queued one ahead of the host.
pub struct Steps<'a> {
    how: How<'a>,
    next_pos: i32,
    profile: Option<StepProfile>,
}

enum How<'a> {
    Mlx {
        decoder: &'a mut Decoder,
        text: &'a TextModel,
        sampler: Sampler,
    },
    Runner(StepSession<'a>),
}

impl Steps<'_> {
    /// Whether the first token is read before the first step is queued: the
    /// step runner's is ready when decoding starts, and queueing a step would
    /// delay reading it.
    pub fn first_token_ready(&self) -> bool {
        matches!(self.how, How::Runner(_))
    }

    /// Queues the step after `pending` and counts its position.
    pub fn queue(&mut self, pending: &Pending, kv: &mut KvCache) -> Result<Pending> {
        let started = Instant::now();
        let (next, built) = match (&mut self.how, pending) {
            (How::Runner(s), _) => (Pending::Slot(s.queue(kv)?), Instant::now()),
            (
                How::Mlx {
                    decoder,
                    text,
                    sampler,
                },
                Pending::Mlx(token),
            ) => {
                let x = text.embed_array(&token.reshape(&[1])?)?.expand_dims(0)?;
                let rope = Rope::Offset(self.next_pos);
                let h = decoder.forward(text, &x, &rope, kv, None)?;
                let logits = text.logits(&h.reshape(&[1, -1])?)?.reshape(&[-1])?;
                let t = sampler.sample(&logits)?;
                let built = Instant::now();
                mlx::async_eval(&[&t])?;
                (Pending::Mlx(t), built)
            }
            (How::Mlx { .. }, Pending::Slot(_)) => {
                unreachable!("slots come only from the step runner")
            }
        };
        self.next_pos += 1;
        if let Some(p) = self.profile.as_mut() {
            p.build_s += built.duration_since(started).as_secs_f64();
            p.dispatch_s += built.elapsed().as_secs_f64();
            p.steps += 1;
        }
        Ok(next)
    }

    /// The token of `pending` on the host (waits for it).
    pub fn token(&mut self, pending: &Pending) -> Result<u32> {
        let waiting = Instant::now();
        let id = match (pending, &mut self.how) {
            (Pending::Mlx(t), _) => t.item::<u32>()?,
            (Pending::Slot(slot), How::Runner(s)) => s.token(*slot)?,
            (Pending::Slot(_), How::Mlx { .. }) => {
                unreachable!("slots come only from the step runner")
            }
        };
        if let Some(p) = self.profile.as_mut() {
            p.wait_s += waiting.elapsed().as_secs_f64();
        }
        Ok(id)
    }

    /// Waits for every queued step, so that MLX may read the caches (the
    /// prefix cache's copies) only after the steps that wrote them.
    pub fn finish(self) -> Result<()> {
        if let How::Runner(s) = self.how {
            s.finish()?;
        }
        if let Some(p) = self.profile {
            p.report();
        }
        Ok(())
    }
}

/// Where the host's time goes in the decode loop, printed to stderr after
/// each request when `Tuning::profile_decode` asks: building a step's graph,
/// handing it to MLX (or, on the step runner, building the launch list and
/// launching it), and waiting for the previous step's token. A wait near
/// zero means the host, not the device, sets the pace.
#[derive(Default)]
struct StepProfile {
    steps: usize,
    build_s: f64,
    dispatch_s: f64,
    wait_s: f64,
}

impl StepProfile {
    fn report(&self) {
        let per = |s: f64| s * 1e6 / self.steps.max(1) as f64;
        eprintln!(
            "decode profile: {} steps; per step: build {:.0} µs, dispatch {:.0} µs, wait {:.0} µs",
            self.steps,
            per(self.build_s),
            per(self.dispatch_s),
            per(self.wait_s)
        );
    }
}
