//! The engine's thread: it takes requests from a bounded queue, one at a
//! time, streams their text as it is decoded (stop strings withheld until
//! they can no longer match), and records each answered request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::prompt::TextTokenizer;
use engine::{CancelToken, Engine, Event, GenerateRequest, GenerateResponse};
use tokio::sync::mpsc::UnboundedSender;

use crate::convert::{Prepared, stop_at};
use crate::metrics::Metrics;
use crate::wire::ApiError;

/// What the worker tells a request's handler.
#[derive(Debug)]
pub enum JobEvent {
    /// New output text.
    Text(String),
    /// The request finished: its whole text (cut at a stop string) and the
    /// engine's response.
    Done {
        text: String,
        response: Box<GenerateResponse>,
    },
    Failed(ApiError),
}

/// Records an answered request: the request, its response and the seconds
/// it waited in the queue.
pub type Recorder = Box<dyn FnMut(&GenerateRequest, &GenerateResponse, f64) + Send>;

struct Job {
    id: u64,
    /// Bytes of decoded pixels its images hold.
    image_bytes: u64,
    prepared: Prepared,
    events: UnboundedSender<JobEvent>,
    /// Set when the client went away.
    abandoned: Arc<AtomicBool>,
    queued: Instant,
}

/// The handle requests are submitted through.
pub struct Worker {
    queue: SyncSender<Job>,
    next_id: AtomicU64,
    /// The job the engine is running, and the engine's cancel token.
    running: Arc<Mutex<Option<u64>>>,
    cancel: CancelToken,
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
    id: u64,
    abandoned: Arc<AtomicBool>,
    running: Arc<Mutex<Option<u64>>>,
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
        if self.done {
            return;
        }
        self.abandoned.store(true, Ordering::SeqCst);
        let running = self.running.lock().expect("running lock");
        if *running == Some(self.id) {
            self.cancel.cancel();
        }
    }
}

impl Worker {
    /// Starts the engine's thread with a queue of `queue_len` requests.
    /// `load` runs on that thread (MLX's streams belong to the thread that
    /// made them): it loads the engine and says how to record requests; its
    /// third value comes back to the caller once loaded.
    pub fn start<T: Send + 'static>(
        load: impl FnOnce() -> Result<(Engine, Recorder, T), String> + Send + 'static,
        queue_len: usize,
    ) -> Result<(Worker, T), String> {
        let (tx, rx) = sync_channel(queue_len.max(1));
        let running = Arc::new(Mutex::new(None));
        let metrics = Arc::new(Metrics::default());
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let pending_image_bytes = Arc::new(AtomicU64::new(0));
        {
            let (running, metrics) = (running.clone(), metrics.clone());
            let pending = pending_image_bytes.clone();
            std::thread::Builder::new()
                .name("engine".into())
                .spawn(move || match load() {
                    Ok((engine, record, value)) => {
                        let cancel = engine.cancel_token();
                        cancel.reset();
                        let _ = loaded_tx.send(Ok((cancel, value)));
                        serve(engine, rx, running, metrics, pending, record);
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                    }
                })
                .map_err(|e| format!("cannot start the engine's thread: {e}"))?;
        }
        let (cancel, value) = loaded_rx
            .recv()
            .map_err(|_| "the engine's thread stopped while loading".to_string())??;
        let worker = Worker {
            queue: tx,
            next_id: AtomicU64::new(1),
            running,
            cancel,
            metrics,
            pending_image_bytes,
        };
        Ok((worker, value))
    }

    /// Queues `prepared`; its events go to `events`. A full queue is a 429.
    pub fn submit(
        &self,
        prepared: Prepared,
        events: UnboundedSender<JobEvent>,
    ) -> Result<Ticket, ApiError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
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
        let job = Job {
            id,
            image_bytes,
            prepared,
            events,
            abandoned: abandoned.clone(),
            queued: Instant::now(),
        };
        self.metrics.queued.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(job) {
            Ok(()) => Ok(Ticket {
                id,
                abandoned,
                running: self.running.clone(),
                cancel: self.cancel.clone(),
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

fn serve(
    mut engine: Engine,
    rx: Receiver<Job>,
    running: Arc<Mutex<Option<u64>>>,
    metrics: Arc<Metrics>,
    pending_image_bytes: Arc<AtomicU64>,
    mut record: Recorder,
) {
    let cancel = engine.cancel_token();
    // Cloned once: requests decode their text beside the engine's run.
    let tokenizer = engine.prompts().tokenizer.clone();
    while let Ok(job) = rx.recv() {
        metrics.queued.fetch_sub(1, Ordering::SeqCst);
        // Released when this turn ends, however it ends.
        let _release = Release(&pending_image_bytes, job.image_bytes);
        if job.abandoned.load(Ordering::SeqCst) {
            metrics.cancelled.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        *running.lock().expect("running lock") = Some(job.id);
        metrics.running.store(1, Ordering::SeqCst);
        let waited = job.queued.elapsed().as_secs_f64();
        let outcome = run(&mut engine, &tokenizer, &job);
        {
            let mut r = running.lock().expect("running lock");
            *r = None;
            cancel.reset();
        }
        metrics.running.store(0, Ordering::SeqCst);
        metrics.after_request(&engine.cache_stats(), outcome.as_ref().ok());
        match outcome {
            Ok((text, response)) => {
                record(&job.prepared.request, &response, waited);
                let _ = job.events.send(JobEvent::Done {
                    text,
                    response: Box::new(response),
                });
            }
            Err(e) => {
                if job.abandoned.load(Ordering::SeqCst) {
                    metrics.cancelled.fetch_add(1, Ordering::SeqCst);
                } else {
                    metrics.failed.fetch_add(1, Ordering::SeqCst);
                }
                let _ = job.events.send(JobEvent::Failed(e));
            }
        }
    }
}

/// Gives back a job's image bytes when dropped.
struct Release<'a>(&'a AtomicU64, u64);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// Runs one job, sending its text as it comes.
fn run(
    engine: &mut Engine,
    tokenizer: &TextTokenizer,
    job: &Job,
) -> Result<(String, GenerateResponse), ApiError> {
    let stops = &job.prepared.stop;
    let hold = stops.iter().map(|s| s.len()).max().unwrap_or(1) - 1;
    let cancel = engine.cancel_token();
    let mut text = Text::default();
    let mut failed = None;
    let mut on_event = |ev: &Event| {
        let Event::Token { id, .. } = ev else {
            return;
        };
        if text.stopped {
            return;
        }
        match text.push(tokenizer, *id, stops, hold) {
            Ok(Some(new)) => {
                let _ = job.events.send(JobEvent::Text(new));
            }
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
        if text.stopped {
            cancel.finish_early();
        }
    };
    let response = engine
        .generate(&job.prepared.request, &mut on_event)
        .map_err(engine_error)?;
    if let Some(e) = failed {
        return Err(e);
    }
    // What was held back for a stop string that never came.
    if let Some(rest) = text.flush() {
        let _ = job.events.send(JobEvent::Text(rest));
    }
    Ok((text.sent, response))
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
