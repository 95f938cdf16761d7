//! Continuous batching: many requests decoded together, each joining and
//! leaving the batch at a step boundary.
//!
//! A request joins with [`Engine::batch_add`]: its plan, admission, prefix
//! lookup and vision-cache lookups run then, and its other images' patches
//! are staged (the vision cache and the prefix cache are the engine's,
//! shared by every request). Each [`Engine::batch_step`] then runs one
//! forward pass over a token of every decoding sequence, plus a share of the
//! work of the oldest sequence not yet decoding: some blocks of its images'
//! vision-tower pass (about a prefill chunk's operations), or a chunk of at
//! most [`Batch::prefill_chunk`] prompt tokens prefilled on its own cache at
//! its own (3-D) positions. So a new request delays the running streams by
//! about a chunk's work per step, however large its images and prompt. The
//! linear layers read all rows at once: the weights are read once per step
//! for the whole batch. The decoding sequences' caches are rows of one
//! [`BatchKv`], so their attention is one call per layer whatever their
//! number. A sequence decoding alone keeps its own cache and the decoder's
//! fastest single-stream path (the fused kernels where they apply).
//!
//! Steps are queued one ahead of the host: a step is queued from the tokens
//! of the previous step before those are read, so that reading them (and
//! the server's work on them) overlaps the device's work.

use std::collections::VecDeque;

use mlx::Array;

use super::Engine;
use super::decode_loop::{Clock, Decoded};
use super::plan::{RequestPlan, StageMarks};
use super::prefill::{ToEncode, encoded_images, remember, rope_of, vision_checkpoint};
use crate::cache::CacheReport;
use crate::error::{Error, Result};
use crate::generate::{
    CancelToken, FinishReason, GenerateRequest, GenerateResponse, validate_request,
};
use crate::model::vision::VisionPass;
use crate::model::{BatchKv, KvCache, Rope, Segment, VisionFeatures, Visual, assemble_inputs};
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
    /// The sequences whose caches are the rows of `kv`, in row order.
    rows: Vec<SequenceId>,
    kv: BatchKv,
    /// The tokens the last batched step made (not yet read), one per row
    /// of `rows` as they were then.
    in_flight: Option<(Vec<SequenceId>, Array)>,
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
            rows: vec![],
            kv: BatchKv::default(),
            in_flight: None,
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

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn index_of(&self, id: SequenceId) -> Option<usize> {
        self.seqs.iter().position(|s| s.id == id)
    }

    /// Removes the sequences `ids` and their rows of the batch's cache.
    fn remove(&mut self, ids: &[SequenceId]) -> Result<Vec<Sequence>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&r| !ids.contains(&self.rows[r]))
            .collect();
        if keep.len() < self.rows.len() {
            self.kv.keep_rows(&keep)?;
            self.rows = keep.iter().map(|&r| self.rows[r]).collect();
        }
        let (gone, kept): (Vec<Sequence>, Vec<Sequence>) = std::mem::take(&mut self.seqs)
            .into_iter()
            .partition(|s| ids.contains(&s.id));
        self.seqs = kept;
        self.held -= gone.iter().map(|s| s.cost).sum::<u64>();
        Ok(gone)
    }
}

/// One request's state in the batch.
struct Sequence {
    id: SequenceId,
    plan: RequestPlan,
    features: Vec<Option<VisionFeatures>>,
    report: CacheReport,
    /// Its own cache; `None` while it is a row of the batch's.
    kv: Option<KvCache>,
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
    /// Images still to encode (the first one under way when `pass` is
    /// set); then the prompt from `next` on.
    Encoding {
        images: VecDeque<ToEncode>,
        pass: Option<VisionPass>,
        next: usize,
    },
    /// Prompt tokens from `next` on are still to be prefilled.
    Prefilling { next: usize },
    /// The next token is on the device, not yet read: `pending` (a `u32`
    /// scalar), or the sequence's entry of the batch's tokens in flight
    /// when `None`. The step after it runs at position `pos`.
    Decoding { pending: Option<Array>, pos: i32 },
}

/// A prompt chunk of a step: its sequence, input rows, rotation,
/// DeepStack additions and where it ends.
struct Chunk {
    index: usize,
    x: Array,
    rope: Rope,
    deepstack: Vec<Array>,
    end: usize,
}

