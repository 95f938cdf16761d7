//! The host's own engine as a run's backend: requests go to the engine's
//! thread (the serving worker), which runs a `generate` alone on the
//! single-stream path when nothing else is in flight and batches submitted
//! requests continuously. Finished requests are recorded on a thread of
//! their own, so the store never holds up the engine between steps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{CancelToken, Engine};
use runtime::bindings::wit_engine as w;
use runtime::{CancelFn, Completion, EngineService, ServiceError, Submission};
use serving::convert::Prepared;
use serving::wire::ApiError;
use serving::{BatchLimits, JobEvent, Sink, Ticket, Worker};

use super::convert;
use super::record::{Answer, Recorder, asked_row, error};

/// The engine's thread, the model it loaded, and where outcomes go.
pub struct LocalEngine {
    worker: Arc<Worker>,
    info: w::ModelInfo,
    to_recorder: Sender<Msg>,
    /// The recording thread's end, until it starts.
    from_requests: Option<Receiver<Msg>>,
}

/// What the recording thread is told: a request about to start, or an
/// event of one that started.
enum Msg {
    Started(u64, Box<Started>),
    Event(u64, JobEvent),
}

/// A request on its way through the engine, as recording needs it.
struct Started {
    done: Completion,
    request: w::GenerateRequest,
    images: Vec<Arc<imaging::RgbImage>>,
    engine_request: engine::GenerateRequest,
    started_at: String,
    sent_at_ms: f64,
    late_ms: f64,
}

/// Forwards a request's events to the recording thread (its text pieces
/// are not needed: the response carries the whole text).
struct ToRecorder {
    id: u64,
    tx: Sender<Msg>,
}

impl Sink for ToRecorder {
    fn send(&self, event: JobEvent) {
        if !matches!(event, JobEvent::Text(_)) {
            let _ = self.tx.send(Msg::Event(self.id, event));
        }
    }
}

impl LocalEngine {
    /// Starts the engine's thread, where `load` loads the model (MLX's
    /// streams belong to the thread that made them); returns the engine's
    /// description and its cancel token too.
    pub fn start(
        load: impl FnOnce() -> Result<Engine, String> + Send + 'static,
        limits: BatchLimits,
        device: &str,
    ) -> anyhow::Result<(LocalEngine, engine::ModelInfo, CancelToken)> {
        let load = move || {
            let engine = load()?;
            let info = engine.info().clone();
            let cancel = engine.cancel_token();
            // Rows are recorded by the run's own recorder, with the plugin's labels.
            let ignore: serving::Recorder = Box::new(|_, _, _| {});
            Ok((engine, ignore, (info, cancel)))
        };
        let (worker, (minfo, cancel)) = Worker::start(load, limits).map_err(anyhow::Error::msg)?;
        let (tx, rx) = channel();
        let info = convert::model_info(&minfo, device);
        Ok((
            LocalEngine {
                worker: Arc::new(worker),
                info,
                to_recorder: tx,
                from_requests: Some(rx),
            },
            minfo,
            cancel,
        ))
    }

    /// Starts recording finished requests with `recorder` (once the run's
    /// row exists).
    pub fn record_into(&mut self, recorder: Recorder) -> anyhow::Result<()> {
        if let Some(rx) = self.from_requests.take() {
            std::thread::Builder::new()
                .name("recorder".into())
                .spawn(move || record_loop(rx, recorder))?;
        }
        Ok(())
    }

    /// A telemetry source: MLX's allocator, read on the engine's thread
    /// between two steps (where MLX's state is the engine's own).
    pub fn memory_source(&self) -> telemetry::Source {
        let worker = self.worker.clone();
        Box::new(move || {
            let m = worker.control(|_| mlx::memory_stats()).ok()?;
            Some(vec![
                ("mlx.active_bytes".into(), m.active as f64),
                // Since the current (or last) request began.
                ("mlx.peak_bytes".into(), m.peak as f64),
                ("mlx.cache_bytes".into(), m.cache as f64),
            ])
        })
    }

    fn control<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> Result<R, String> {
        self.worker.control(work)
    }
}

/// Records each request as its outcome arrives.
fn record_loop(rx: Receiver<Msg>, recorder: Recorder) {
    let mut started: HashMap<u64, Box<Started>> = HashMap::new();
    for msg in rx {
        match msg {
            Msg::Started(id, s) => {
                started.insert(id, s);
            }
            Msg::Event(id, event) => {
                let Some(s) = started.remove(&id) else {
                    continue;
                };
                finish(&recorder, *s, event);
            }
        }
    }
}

fn finish(recorder: &Recorder, s: Started, event: JobEvent) {
    match event {
        JobEvent::Done {
            response, waited_s, ..
        } => {
            let mut row = convert::request_row(
                &s.request,
                &s.images,
                &s.engine_request,
                &response,
                s.started_at,
            );
            // Time behind other requests counts, as a client would see it.
            let queued_ms = waited_s * 1e3;
            row.queued_ms = Some(queued_ms);
            row.ttft_ms += queued_ms;
            row.total_ms += queued_ms;
            for t in &mut row.token_times_ms {
                *t += queued_ms;
            }
            row.sent_at_ms = Some(s.sent_at_ms);
            row.late_ms = Some(s.late_ms);
            let r = *response;
            let answer = Answer {
                text: r.text,
                token_ids: r.token_ids,
                first_logits: r.first_logits,
                prefix: Some(convert::prefix(r.cache.prefix)),
                reused_tokens: None,
            };
            recorder.answered(s.done, row, answer);
        }
        JobEvent::Failed(e) => {
            let mut row = asked_row(&s.request, &s.images, s.started_at, false);
            row.sent_at_ms = Some(s.sent_at_ms);
            row.late_ms = Some(s.late_ms);
            recorder.failed(s.done, row, api_error(e));
        }
        JobEvent::Text(_) => {}
    }
}

