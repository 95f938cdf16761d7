//! One request's decoding through the [`StepDecoder`]: the prefill's token
//! and position handed to the device, then a launch list per step, the
//! token of each read back through a page-locked slot.

use mlx::cuda::{Arg, Held, StepRunner};
use mlx::{Array, Dtype};

use super::{Key, StepDecoder};
use crate::error::{Error, Result};
use crate::kernels::attention;
use crate::model::kv_cache::KvCache;

/// One request's decoding (borrows the decoder for its length).
pub(crate) struct StepSession<'a> {
    decoder: &'a mut StepDecoder,
    /// Each layer's caches as held, and their capacity; held anew when
    /// they grow, released when the request ends.
    caches: Vec<(Held, Held)>,
    cap: i32,
    next_slot: usize,
}

impl<'a> StepSession<'a> {
    /// Starts decoding after the prefill's `token` (a `u32` scalar) with the
    /// cache holding `kv.len()` positions and the next RoPE position `pos`.
    /// Waits for the prefill to finish.
    pub(crate) fn start(
        decoder: &'a mut StepDecoder,
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
        let b = decoder.buffers;
        let r = &mut decoder.runner;
        let first = r.hold(token)?;
        r.copy(b.tok, first, 4)?;
        r.upload(b.meta, &meta)?;
        // The last request's argmax: the first step takes `tok`.
        r.upload(b.pick, &[0; 8])?;
        // The token's buffer is MLX's: done with it before returning.
        r.release(first)?;
        r.synchronize()?;
        Ok(StepSession {
            decoder,
            caches: Vec::new(),
            cap: 0,
            next_slot: 0,
        })
    }

    /// Holds each layer's caches for writing, anew when they are new or
    /// grow (growing copies the cached rows on MLX's stream: the steps that
    /// wrote them must be done first).
    fn hold_caches(&mut self, kv: &mut KvCache) -> Result<()> {
        let grows = kv.layers.iter().any(|l| l.write_needs_new_buffers());
        if !self.caches.is_empty() && !grows {
            return Ok(());
        }
        let r = &mut self.decoder.runner;
        r.synchronize()?;
        let mut bufs = Vec::with_capacity(kv.layers.len());
        for lc in &mut kv.layers {
            let (k, v) = lc.buffers_for_write()?;
            bufs.push((k.clone(), v.clone()));
        }
        let all: Vec<&Array> = bufs.iter().flat_map(|(k, v)| [k, v]).collect();
        mlx::eval(&all)?;
        for (k, v) in self.caches.drain(..) {
            r.release(k)?;
            r.release(v)?;
        }
        for (k, v) in &bufs {
            self.caches.push((r.hold(k)?, r.hold(v)?));
        }
        // Every layer's caches have the same capacity.
        self.cap = bufs.first().map_or(0, |(k, _)| k.dim(2));
        Ok(())
    }

    /// Queues the next step (its token is read with [`StepSession::token`]
    /// from the returned slot) and counts its position in `kv`.
    pub(crate) fn queue(&mut self, kv: &mut KvCache) -> Result<usize> {
        self.hold_caches(kv)?;
        let (cap, slot) = (self.cap, self.next_slot);
        let d = &mut *self.decoder;
        let (attention_key, attention_dims) = if let Some(c) = d.cluster_for(cap) {
            let key = Key::ClusterAttention(c);
            let mut dims = d.kernels[&key].1;
            dims.shared_bytes = attention::cluster_shared_bytes(d.heads, d.dtype, c, cap);
            (key, dims)
        } else {
            let key = Key::Attention(attention::step_splits(kv.len()));
            d.kernel(key)?;
            (key, d.kernels[&key].1)
        };
        let b = d.buffers;
        let StepDecoder {
            runner,
            kernels,
            layers,
            embed,
            head,
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
        let mut add = |key: Key, pdl: bool, args: &[Arg]| -> Result<()> {
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
            let base = t.place(key, dims.blocks)?;
            let mut all = args.to_vec();
            all.extend([Arg::Array(t.buf), Arg::Int(u64::from(base))]);
            Ok(runner.add(kernel, *dims, pdl, &all)?)
        };
        let a = Arg::Array;
        let [ew, es, eb] = embed.args();
        add(
            Key::Embed,
            false,
            &[a(b.tok), ew, es, eb, a(b.h0), a(b.pick)],
        )?;
        for (l, &(kc, vc)) in layers.iter().zip(&self.caches) {
            let [w, s, bi] = l.qkv.args();
            add(
                Key::Qkv,
                *pdl,
                &[a(b.h0), a(l.input_norm), w, s, bi, a(b.qkv)],
            )?;
            let front = [a(b.qkv), a(l.q_norm), a(l.k_norm), a(kc), a(vc), a(b.meta)];
            let cap_arg = Arg::Int(cap as u64);
            if matches!(attention_key, Key::ClusterAttention(_)) {
                let args: Vec<Arg> = front.into_iter().chain([a(b.attn), cap_arg]).collect();
                add(attention_key, *pdl, &args)?;
            } else {
                let rest = [a(*counters), a(b.part), a(b.attn), cap_arg];
                let args: Vec<Arg> = front.into_iter().chain(rest).collect();
                add(attention_key, *pdl, &args)?;
            }
            let [w, s, bi] = l.o.args();
            add(Key::O, *pdl, &[a(b.attn), w, s, bi, a(b.h0), a(b.h1)])?;
            let [w, s, bi] = l.gate_up.args();
            add(
                Key::GateUp,
                *pdl,
                &[a(b.h1), a(l.post_norm), w, s, bi, a(b.act)],
            )?;
            let [w, s, bi] = l.down.args();
            add(Key::Down, *pdl, &[a(b.act), w, s, bi, a(b.h1), a(b.h0)])?;
        }
        let [w, s, bi] = head.args();
        let head_args = [
            a(b.h0),
            a(*final_norm),
            w,
            s,
            bi,
            a(b.logits),
            a(b.meta),
            a(b.pick),
        ];
        add(Key::Head, *pdl, &head_args)?;
        runner.launch()?;
        // The low half of the head's argmax key (`token` decodes it).
        runner.read_u32(b.pick, slot)?;
        self.next_slot = (slot + 1) % StepRunner::SLOTS;
        for lc in &mut kv.layers {
            lc.advance(1);
        }
        Ok(slot)
    }

    /// The token of the step queued with `slot` (waits for it).
    pub(crate) fn token(&mut self, slot: usize) -> Result<u32> {
        // The key's low half is `u32::MAX -` the token (`qmv4_pick_key`).
        Ok(u32::MAX - self.decoder.runner.slot(slot)?)
    }

    /// Waits for every queued step and lets go of the caches, so that MLX
    /// may read them and free them (and writes the last step's timeline when
    /// asked: a failure to is a warning, the request stands).
    pub(crate) fn finish(mut self) -> Result<()> {
        self.end()?;
        let d = &mut *self.decoder;
        if let Some(t) = d.timeline.as_mut()
            && let Err(e) = t.write(&mut d.runner)
        {
            eprintln!("warning: step timeline not written: {e}");
        }
        Ok(())
    }

    /// Releases the caches once every queued step has run.
    fn end(&mut self) -> Result<()> {
        let r = &mut self.decoder.runner;
        for (k, v) in self.caches.drain(..) {
            r.release(k)?;
            r.release(v)?;
        }
        Ok(r.synchronize()?)
    }
}

impl Drop for StepSession<'_> {
    /// A session left early (an error, a cancelled request) still waits for
    /// its steps: they write into caches that are freed after it.
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            eprintln!("warning: waiting for the decoding steps: {e}");
        }
    }
}
