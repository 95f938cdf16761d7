//! Continuous batching: many requests decoded together, each joining and
//! leaving the batch at a step boundary.
//!
//! A request joins with [`Engine::batch_add`]: its plan, admission, prefix
//! lookup and vision encoding run then (the vision cache and the prefix
//! cache are the engine's, shared by every request). Each
//! [`Engine::batch_step`] then runs one forward pass over the rows of every
//! sequence that has work: one row per decoding sequence (its last token)
//! and, for the oldest sequence still being prefilled, a chunk of its prompt
//! of at most [`Batch::prefill_chunk`] tokens. The linear layers read all
//! rows at once, so the weights are read once per step for the whole batch;
//! attention runs per sequence on its own cache at its own (3-D) positions.
//! Chunking keeps a long prompt from stalling the running streams for more
//! than a chunk's worth of work per step.
//!
//! Steps are queued one ahead of the host: a step is queued from the tokens
//! of the previous step before those are read, so that reading them (and
//! the server's work on them) overlaps the device's work.

use mlx::Array;

use super::Engine;
use super::decode_loop::{Clock, Decoded};
use super::plan::{RequestPlan, StageMarks};
use super::prefill::rope_of;
use crate::cache::CacheReport;
use crate::error::Result;
use crate::generate::{
    CancelToken, FinishReason, GenerateRequest, GenerateResponse, validate_request,
};
use crate::model::{ImageSpan, KvCache, Rope, Segment, VisionFeatures, Visual, assemble_inputs};
use crate::sampler::Sampler;

/// A request in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SequenceId(pub u64);

/// What a step produced for one sequence.
#[derive(Debug)]
pub enum BatchEvent {
    Token {
        seq: SequenceId,
        /// The token's place in the output.
        index: usize,
        id: u32,
        /// Seconds since the sequence joined.
        at_s: f64,
    },
    /// The sequence finished and left the batch.
    Done {
        seq: SequenceId,
        response: Box<GenerateResponse>,
    },
    /// The sequence was cancelled and left the batch.
    Cancelled { seq: SequenceId },
}

/// The sequences being served together and the limits on them.
pub struct Batch {
    seqs: Vec<Sequence>,
    next_id: u64,
    max_sequences: usize,
    prefill_chunk: usize,
    /// The admission cost of every sequence in the batch, summed.
    held: u64,
    steps: u64,
}

