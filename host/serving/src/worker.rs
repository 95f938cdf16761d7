//! The engine's thread: it takes requests from a bounded queue into the
//! engine's running batch (continuous batching: requests join and leave at
//! step boundaries), streams each one's text as it is decoded (stop strings
//! withheld until they can no longer match), and records each answered
//! request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use engine::prompt::TextTokenizer;
use engine::{
    Batch, BatchEvent, CancelToken, Engine, GenerateRequest, GenerateResponse, SequenceId,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::convert::{Prepared, stop_at};
use crate::metrics::Metrics;
use crate::wire::ApiError;

/// What the worker tells a request's handler.
#[derive(Debug)]
pub enum JobEvent {
    /// New output text.
    Text(String),
    /// The request finished: its whole text (cut at a stop string), the
    /// engine's response, and the seconds it waited in the queue first.
    Done {
        text: String,
        response: Box<GenerateResponse>,
        waited_s: f64,
    },
    Failed(ApiError),
}

/// Where a request's events go: a handler's channel, or any receiver that
/// takes them without blocking the engine's thread.
pub trait Sink: Send {
    fn send(&self, event: JobEvent);
}

impl Sink for UnboundedSender<JobEvent> {
    fn send(&self, event: JobEvent) {
        // A handler that went away cancelled its request already.
        let _ = UnboundedSender::send(self, event);
    }
}

/// Work for the engine's thread between two steps, with the engine.
pub type Control = Box<dyn FnOnce(&mut Engine) + Send>;

/// What the engine's thread takes from its queue.
enum Command {
    Job(Job),
    Control(Control),
}

/// Records an answered request: the request, its response and the seconds
/// it waited in the queue.
pub type Recorder = Box<dyn FnMut(&GenerateRequest, &GenerateResponse, f64) + Send>;

struct Job {
    /// Bytes of decoded pixels its images hold.
    image_bytes: u64,
    prepared: Prepared,
    events: Box<dyn Sink>,
    /// Set when the client went away.
    abandoned: Arc<AtomicBool>,
    /// Stops the request in the batch (cancel), or ends it at a stop string
    /// (finish early).
    cancel: CancelToken,
    queued: Instant,
}

/// How the engine's thread batches requests.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Sequences decoded together at most.
    pub max_batch: usize,
    /// Prompt tokens one step prefills at most beside the running streams.
    pub prefill_chunk: usize,
    /// Requests waiting for the engine at most.
    pub queue: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_batch: 32,
            prefill_chunk: 256,
            queue: 64,
        }
    }
}

/// The handle requests are submitted through.
pub struct Worker {
    queue: SyncSender<Command>,
    pub metrics: Arc<Metrics>,
    /// Decoded image bytes of the requests waiting or running.
    pending_image_bytes: Arc<AtomicU64>,
}

/// Decoded image bytes the queue may hold together: past it, requests with
/// images get a 429 until some finish.
pub const PENDING_IMAGE_BYTES: u64 = 2 << 30;

/// Cancels its request when dropped before the request ended (the client
/// disconnected): skipped if still queued, stopped if running.
pub struct Ticket {
    abandoned: Arc<AtomicBool>,
    cancel: CancelToken,
    done: bool,
}

impl Ticket {
    /// The request ended; dropping the ticket now cancels nothing.
    pub fn complete(&mut self) {
        self.done = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.abandoned.store(true, Ordering::SeqCst);
            self.cancel.cancel();
        }
    }
}