impl Engine {
    /// Adds `req` to `batch`: plans and admits it, looks up its prefix and
    /// its images in the vision cache, and stages the others' patches (the
    /// vision tower runs them in later steps).
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
        let (features, to_encode) =
            self.prepare_images(req, &plan, &mut report, &mut marks, true)?;
        let preprocessed = clock.now();
        let id = SequenceId(batch.next_id);
        batch.next_id += 1;
        batch.held += cost;
        let next = report.reused_tokens;
        batch.seqs.push(Sequence {
            id,
            plan,
            features,
            report,
            kv: Some(kv),
            sampler: Sampler::new(req.sampling)?,
            max_tokens: req.max_tokens,
            ignore_eos: req.ignore_eos,
            return_logits: req.return_logits,
            state: if to_encode.is_empty() {
                State::Prefilling { next }
            } else {
                State::Encoding {
                    images: to_encode.into(),
                    pass: None,
                    next,
                }
            },
            decoded: Decoded {
                ids: Vec::with_capacity(req.max_tokens.min(4096)),
                times: Vec::with_capacity(req.max_tokens.min(4096)),
                finish: FinishReason::Length,
            },
            clock,
            preprocessed,
            encoded: preprocessed,
            first_logits: None,
            cancel,
            cost,
        });
        Ok(Some(id))
    }

    /// Runs one step of `batch`: queues a forward pass over every sequence
    /// with work (a token each for the decoding ones; vision blocks or a
    /// prompt chunk for the oldest one not yet decoding), then reads the
    /// tokens the previous step made. Finished and cancelled sequences leave
    /// the batch.
    pub fn batch_step(&mut self, batch: &mut Batch) -> Result<Vec<BatchEvent>> {
        let mut events = vec![];
        let cancelled: Vec<SequenceId> = batch
            .seqs
            .iter()
            .filter(|s| s.cancel.is_cancelled())
            .map(|s| s.id)
            .collect();
        for s in batch.remove(&cancelled)? {
            events.push(BatchEvent::Cancelled { seq: s.id });
        }
        // The tokens the previous step made, read after this step is queued.
        let in_flight = batch.in_flight.take();
        let own: Vec<(SequenceId, Array)> = batch
            .seqs
            .iter()
            .filter_map(|s| match &s.state {
                State::Decoding {
                    pending: Some(t), ..
                } => Some((s.id, t.clone())),
                _ => None,
            })
            .collect();
        if self.queue_step(batch, in_flight.as_ref())? {
            batch.steps += 1;
        }
        let mut read: Vec<(SequenceId, u32)> = vec![];
        if let Some((ids, tokens)) = &in_flight {
            read.extend(ids.iter().copied().zip(tokens.to_vec::<u32>()?));
        }
        for (id, t) in own {
            read.push((id, t.item::<u32>()?));
        }
        let mut finished = vec![];
        for (seq, id) in read {
            let Some(i) = batch.index_of(seq) else {
                continue;
            };
            let s = &mut batch.seqs[i];
            let at_s = s.clock.now();
            events.push(BatchEvent::Token {
                seq,
                index: s.decoded.ids.len(),
                id,
                at_s,
            });
            s.decoded.ids.push(id);
            s.decoded.times.push(at_s);
            let eos = !s.ignore_eos && self.info.eos_token_ids.contains(&id);
            if eos || s.cancel.finish_requested() {
                s.decoded.finish = FinishReason::Stop;
                finished.push(seq);
            } else if s.decoded.ids.len() >= s.max_tokens {
                finished.push(seq);
            }
        }
        for s in batch.remove(&finished)? {
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

    /// Queues the next step: a token of every decoding sequence (alone on
    /// its own cache, or as rows of the batch's) and a chunk of the oldest
    /// sequence in prefill. `previous` holds the tokens the last batched
    /// step made. Whether there was work.
    fn queue_step(
        &mut self,
        batch: &mut Batch,
        previous: Option<&(Vec<SequenceId>, Array)>,
    ) -> Result<bool> {
        let decoders: Vec<SequenceId> = batch
            .seqs
            .iter()
            .filter(|s| matches!(s.state, State::Decoding { .. }))
            .map(|s| s.id)
            .collect();
        // The oldest sequence not yet decoding gets this step's share of
        // its images' encoding, or else a chunk of its prompt.
        let starting = batch
            .seqs
            .iter()
            .position(|s| !matches!(s.state, State::Decoding { .. }));
        let (chunk, vision) = match starting {
            Some(i) if matches!(batch.seqs[i].state, State::Encoding { .. }) => {
                (None, self.vision_step(batch, i)?)
            }
            Some(i) => (Some(self.chunk_of(batch, i)?), vec![]),
            None => (None, vec![]),
        };
        if !vision.is_empty() {
            let refs: Vec<&Array> = vision.iter().collect();
            mlx::async_eval(&refs)?;
        }
        if decoders.is_empty() && chunk.is_none() {
            return Ok(starting.is_some());
        }
        if let ([id], None) = (decoders.as_slice(), &chunk) {
            self.step_alone(batch, *id, previous)?;
            return Ok(true);
        }
        // Every decoding sequence becomes a row of the batch's cache.
        for &id in &decoders {
            let i = batch.index_of(id).expect("a decoder of the batch");
            if let Some(kv) = batch.seqs[i].kv.take() {
                batch.kv.join(&kv)?;
                batch.rows.push(id);
            }
        }
        let text = &self.model.text;
        let rows = batch.rows.len();
        let mut xs = vec![];
        let mut positions = None;
        if rows > 0 {
            let tokens = row_tokens(batch, previous)?;
            xs.push(text.embed_array(&tokens)?.expand_dims(0)?);
            let pos: Vec<i32> = batch
                .rows
                .iter()
                .map(
                    |&id| match batch.seqs[batch.index_of(id).expect("a row")].state {
                        State::Decoding { pos, .. } => pos,
                        _ => unreachable!("rows are decoding"),
                    },
                )
                .collect();
            positions = Some(Array::from_i32(&pos, &[rows as i32])?);
            batch.kv.reserve_step()?;
        }
        if let Some(c) = &chunk {
            xs.push(c.x.clone());
        }
        let refs: Vec<&Array> = xs.iter().collect();
        let x = if refs.len() == 1 {
            xs[0].clone()
        } else {
            Array::concatenate(&refs, 1)?
        };
        let deepstack = self.step_deepstack(rows, chunk.as_ref())?;
        let visual = Visual {
            deepstack: &deepstack,
        };
        let visual = (!deepstack.is_empty()).then_some(&visual);
        let mask = batch.kv.step_mask()?;
        let h = {
            let mut segments = vec![];
            if let Some(positions) = &positions {
                segments.push(Segment::Batch {
                    cache: &mut batch.kv,
                    positions,
                    mask: mask.as_ref(),
                });
            }
            if let Some(c) = &chunk {
                let kv = batch.seqs[c.index].kv.as_mut().expect("in prefill");
                segments.push(Segment::Rows {
                    rows: c.x.dim(1) as usize,
                    rope: &c.rope,
                    cache: kv,
                });
            }
            match segments.as_mut_slice() {
                [Segment::Rows { rope, cache, .. }] => {
                    self.decoder.forward(text, &x, rope, cache, visual)?
                }
                all => text.forward_batch(&x, all, visual)?,
            }
        };
        let mut to_eval = vec![];
        if rows > 0 {
            batch.kv.advance();
            let hidden = h.dim(2);
            let last = h
                .slice_axis(1, 0, rows as i32)?
                .reshape(&[rows as i32, hidden])?;
            let logits = text.logits(&last)?;
            let tokens = self.sample_rows(batch, &logits)?;
            to_eval.push(tokens.clone());
            for &id in &batch.rows {
                let i = batch.index_of(id).expect("a row");
                if let State::Decoding { pending, pos } = &mut batch.seqs[i].state {
                    *pending = None;
                    *pos += 1;
                }
            }
            batch.in_flight = Some((batch.rows.clone(), tokens));
        }
        if let Some(c) = chunk {
            let s = &mut batch.seqs[c.index];
            let kv = s.kv.as_ref().expect("in prefill");
            if c.end < s.plan.len() {
                // A chunk before the prompt's last: its keys and values are
                // the work.
                s.state = State::Prefilling { next: c.end };
                kv.push_arrays(&mut to_eval);
            } else {
                let n = h.dim(1);
                // Kept 2-D: MLX CUDA's quantized matmul needs a row of inputs.
                let last = h.slice_axis(1, n - 1, n)?.reshape(&[1, -1])?;
                let logits = text.logits(&last)?.reshape(&[-1])?;
                let token = s.sampler.sample(&logits)?;
                to_eval.push(token.clone());
                if s.return_logits {
                    s.first_logits = Some(logits);
                }
                s.state = State::Decoding {
                    pending: Some(token),
                    pos: s.plan.positions.next_position(),
                };
                let (plan, kv) = (&mut s.plan, s.kv.as_ref().expect("in prefill"));
                if self.cache_enabled {
                    remember(&mut self.prefix_cache, plan, kv)?;
                }
            }
        }
        let refs: Vec<&Array> = to_eval.iter().collect();
        mlx::async_eval(&refs)?;
        Ok(true)
    }

    /// A step of the only decoding sequence, on its own cache through the
    /// decoder's single-stream path.
    fn step_alone(
        &mut self,
        batch: &mut Batch,
        id: SequenceId,
        previous: Option<&(Vec<SequenceId>, Array)>,
    ) -> Result<()> {
        let i = batch.index_of(id).expect("a decoder of the batch");
        if batch.rows == [id] {
            let s = &batch.seqs[i];
            let more = (s.max_tokens - s.decoded.ids.len()) as i32;
            batch.seqs[i].kv = Some(batch.kv.into_single(more)?);
            batch.rows.clear();
        }
        let token = match &batch.seqs[i].state {
            State::Decoding {
                pending: Some(t), ..
            } => t.reshape(&[1])?,
            _ => previous_token(previous, id)?,
        };
        let text = &self.model.text;
        let s = &mut batch.seqs[i];
        let State::Decoding { pending, pos } = &mut s.state else {
            unreachable!("a decoder");
        };
        let x = text.embed_array(&token)?.expand_dims(0)?;
        let kv = s.kv.as_mut().expect("its own cache");
        let h = self
            .decoder
            .forward(text, &x, &Rope::Offset(*pos), kv, None)?;
        let logits = text.logits(&h.reshape(&[1, -1])?)?.reshape(&[-1])?;
        let t = s.sampler.sample(&logits)?;
        mlx::async_eval(&[&t])?;
        *pending = Some(t);
        *pos += 1;
        Ok(())
    }

    /// The next prompt chunk of sequence `index`, in prefill.
    fn chunk_of(&self, batch: &Batch, index: usize) -> Result<Chunk> {
        let s = &batch.seqs[index];
        let State::Prefilling { next } = s.state else {
            unreachable!("a sequence in prefill");
        };
        let text = &self.model.text;
        let len = s.plan.len();
        let piece = self
            .admission
            .prefill_piece(len - next, len)
            .min(batch.prefill_chunk);
        let end = (next + piece.max(1)).min(len);
        let (spans, feats) = encoded_images(&s.plan, &s.features);
        let (x, deepstack) = assemble_inputs(text, &s.plan.ids, &spans, &feats, next, end)?;
        Ok(Chunk {
            index,
            x,
            rope: rope_of(text.config(), &s.plan.positions.slice(next, end))?,
            deepstack,
            end,
        })
    }

    /// Queues the next blocks of sequence `index`'s image encoding (about a
    /// prefill chunk's worth of work) and returns the arrays to compute.
    /// An image whose features another request put in the vision cache
    /// meanwhile is taken from there. When the last image is done, the
    /// sequence moves on to its prefill.
    fn vision_step(&mut self, batch: &mut Batch, index: usize) -> Result<Vec<Array>> {
        let chunk = batch.prefill_chunk;
        let s = &mut batch.seqs[index];
        let State::Encoding { images, pass, next } = &mut s.state else {
            unreachable!("a sequence encoding its images");
        };
        let mut out = vec![];
        while pass.is_none() {
            let Some(image) = images.front() else {
                break;
            };
            if self.cache_enabled
                && let Some(f) = self.vision_cache.get(&image.key)
            {
                s.report.vision_hits += 1;
                s.features[image.index] = Some(f);
                images.pop_front();
                continue;
            }
            let patches = image.grid.iter().product::<usize>();
            let piece = self.admission.vision_piece(patches);
            *pass = Some(
                self.model
                    .vision
                    .start_pass(&image.pixels, image.grid, piece)?,
            );
        }
        if let (Some(p), Some(image)) = (pass.as_mut(), images.front()) {
            let patches = image.grid.iter().product::<usize>();
            let piece = self.admission.vision_piece(patches);
            let blocks = self.admission.vision_blocks_per_step(patches, chunk);
            let mut checkpoint = vision_checkpoint(piece, patches, &s.cancel);
            let vision = &self.model.vision;
            if vision.run_blocks(p, blocks, &mut checkpoint)? {
                let f = vision.finish_pass(pass.take().expect("a pass under way"))?;
                out.push(f.merged.clone());
                out.extend(f.deepstack.iter().cloned());
                if self.cache_enabled {
                    self.vision_cache.insert(image.key, f.clone());
                }
                s.report.vision_misses += 1;
                s.features[image.index] = Some(f);
                images.pop_front();
            } else {
                out.extend(p.outputs());
            }
        }
        if images.is_empty() && pass.is_none() {
            s.state = State::Prefilling { next: *next };
            s.encoded = s.clock.now();
        }
        Ok(out)
    }

    /// The DeepStack additions over a step's rows: zeros for the `rows`
    /// decoding rows, then the chunk's (none when the chunk has none).
    fn step_deepstack(&self, rows: usize, chunk: Option<&Chunk>) -> Result<Vec<Array>> {
        let Some(c) = chunk.filter(|c| !c.deepstack.is_empty()) else {
            return Ok(vec![]);
        };
        if rows == 0 {
            return Ok(c.deepstack.clone());
        }
        let hidden = self.model.text.config().hidden_size as i32;
        let zeros = Array::zeros(&[1, rows as i32, hidden], self.model.text.dtype())?;
        c.deepstack
            .iter()
            .map(|d| Ok(Array::concatenate(&[&zeros, d], 1)?))
            .collect()
    }

    /// The next token of every row from its logits `(rows, vocab)`: one
    /// argmax when every row is greedy, else each row's own sampler.
    fn sample_rows(&self, batch: &mut Batch, logits: &Array) -> Result<Array> {
        let indices: Vec<usize> = batch
            .rows
            .iter()
            .map(|&id| batch.index_of(id).expect("a row"))
            .collect();
        if indices.iter().all(|&i| batch.seqs[i].sampler.is_greedy()) {
            return Ok(logits.argmax(-1, false)?);
        }
        let mut tokens = vec![];
        for (r, &i) in indices.iter().enumerate() {
            let row = logits
                .slice_axis(0, r as i32, r as i32 + 1)?
                .reshape(&[-1])?;
            tokens.push(batch.seqs[i].sampler.sample(&row)?.reshape(&[1])?);
        }
        let refs: Vec<&Array> = tokens.iter().collect();
        Ok(Array::concatenate(&refs, 0)?)
    }
}

/// The input token of every row of the batch's cache, `(rows,)`: the last
/// batched step's tokens when the rows are the same, else each row's own.
fn row_tokens(batch: &Batch, previous: Option<&(Vec<SequenceId>, Array)>) -> Result<Array> {
    if let Some((ids, tokens)) = previous
        && *ids == batch.rows
    {
        return Ok(tokens.clone());
    }
    let parts = batch
        .rows
        .iter()
        .map(
            |&id| match &batch.seqs[batch.index_of(id).expect("a row")].state {
                State::Decoding {
                    pending: Some(t), ..
                } => Ok(t.reshape(&[1])?),
                _ => previous_token(previous, id),
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Array> = parts.iter().collect();
    Ok(Array::concatenate(&refs, 0)?)
}

/// Sequence `id`'s token of the last batched step, `(1,)`.
fn previous_token(previous: Option<&(Vec<SequenceId>, Array)>, id: SequenceId) -> Result<Array> {
    let (ids, tokens) = previous.ok_or_else(|| Error::Model("a decoder without a token".into()))?;
    let j = ids
        .iter()
        .position(|&x| x == id)
        .ok_or_else(|| Error::Model("a decoder missing from the last step".into()))?
        as i32;
    Ok(tokens.slice_axis(0, j, j + 1)?)
}
