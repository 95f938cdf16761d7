//! The decode loop: each step queued one ahead of the host (the next step is
//! queued before the current token is read back), every token timed as it
//! reaches the host, until the output's length, an end-of-sequence token or
//! a cancellation.

use std::time::Instant;

use crate::decode::{Pending, Steps};
use crate::error::{Error, Result};
use crate::generate::{CancelToken, Event, FinishReason};
use crate::model::KvCache;

/// When the request started, for the times its events carry.
#[derive(Clone, Copy)]
pub(super) struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Seconds since the request started.
    pub fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// What the loop produced.
pub(super) struct Decoded {
    pub ids: Vec<u32>,
    /// When each token reached the host, in seconds since the start.
    pub times: Vec<f64>,
    pub finish: FinishReason,
}

/// The request's stopping rules.
pub(super) struct StopRules<'a> {
    pub max_tokens: usize,
    pub ignore_eos: bool,
    pub eos: &'a [u32],
}

/// Reads the first token (`first`, from the prefill) and decodes after it
/// through `steps` until `rules` say stop.
pub(super) fn decode(
    steps: &mut Steps<'_>,
    first: Pending,
    kv: &mut KvCache,
    rules: &StopRules<'_>,
    cancel: &CancelToken,
    clock: Clock,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Decoded> {
    let mut out = Decoded {
        ids: Vec::with_capacity(rules.max_tokens),
        times: Vec::with_capacity(rules.max_tokens),
        finish: FinishReason::Length,
    };
    let mut pending = first;
    loop {
        let more = out.ids.len() + 1 < rules.max_tokens;
        // The step runner's first token is ready once decoding starts: it is
        // read before the first step is queued, which would delay it.
        let read_first = steps.first_token_ready() && out.ids.is_empty();
        let mut next = None;
        if more && !read_first {
            next = Some(steps.queue(&pending, kv)?);
        }
        let id = steps.token(&pending)?;
        let now = clock.now();
        out.times.push(now);
        on_event(&Event::Token {
            index: out.ids.len(),
            id,
            at_s: now,
        });
        out.ids.push(id);
        if (!rules.ignore_eos && rules.eos.contains(&id)) || cancel.finish_requested() {
            out.finish = FinishReason::Stop;
            break;
        }
        if more && read_first {
            next = Some(steps.queue(&pending, kv)?);
        }
        match next {
            Some(p) => pending = p,
            None => break,
        }
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
    }
    Ok(out)
}