impl Worker {
    /// Starts the engine's thread, batching as `limits` say. `load` runs on
    /// that thread (MLX's streams belong to the thread that made them): it
    /// loads the engine and says how to record requests; its third value
    /// comes back to the caller once loaded.
    pub fn start<T: Send + 'static>(
        load: impl FnOnce() -> Result<(Engine, Recorder, T), String> + Send + 'static,
        limits: BatchLimits,
    ) -> Result<(Worker, T), String> {
        let (tx, rx) = sync_channel(limits.queue.max(1));
        let metrics = Arc::new(Metrics::default());
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let pending_image_bytes = Arc::new(AtomicU64::new(0));
        {
            let metrics = metrics.clone();
            let pending = pending_image_bytes.clone();
            std::thread::Builder::new()
                .name("engine".into())
                .spawn(move || match load() {
                    Ok((engine, record, value)) => {
                        let _ = loaded_tx.send(Ok(value));
                        let batch = Batch::new(limits.max_batch, limits.prefill_chunk);
                        Serving {
                            engine,
                            batch,
                            limits,
                            active: HashMap::new(),
                            metrics,
                            pending_image_bytes: pending,
                            record,
                        }
                        .serve(rx);
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                    }
                })
                .map_err(|e| format!("cannot start the engine's thread: {e}"))?;
        }
        let value = loaded_rx
            .recv()
            .map_err(|_| "the engine's thread stopped while loading".to_string())??;
        let worker = Worker {
            queue: tx,
            metrics,
            pending_image_bytes,
        };
        Ok((worker, value))
    }

    /// Runs `work` on the engine's thread between two steps and returns its
    /// result; waits for room in the queue.
    pub fn control<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> Result<R, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let command = Command::Control(Box::new(move |engine| {
            let _ = tx.send(work(engine));
        }));
        self.queue
            .send(command)
            .map_err(|_| "the engine has stopped".to_string())?;
        rx.recv()
            .map_err(|_| "the engine stopped before answering".to_string())
    }

    /// Queues `prepared`; its events go to `events`. A full queue is a 429.
    pub fn submit(
        &self,
        prepared: Prepared,
        events: impl Sink + 'static,
    ) -> Result<Ticket, ApiError> {
        let image_bytes: u64 = prepared
            .request
            .images
            .iter()
            .map(|i| i.pixels.len() as u64)
            .sum();
        let held = self
            .pending_image_bytes
            .fetch_add(image_bytes, Ordering::SeqCst);
        if image_bytes > 0 && held + image_bytes > PENDING_IMAGE_BYTES {
            self.pending_image_bytes
                .fetch_sub(image_bytes, Ordering::SeqCst);
            self.metrics.rejected.fetch_add(1, Ordering::SeqCst);
            return Err(ApiError {
                status: 429,
                message: format!(
                    "the server holds {} MiB of images waiting for the engine; retry shortly",
                    held >> 20
                ),
                kind: "rate_limit_error",
                param: None,
            });
        }
        let abandoned = Arc::new(AtomicBool::new(false));
        let cancel = CancelToken::new();
        let job = Job {
            image_bytes,
            prepared,
            events: Box::new(events),
            abandoned: abandoned.clone(),
            cancel: cancel.clone(),
            queued: Instant::now(),
        };
        self.metrics.queued.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(Command::Job(job)) {
            Ok(()) => Ok(Ticket {
                abandoned,
                cancel,
                done: false,
            }),
            Err(e) => {
                self.pending_image_bytes
                    .fetch_sub(image_bytes, Ordering::SeqCst);
                self.metrics.queued.fetch_sub(1, Ordering::SeqCst);
                self.metrics.rejected.fetch_add(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => ApiError {
                        status: 429,
                        message: "the server's queue is full; retry shortly".into(),
                        kind: "rate_limit_error",
                        param: None,
                    },
                    TrySendError::Disconnected(_) => ApiError {
                        status: 503,
                        message: "the engine has stopped".into(),
                        kind: "server_error",
                        param: None,
                    },
                })
            }
        }
    }
}

/// A request in the running batch.
struct Active {
    job: Job,
    text: Text,
    /// Seconds it waited in the queue.
    waited: f64,
    /// Gives its image bytes back when it leaves.
    _release: Release,
}

/// The engine's thread: the batch and the requests in it.
struct Serving {
    engine: Engine,
    batch: Batch,
    limits: BatchLimits,
    active: HashMap<SequenceId, Active>,
    metrics: Arc<Metrics>,
    pending_image_bytes: Arc<AtomicU64>,
    record: Recorder,
}

impl Serving {
    /// Runs until the queue's senders are gone: between two steps, one
    /// waiting request joins the batch (its tokenizing and image staging
    /// run then; the engine spreads its encoding and prefill over the
    /// steps that follow).
    fn serve(mut self, rx: Receiver<Command>) {
        // A request taken from the queue that the batch had no room for,
        // and the batch's size then: it is tried again once the batch is
        // smaller.
        let mut waiting: Option<(Job, usize)> = None;
        loop {
            let command = match waiting.take() {
                Some((job, size)) if self.batch.len() < size => Some(Command::Job(job)),
                // Controls too wait behind it: the queue keeps its order.
                Some(held) => {
                    waiting = Some(held);
                    None
                }
                None if self.batch.is_empty() => match rx.recv() {
                    Ok(command) => Some(command),
                    Err(_) => return,
                },
                None => rx.try_recv().ok(),
            };
            let job = match command {
                Some(Command::Control(work)) => {
                    work(&mut self.engine);
                    None
                }
                Some(Command::Job(job)) => Some(job),
                None => None,
            };
            let job = job.map(|j| self.dequeued(j));
            let job = match job {
                Some(job) if job.prepared.alone && self.batch.is_empty() => {
                    self.alone(job);
                    None
                }
                other => other,
            };
            if let Some(job) = job
                && let Some(job) = self.join(job)
            {
                if self.batch.is_empty() {
                    // Refused by an empty batch: it could never run.
                    self.fail(
                        job,
                        engine::Error::Model("no room in an empty batch".into()),
                    );
                } else {
                    waiting = Some((job, self.batch.len()));
                }
            }
            if !self.batch.is_empty() {
                self.step();
            }
        }
    }