/// The worker's API errors as request errors.
fn api_error(e: ApiError) -> w::RequestError {
    let kind = match e.status {
        429 | 503 => w::ErrorKind::Overloaded,
        499 => w::ErrorKind::Cancelled,
        400..=499 => w::ErrorKind::Invalid,
        _ => w::ErrorKind::Server,
    };
    error(kind, e.message, None, None)
}

/// A request's way into the engine: cancelled before it was handed over,
/// or through its ticket once it was.
#[derive(Default)]
struct Handover {
    cancelled: AtomicBool,
    ticket: Mutex<Option<Ticket>>,
}

impl Handover {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        // Dropping a ticket that did not complete cancels its request.
        drop(super::record::lock(&self.ticket).take());
    }
}

/// Hands `s` to the engine now.
fn hand_over(
    worker: &Worker,
    tx: &Sender<Msg>,
    id: u64,
    s: Started,
    alone: bool,
    handover: &Handover,
) {
    let prepared = Prepared {
        request: s.engine_request.clone(),
        stop: vec![],
        stream: false,
        include_usage: false,
        alone,
    };
    let _ = tx.send(Msg::Started(id, Box::new(s)));
    let sink = ToRecorder { id, tx: tx.clone() };
    match worker.submit(prepared, sink) {
        Ok(ticket) => {
            let mut slot = super::record::lock(&handover.ticket);
            if handover.cancelled.load(Ordering::SeqCst) {
                drop(ticket);
            } else {
                *slot = Some(ticket);
            }
        }
        Err(e) => {
            let _ = tx.send(Msg::Event(id, JobEvent::Failed(e)));
        }
    }
}

impl EngineService for LocalEngine {
    fn model_info(&mut self) -> w::ModelInfo {
        self.info.clone()
    }

    fn submit(&mut self, sub: Submission, done: Completion) -> Result<CancelFn, ServiceError> {
        let engine_request =
            convert::request(&sub.request, &sub.images).map_err(ServiceError::rejected)?;
        let id = done.id();
        let clock_ms = |at: Instant| at.duration_since(sub.clock_zero).as_secs_f64() * 1e3;
        let mut started = Started {
            done,
            request: sub.request,
            images: sub.images,
            engine_request,
            started_at: store::now_rfc3339(),
            sent_at_ms: 0.0,
            late_ms: 0.0,
        };
        let handover = Arc::new(Handover::default());
        let due = sub.start_at.filter(|at| *at > Instant::now());
        match due {
            None => {
                let now = Instant::now();
                started.sent_at_ms = clock_ms(now);
                started.late_ms = sub
                    .start_at
                    .map_or(0.0, |at| now.duration_since(at).as_secs_f64() * 1e3);
                hand_over(
                    &self.worker,
                    &self.to_recorder,
                    id,
                    started,
                    sub.alone,
                    &handover,
                );
            }
            Some(at) => {
                let (worker, tx, h) = (
                    self.worker.clone(),
                    self.to_recorder.clone(),
                    handover.clone(),
                );
                let zero = sub.clock_zero;
                std::thread::Builder::new()
                    .name(format!("request-{id}"))
                    .stack_size(256 << 10)
                    .spawn(move || {
                        sleep_until(at, &h.cancelled);
                        if h.cancelled.load(Ordering::SeqCst) {
                            let err = error(
                                w::ErrorKind::Cancelled,
                                "dropped before it was sent",
                                None,
                                None,
                            );
                            started.done.finish(Err(err));
                            return;
                        }
                        let now = Instant::now();
                        started.sent_at_ms = now.duration_since(zero).as_secs_f64() * 1e3;
                        started.late_ms = now.duration_since(at).as_secs_f64() * 1e3;
                        started.started_at = store::now_rfc3339();
                        hand_over(&worker, &tx, id, started, false, &h);
                    })
                    .map_err(|e| {
                        ServiceError::fatal(format!("cannot start a request's thread: {e}"))
                    })?;
            }
        }
        Ok(Box::new(move || handover.cancel()))
    }

    fn cache_stats(&mut self) -> Option<w::CacheCounters> {
        self.control(|e| convert::cache_counters(&e.cache_stats()))
            .ok()
    }

    fn cache_clear(&mut self) -> Result<(), String> {
        self.control(|e| e.clear_cache())
    }

    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix_bytes: Option<u64>,
        vision_bytes: Option<u64>,
    ) -> Result<(), String> {
        self.control(move |e| {
            if let Some(on) = enabled {
                e.set_cache_enabled(on);
            }
            e.set_cache_budget(
                prefix_bytes.map(|b| b as usize),
                vision_bytes.map(|b| b as usize),
            );
        })
    }
}

/// Sleeps until `at`, waking early when `cancelled` is set.
pub fn sleep_until(at: Instant, cancelled: &AtomicBool) {
    while !cancelled.load(Ordering::SeqCst) {
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}
