//! Requests a plugin submitted and has not yet collected: where their
//! outcomes arrive (from whichever thread ran them) and where the plugin's
//! `wait` and `wait-any` block, without ever outliving the run's deadline or
//! a Ctrl-C.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use imaging::RgbImage;

use crate::bindings::wit_engine::{ErrorKind, GenerateResponse, RequestError};

/// What a finished request gives the plugin.
pub type Outcome = Result<GenerateResponse, RequestError>;

/// Requests pending at once in one run, at most: a plugin that submits
/// without waiting is stopped here, not by the host's memory.
pub const MAX_PENDING: usize = 1024;

/// The plugin's handle on a submitted request (the WIT `pending` resource).
pub struct PendingHandle {
    pub id: u64,
}

/// Stops a request that is queued or running.
pub type CancelFn = Box<dyn FnOnce() + Send>;

/// One request's slot.
enum Slot {
    Running,
    Finished(Box<Outcome>),
    /// Its outcome went to the plugin already.
    Taken,
}

/// The outcomes of one run's requests, shared by the threads that run them
/// and the plugin's thread.
#[derive(Default)]
pub struct Completions {
    slots: Mutex<HashMap<u64, Slot>>,
    changed: Condvar,
}

/// Handed to the service with each request: finishing it reports the
/// outcome, once.
pub struct Completion {
    id: u64,
    hub: Arc<Completions>,
}

impl Completion {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn finish(self, outcome: Outcome) {
        let mut slots = lock(&self.hub.slots);
        // A slot the plugin dropped is gone: nobody will collect it.
        if let Some(slot) = slots.get_mut(&self.id) {
            *slot = Slot::Finished(Box::new(outcome));
        }
        drop(slots);
        self.hub.changed.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a wait ended without an outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The run was stopped (Ctrl-C or its deadline).
    Stopped,
}

/// How often a blocked wait looks at the run's stop flag.
const POLL: Duration = Duration::from_millis(10);

impl Completions {
    /// A new slot for request `id`.
    pub fn start(self: &Arc<Self>, id: u64) -> Completion {
        lock(&self.slots).insert(id, Slot::Running);
        Completion {
            id,
            hub: self.clone(),
        }
    }

    pub fn is_ready(&self, id: u64) -> bool {
        !matches!(lock(&self.slots).get(&id), Some(Slot::Running))
    }

    /// Forgets request `id` (its handle was dropped).
    pub fn forget(&self, id: u64) {
        lock(&self.slots).remove(&id);
    }