    fn dequeued(&self, job: Job) -> Job {
        self.metrics.queued.fetch_sub(1, Ordering::SeqCst);
        job
    }

    /// Runs `job` by itself on the single-stream path (the batch is empty).
    fn alone(&mut self, job: Job) {
        if job.abandoned.load(Ordering::SeqCst) {
            self.metrics.cancelled.fetch_add(1, Ordering::SeqCst);
            self.release(job.image_bytes);
            return;
        }
        let waited = job.queued.elapsed().as_secs_f64();
        self.metrics.running.store(1, Ordering::SeqCst);
        let result = self.engine.generate(&job.prepared.request, &mut |_| {});
        self.metrics.running.store(0, Ordering::SeqCst);
        self.release(job.image_bytes);
        match result {
            Ok(response) => {
                let outcome = (response.text.clone(), response);
                self.metrics
                    .after_request(&self.engine.cache_stats(), Some(&outcome));
                let (text, response) = outcome;
                (self.record)(&job.prepared.request, &response, waited);
                job.events.send(JobEvent::Done {
                    text,
                    response: Box::new(response),
                    waited_s: waited,
                });
            }
            Err(e) => self.fail(job, e),
        }
    }

    /// Adds `job` to the batch; gives it back when there is no room now.
    fn join(&mut self, job: Job) -> Option<Job> {
        if job.abandoned.load(Ordering::SeqCst) {
            self.metrics.cancelled.fetch_add(1, Ordering::SeqCst);
            self.release(job.image_bytes);
            return None;
        }
        let added =
            self.engine
                .batch_add(&mut self.batch, &job.prepared.request, job.cancel.clone());
        match added {
            Ok(Some(seq)) => {
                let waited = job.queued.elapsed().as_secs_f64();
                let release = Release(self.pending_image_bytes.clone(), job.image_bytes);
                self.active.insert(
                    seq,
                    Active {
                        job,
                        text: Text::default(),
                        waited,
                        _release: release,
                    },
                );
                self.show_batch();
                None
            }
            Ok(None) => Some(job),
            Err(e) => {
                self.fail(job, e);
                None
            }
        }
    }

    /// One step of the batch, and what it tells the requests.
    fn step(&mut self) {
        let events = match self.engine.batch_step(&mut self.batch) {
            Ok(events) => events,
            Err(e) => {
                // The device failed mid-step: every request in the batch ends.
                self.batch = Batch::new(self.limits.max_batch, self.limits.prefill_chunk);
                let message = e.to_string();
                for (_, a) in self.active.drain() {
                    self.metrics.failed.fetch_add(1, Ordering::SeqCst);
                    a.job
                        .events
                        .send(JobEvent::Failed(engine_error(engine::Error::Model(
                            message.clone(),
                        ))));
                }
                self.show_batch();
                return;
            }
        };
        let tokenizer = &self.engine.prompts().tokenizer;
        for ev in events {
            match ev {
                BatchEvent::Token { seq, id, .. } => {
                    let Some(a) = self.active.get_mut(&seq) else {
                        continue;
                    };
                    a.on_token(tokenizer, id);
                }
                BatchEvent::Done { seq, response } => {
                    let Some(mut a) = self.active.remove(&seq) else {
                        continue;
                    };
                    let outcome = a.finish().map(|text| (text, *response));
                    self.metrics
                        .after_request(&self.engine.cache_stats(), outcome.as_ref().ok());
                    match outcome {
                        Ok((text, response)) => {
                            (self.record)(&a.job.prepared.request, &response, a.waited);
                            a.job.events.send(JobEvent::Done {
                                text,
                                response: Box::new(response),
                                waited_s: a.waited,
                            });
                        }
                        Err(e) => {
                            self.metrics.failed.fetch_add(1, Ordering::SeqCst);
                            a.job.events.send(JobEvent::Failed(e));
                        }
                    }
                }
                BatchEvent::Cancelled { seq } => {
                    if let Some(a) = self.active.remove(&seq) {
                        self.metrics.cancelled.fetch_add(1, Ordering::SeqCst);
                        a.job
                            .events
                            .send(JobEvent::Failed(engine_error(engine::Error::Cancelled)));
                    }
                }
            }
        }
        self.show_batch();
    }