impl Batch {
    /// A batch of at most `max_sequences` sequences whose steps prefill at
    /// most `prefill_chunk` prompt tokens each.
    pub fn new(max_sequences: usize, prefill_chunk: usize) -> Batch {
        Batch {
            seqs: vec![],
            next_id: 1,
            max_sequences: max_sequences.max(1),
            prefill_chunk: prefill_chunk.max(1),
            held: 0,
            steps: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Sequences past their prefill.
    pub fn decoding(&self) -> usize {
        self.seqs
            .iter()
            .filter(|s| matches!(s.state, State::Decoding { .. }))
            .count()
    }

    /// Whether another sequence may join (by count; memory is checked when
    /// it is added).
    pub fn has_room(&self) -> bool {
        self.seqs.len() < self.max_sequences
    }

    /// Bytes the sequences' admission costs add up to.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    pub fn prefill_chunk(&self) -> usize {
        self.prefill_chunk
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn remove(&mut self, index: usize) -> Sequence {
        let s = self.seqs.remove(index);
        self.held -= s.cost;
        s
    }
}

/// One request's state in the batch.
struct Sequence {
    id: SequenceId,
    plan: RequestPlan,
    features: Vec<Option<VisionFeatures>>,
    report: CacheReport,
    kv: KvCache,
    sampler: Sampler,
    max_tokens: usize,
    ignore_eos: bool,
    return_logits: bool,
    state: State,
    decoded: Decoded,
    clock: Clock,
    preprocessed: f64,
    encoded: f64,
    first_logits: Option<Array>,
    cancel: CancelToken,
    cost: u64,
}

enum State {
    /// Prompt tokens from `next` on are still to be prefilled.
    Prefilling { next: usize },
    /// `pending` (a `u32` scalar on the device, not yet read) is the next
    /// token; the step after it runs at position `pos`.
    Decoding { pending: Array, pos: i32 },
}

impl Sequence {
    /// Whether the next step should decode a token after the pending one.
    fn wants_step(&self) -> bool {
        match self.state {
            State::Prefilling { .. } => true,
            State::Decoding { .. } => {
                self.decoded.ids.len() + 1 < self.max_tokens && !self.cancel.finish_requested()
            }
        }
    }
}

/// A step's rows for one sequence: its input rows, their rotation and,
/// for a prefill chunk, the DeepStack additions and where the chunk ends.
struct StepRows {
    index: usize,
    x: Array,
    rope: Rope,
    deepstack: Vec<Array>,
    /// Prefill chunks: the prompt position after the chunk.
    chunk_end: Option<usize>,
}

impl Engine {
    /// Adds `req` to `batch`: plans and admits it, looks up its prefix and
    /// encodes its images (the vision tower runs now, between two steps).
    /// `None` when the batch has no room for it now (by count or by
    /// memory); it may be added once sequences leave. `cancel` stops it
    /// (cancel) or ends it with what it has (finish early).
    pub fn batch_add(
        &mut self,
        batch: &mut Batch,
        req: &GenerateRequest,
        cancel: CancelToken,
    ) -> Result<Option<SequenceId>> {
        let clock = Clock::start();
        validate_request(req)?;
        if !batch.has_room() {
            return Ok(None);
        }
        let mut marks = StageMarks::new(self.profile_preprocess);
        let image_token = self.model.config.tokens.image;
        let plan = RequestPlan::new(req, &self.pre, &self.prompts, image_token, &mut marks)?;
        let cost = self.admit(&plan, req.max_tokens)?.total();
        if !batch.is_empty() && batch.held + cost > self.admission.memory_limit() {
            return Ok(None);
        }
        let (kv, mut report) = self.lookup_prefix(&plan, req.max_tokens)?;
        let (mut features, to_encode) = self.prepare_images(req, &plan, &mut report, &mut marks)?;
        let preprocessed = clock.now();
        self.encode_images(to_encode, &mut features, &mut report, &cancel)?;
        let encoded = clock.now();
        let id = SequenceId(batch.next_id);
        batch.next_id += 1;
        batch.held += cost;
        let next = report.reused_tokens;
        batch.seqs.push(Sequence {
            id,
            plan,
            features,
            report,
            kv,
            sampler: Sampler::new(req.sampling)?,
            max_tokens: req.max_tokens,
            ignore_eos: req.ignore_eos,
            return_logits: req.return_logits,
            state: State::Prefilling { next },
            decoded: Decoded {
                ids: Vec::with_capacity(req.max_tokens.min(4096)),
                times: Vec::with_capacity(req.max_tokens.min(4096)),
                finish: FinishReason::Length,
            },
            clock,
            preprocessed,
            encoded,
            first_logits: None,
            cancel,
            cost,
        });
        Ok(Some(id))
    }

    /// Runs one step of `batch`: queues a forward pass over every sequence
    /// with work (a token each for the decoding ones, a prompt chunk for
    /// the oldest one in prefill), then reads the tokens the previous step
    /// made. Finished and cancelled sequences leave the batch.
    pub fn batch_step(&mut self, batch: &mut Batch) -> Result<Vec<BatchEvent>> {
        let mut events = vec![];
        let mut i = 0;
        while i < batch.seqs.len() {
            if batch.seqs[i].cancel.is_cancelled() {
                let s = batch.remove(i);
                events.push(BatchEvent::Cancelled { seq: s.id });
            } else {
                i += 1;
            }
        }
        // The tokens the previous step made, read after this step is queued.
        let previous: Vec<(usize, Array)> = batch
            .seqs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.state {
                State::Decoding { pending, .. } => Some((i, pending.clone())),
                State::Prefilling { .. } => None,
            })
            .collect();
        let rows = self.step_rows(batch)?;
        if !rows.is_empty() {
            self.queue_step(batch, rows)?;
            batch.steps += 1;
        }
        let mut finished = vec![];
        for (i, token) in previous {
            let s = &mut batch.seqs[i];
            let id = token.item::<u32>()?;
            let at_s = s.clock.now();
            events.push(BatchEvent::Token {
                seq: s.id,
                index: s.decoded.ids.len(),
                id,
                at_s,
            });
            s.decoded.ids.push(id);
            s.decoded.times.push(at_s);
            let eos = !s.ignore_eos && self.info.eos_token_ids.contains(&id);
            if eos || s.cancel.finish_requested() {
                s.decoded.finish = FinishReason::Stop;
                finished.push(i);
            } else if s.decoded.ids.len() >= s.max_tokens {
                finished.push(i);
            }
        }
        for i in finished.into_iter().rev() {
            let s = batch.remove(i);
            let total = s.clock.now();
            let response = self.respond(
                &s.plan,
                s.decoded,
                s.report,
                s.first_logits,
                [s.preprocessed, s.encoded, total],
            )?;
            events.push(BatchEvent::Done {
                seq: s.id,
                response: Box::new(response),
            });
        }
        Ok(events)
    }

    /// The input rows of the next step, in the batch's order: decoding
    /// sequences first (they joined earlier), then a chunk of the oldest
    /// sequence in prefill.
    fn step_rows(&self, batch: &Batch) -> Result<Vec<StepRows>> {
        let text = &self.model.text;
        let mut rows = vec![];
        let decoding: Vec<(usize, &Array, i32)> = batch
            .seqs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.wants_step())
            .filter_map(|(i, s)| match &s.state {
                State::Decoding { pending, pos } => Some((i, pending, *pos)),
                State::Prefilling { .. } => None,
            })
            .collect();
        if !decoding.is_empty() {
            let tokens: Vec<Array> = decoding
                .iter()
                .map(|(_, t, _)| t.reshape(&[1]))
                .collect::<std::result::Result<_, _>>()?;
            let refs: Vec<&Array> = tokens.iter().collect();
            let x = text
                .embed_array(&Array::concatenate(&refs, 0)?)?
                .expand_dims(0)?;
            for (j, (index, _, pos)) in decoding.iter().enumerate() {
                rows.push(StepRows {
                    index: *index,
                    x: x.slice_axis(1, j as i32, j as i32 + 1)?,
                    rope: Rope::Offset(*pos),
                    deepstack: vec![],
                    chunk_end: None,
                });
            }
        }
        let prefilling = batch
            .seqs
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s.state {
                State::Prefilling { next } => Some((i, s, next)),
                State::Decoding { .. } => None,
            });
        if let Some((index, s, next)) = prefilling {
            let len = s.plan.len();
            let piece = self
                .admission
                .prefill_piece(len - next, len)
                .min(batch.prefill_chunk);
            let end = (next + piece.max(1)).min(len);
            let (spans, feats): (Vec<ImageSpan>, Vec<&VisionFeatures>) = s
                .plan
                .spans
                .iter()
                .zip(&s.features)
                .filter_map(|(sp, f)| f.as_ref().map(|f| (*sp, f)))
                .unzip();
            let (x, deepstack) = assemble_inputs(text, &s.plan.ids, &spans, &feats, next, end)?;
            rows.push(StepRows {
                index,
                x,
                rope: rope_of(text.config(), &s.plan.positions.slice(next, end))?,
                deepstack,
                chunk_end: Some(end),
            });
        }
        Ok(rows)
    }

    /// Queues the forward pass over `rows` and the sampling after it; the
    /// sequences' states move on to their new pending tokens.
    fn queue_step(&mut self, batch: &mut Batch, rows: Vec<StepRows>) -> Result<()> {
        let counts: Vec<usize> = rows.iter().map(|r| r.x.dim(1) as usize).collect();
        let xs: Vec<&Array> = rows.iter().map(|r| &r.x).collect();
        let x = if xs.len() == 1 {
            xs[0].clone()
        } else {
            Array::concatenate(&xs, 1)?
        };
        let deepstack = self.full_deepstack(&rows, &counts)?;
        let visual = Visual {
            deepstack: &deepstack,
        };
        let visual = (!deepstack.is_empty()).then_some(&visual);
        let text = &self.model.text;
        let h = {
            let mut wanted = rows.iter().map(|r| r.index).peekable();
            let mut segments: Vec<Segment<'_>> = vec![];
            let mut ropes = rows.iter().zip(&counts);
            for (i, s) in batch.seqs.iter_mut().enumerate() {
                if wanted.peek() == Some(&i) {
                    wanted.next();
                    let (r, &n) = ropes.next().expect("a rope per row set");
                    segments.push(Segment {
                        rows: n,
                        rope: &r.rope,
                        cache: &mut s.kv,
                    });
                }
            }
            if let [one] = segments.as_mut_slice() {
                // Alone, a sequence's step takes the decoder's fastest path
                // (the fused kernels where they apply).
                self.decoder
                    .forward(text, &x, one.rope, one.cache, visual)?
            } else {
                text.forward_batch(&x, &mut segments, visual)?
            }
        };
        let mut to_eval: Vec<Array> = vec![];
        let mut at = 0i32;
        let mut remembered = vec![];
        for (r, &n) in rows.iter().zip(&counts) {
            let n = n as i32;
            let s = &mut batch.seqs[r.index];
            let last_row = match r.chunk_end {
                Some(end) if end < s.plan.len() => None,
                _ => Some(h.slice_axis(1, at + n - 1, at + n)?),
            };
            at += n;
            let Some(last) = last_row else {
                // A prefill chunk before the prompt's last: its keys and
                // values are the work.
                s.state = State::Prefilling {
                    next: r.chunk_end.expect("a chunk"),
                };
                s.kv.push_arrays(&mut to_eval);
                continue;
            };
            // Kept 2-D: MLX CUDA's quantized matmul needs a row of inputs.
            let logits = text.logits(&last.reshape(&[1, -1])?)?.reshape(&[-1])?;
            let token = s.sampler.sample(&logits)?;
            to_eval.push(token.clone());
            s.state = match (&s.state, r.chunk_end) {
                (State::Decoding { pos, .. }, None) => State::Decoding {
                    pending: token,
                    pos: pos + 1,
                },
                _ => {
                    if s.return_logits {
                        s.first_logits = Some(logits);
                    }
                    remembered.push(r.index);
                    State::Decoding {
                        pending: token,
                        pos: s.plan.positions.next_position(),
                    }
                }
            };
        }
        let refs: Vec<&Array> = to_eval.iter().collect();
        mlx::async_eval(&refs)?;
        for i in remembered {
            let s = &mut batch.seqs[i];
            self.remember_prefix(&mut s.plan, &s.kv)?;
        }
        Ok(())
    }

    /// The DeepStack additions over all of a step's rows: the prefill
    /// chunk's where it has image rows, zeros elsewhere (none when no row
    /// has any).
    fn full_deepstack(&self, rows: &[StepRows], counts: &[usize]) -> Result<Vec<Array>> {
        let Some(levels) = rows
            .iter()
            .map(|r| r.deepstack.len())
            .max()
            .filter(|&l| l > 0)
        else {
            return Ok(vec![]);
        };
        if rows.len() == 1 {
            return Ok(rows[0].deepstack.clone());
        }
        let text = self.model.text.config();
        let dtype = self.model.text.dtype();
        (0..levels)
            .map(|level| {
                let parts = rows
                    .iter()
                    .zip(counts)
                    .map(|(r, &n)| match r.deepstack.get(level) {
                        Some(d) => Ok(d.clone()),
                        None => Array::zeros(&[1, n as i32, text.hidden_size as i32], dtype),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let refs: Vec<&Array> = parts.iter().collect();
                Ok(Array::concatenate(&refs, 1)?)
            })
            .collect()
    }
}