    /// Waits for request `id` and takes its outcome; a second call says it
    /// was taken.
    pub fn wait(&self, id: u64, stop: &AtomicBool) -> Result<Outcome, WaitError> {
        let mut slots = lock(&self.slots);
        loop {
            match slots.get_mut(&id) {
                None => return Ok(Err(error(ErrorKind::Invalid, "no such pending request"))),
                Some(Slot::Taken) => {
                    return Ok(Err(error(
                        ErrorKind::Invalid,
                        "this request's outcome was already returned by an earlier wait",
                    )));
                }
                Some(slot @ Slot::Finished(_)) => {
                    let Slot::Finished(outcome) = std::mem::replace(slot, Slot::Taken) else {
                        unreachable!("matched as finished")
                    };
                    return Ok(*outcome);
                }
                Some(Slot::Running) => {}
            }
            if stop.load(Ordering::SeqCst) {
                return Err(WaitError::Stopped);
            }
            slots = self
                .changed
                .wait_timeout(slots, POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until one of `ids` is no longer running, or `timeout` passed;
    /// the position in `ids` of the first such one. With no ids it waits out
    /// the timeout (a sleep on the host's clock), or returns at once without
    /// one.
    pub fn wait_any(
        &self,
        ids: &[u64],
        timeout: Option<Duration>,
        stop: &AtomicBool,
    ) -> Result<Option<usize>, WaitError> {
        let until = timeout.map(|t| Instant::now() + t);
        let mut slots = lock(&self.slots);
        loop {
            let ready = ids
                .iter()
                .position(|id| !matches!(slots.get(id), Some(Slot::Running)));
            // Nothing to wait for and no timeout: it would never end.
            if ready.is_some() || (ids.is_empty() && until.is_none()) {
                return Ok(ready);
            }
            if stop.load(Ordering::SeqCst) {
                return Err(WaitError::Stopped);
            }
            let mut wait = POLL;
            if let Some(until) = until {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                wait = wait.min(left);
            }
            slots = self
                .changed
                .wait_timeout(slots, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A request error of `kind` with no HTTP status and no row.
pub fn error(kind: ErrorKind, message: impl Into<String>) -> RequestError {
    RequestError {
        kind,
        message: message.into(),
        http_status: None,
        request_id: None,
    }
}

/// The run's pending requests as the host state keeps them: a way to cancel
/// each, and the images each holds (charged to the run's budget).
#[derive(Default)]
pub struct PendingSet {
    pub hub: Arc<Completions>,
    entries: HashMap<u64, Entry>,
    next_id: u64,
}

struct Entry {
    cancel: Option<CancelFn>,
    images: Vec<Arc<RgbImage>>,
}

impl PendingSet {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id the next request gets.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn insert(&mut self, id: u64, cancel: CancelFn, images: Vec<Arc<RgbImage>>) {
        self.entries.insert(
            id,
            Entry {
                cancel: Some(cancel),
                images,
            },
        );
    }

    /// Request `id`'s outcome went to the plugin: it no longer counts as
    /// pending or holds its images (returned), though its handle may live
    /// on until dropped.
    pub fn collected(&mut self, id: u64) -> Vec<Arc<RgbImage>> {
        self.entries
            .remove(&id)
            .map(|e| e.images)
            .unwrap_or_default()
    }

    /// Drops request `id`: cancelled if still running, forgotten either
    /// way. Returns the images it held.
    pub fn remove(&mut self, id: u64) -> Vec<Arc<RgbImage>> {
        let Some(mut e) = self.entries.remove(&id) else {
            return vec![];
        };
        if !self.hub.is_ready(id)
            && let Some(cancel) = e.cancel.take()
        {
            cancel();
        }
        self.hub.forget(id);
        e.images
    }

    /// Cancels every request still running (the run ended).
    pub fn cancel_all(&mut self) {
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
    }
}

impl Drop for PendingSet {
    fn drop(&mut self) {
        self.cancel_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: u64) -> GenerateResponse {
        use crate::bindings::wit_engine::Timings;
        GenerateResponse {
            request_id: id,
            text: String::new(),
            token_ids: vec![],
            prompt_tokens: 0,
            image_tokens: None,
            text_tokens: None,
            output_tokens: 0,
            finish_reason: "stop".into(),
            timings: Timings {
                queued_ms: None,
                preprocess_ms: None,
                vision_ms: None,
                prefill_ms: None,
                ttft_ms: 0.0,
                decode_ms: 0.0,
                total_ms: 0.0,
                chunks: vec![],
                sent_at_ms: 0.0,
                late_ms: 0.0,
            },
            cache: None,
            reused_tokens: None,
            peak_memory_bytes: None,
            first_logits: None,
        }
    }

    #[test]
    fn an_outcome_from_another_thread_wakes_the_waiter_once() {
        let hub = Arc::new(Completions::default());
        let done = hub.start(7);
        let stop = AtomicBool::new(false);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            done.finish(Ok(response(42)));
        });
        let got = hub.wait(7, &stop).unwrap().unwrap();
        assert_eq!(got.request_id, 42);
        t.join().unwrap();
        let again = hub.wait(7, &stop).unwrap().unwrap_err();
        assert!(again.message.contains("already returned"), "{again:?}");
    }

    #[test]
    fn wait_any_names_the_first_ready_and_times_out_otherwise() {
        let hub = Arc::new(Completions::default());
        let stop = AtomicBool::new(false);
        let _a = hub.start(1);
        let b = hub.start(2);
        let t = Some(Duration::from_millis(20));
        assert_eq!(hub.wait_any(&[1, 2], t, &stop), Ok(None));
        b.finish(Ok(response(2)));
        assert_eq!(hub.wait_any(&[1, 2], t, &stop), Ok(Some(1)));
        let slept = Instant::now();
        assert_eq!(hub.wait_any(&[], t, &stop), Ok(None));
        assert!(slept.elapsed() >= Duration::from_millis(20));
        assert_eq!(hub.wait_any(&[], None, &stop), Ok(None));
    }

    #[test]
    fn a_stopped_run_ends_a_wait_that_would_never_end() {
        let hub = Arc::new(Completions::default());
        let _running = hub.start(1);
        let stop = AtomicBool::new(true);
        assert_eq!(hub.wait(1, &stop).unwrap_err(), WaitError::Stopped);
        assert_eq!(
            hub.wait_any(&[1], None, &stop).unwrap_err(),
            WaitError::Stopped
        );
    }

    #[test]
    fn dropping_a_running_request_cancels_it_and_a_finished_one_does_not() {
        let mut set = PendingSet::default();
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let id = set.next_id();
        let _running = set.hub.start(id);
        set.insert(
            id,
            Box::new(move || flag.store(true, Ordering::SeqCst)),
            vec![],
        );
        assert!(set.remove(id).is_empty());
        assert!(cancelled.load(Ordering::SeqCst));

        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let id = set.next_id();
        let done = set.hub.start(id);
        set.insert(
            id,
            Box::new(move || flag.store(true, Ordering::SeqCst)),
            vec![],
        );
        done.finish(Ok(response(id)));
        set.remove(id);
        assert!(!cancelled.load(Ordering::SeqCst));
        assert!(set.is_empty());
    }

    #[test]
    fn a_collected_request_frees_its_place_and_a_second_wait_says_why() {
        let mut set = PendingSet::default();
        let id = set.next_id();
        let done = set.hub.start(id);
        set.insert(
            id,
            Box::new(|| panic!("a finished request is not cancelled")),
            vec![],
        );
        done.finish(Ok(response(id)));
        let stop = AtomicBool::new(false);
        assert!(set.hub.wait(id, &stop).unwrap().is_ok());
        set.collected(id);
        assert!(set.is_empty(), "it no longer counts against the cap");
        let again = set.hub.wait(id, &stop).unwrap().unwrap_err();
        assert!(again.message.contains("already returned"), "{again:?}");
        set.remove(id);
    }
}