    fn fail(&self, job: Job, e: engine::Error) {
        self.release(job.image_bytes);
        if job.abandoned.load(Ordering::SeqCst) {
            self.metrics.cancelled.fetch_add(1, Ordering::SeqCst);
        } else {
            self.metrics.failed.fetch_add(1, Ordering::SeqCst);
        }
        self.metrics.after_request(&self.engine.cache_stats(), None);
        job.events.send(JobEvent::Failed(engine_error(e)));
    }

    fn release(&self, bytes: u64) {
        self.pending_image_bytes.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// The batch's size and memory, for `/metrics`.
    fn show_batch(&self) {
        let m = &self.metrics;
        let decoding = self.batch.decoding() as u64;
        m.running.store(self.batch.len() as u64, Ordering::SeqCst);
        m.decoding.store(decoding, Ordering::SeqCst);
        m.decoding_peak.fetch_max(decoding, Ordering::SeqCst);
        m.batch_bytes
            .store(self.batch.held_bytes(), Ordering::SeqCst);
        m.steps.store(self.batch.steps(), Ordering::SeqCst);
    }
}

impl Active {
    /// Streams what token `id` adds to the text; a stop string ends the
    /// request after this token.
    fn on_token(&mut self, tokenizer: &TextTokenizer, id: u32) {
        if self.text.stopped || self.text.failed.is_some() {
            return;
        }
        let stops = &self.job.prepared.stop;
        let hold = stops.iter().map(|s| s.len()).max().unwrap_or(1) - 1;
        match self.text.push(tokenizer, id, stops, hold) {
            Ok(Some(new)) => {
                self.job.events.send(JobEvent::Text(new));
            }
            Ok(None) => {}
            Err(e) => {
                self.text.failed = Some(e);
                self.job.cancel.cancel();
            }
        }
        if self.text.stopped {
            self.job.cancel.finish_early();
        }
    }

    /// The whole text sent, after what was held back for a stop string
    /// that never came.
    fn finish(&mut self) -> Result<String, ApiError> {
        if let Some(e) = self.text.failed.take() {
            return Err(e);
        }
        if let Some(rest) = self.text.flush() {
            self.job.events.send(JobEvent::Text(rest));
        }
        Ok(std::mem::take(&mut self.text.sent))
    }
}

/// Gives back a request's image bytes when dropped.
struct Release(Arc<AtomicU64>, u64);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// The output text as tokens arrive: decoded where characters are whole,
/// sent up to where a stop string might still begin.
#[derive(Default)]
struct Text {
    ids: Vec<u32>,
    /// The first id not yet decoded into `full`.
    pending: usize,
    full: String,
    sent: String,
    stopped: bool,
    /// Decoding the text failed; the request ends with this error.
    failed: Option<ApiError>,
}

impl Text {
    /// Adds token `id`; returns the text that may be sent now.
    fn push(
        &mut self,
        tokenizer: &TextTokenizer,
        id: u32,
        stops: &[String],
        hold: usize,
    ) -> Result<Option<String>, ApiError> {
        self.ids.push(id);
        let piece = tokenizer
            .decode(&self.ids[self.pending..], true)
            .map_err(engine_error)?;
        // A character split across tokens decodes as U+FFFD until whole.
        if piece.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        self.full.push_str(&piece);
        self.pending = self.ids.len();
        let end = match stop_at(&self.full, stops) {
            Some(at) => {
                self.stopped = true;
                at
            }
            None => floor_char_boundary(&self.full, self.full.len().saturating_sub(hold)),
        };
        Ok(self.take_until(end))
    }

    fn flush(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        let end = self.full.len();
        self.take_until(end)
    }

    fn take_until(&mut self, end: usize) -> Option<String> {
        let start = self.sent.len();
        if end <= start {
            return None;
        }
        let new = self.full[start..end].to_string();
        self.sent.push_str(&new);
        Some(new)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The engine's errors as API errors: the request's own faults are 400s.
fn engine_error(e: engine::Error) -> ApiError {
    match e {
        engine::Error::Request(m) => ApiError::invalid(m, None),
        engine::Error::Cancelled => ApiError {
            status: 499,
            message: "the request was cancelled".into(),
            kind: "cancelled",
            param: None,
        },
        other => ApiError {
            status: 500,
            message: other.to_string(),
            kind: "server_error",
            param: None,
        },
    }
}
