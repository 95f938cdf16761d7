//! The HTTP side: `POST /v1/chat/completions` (whole or streamed as
//! server-sent events), `GET /v1/models`, `GET /health`, `GET /metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::GenerateResponse;
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::convert::prepare;
use crate::images::ImageSources;
use crate::wire::{
    ApiError, AssistantMessage, ChatChunk, ChatCompletion, ChatRequest, Choice, ChunkChoice, Delta,
    PromptTokensDetails, Usage,
};
use crate::worker::{JobEvent, Ticket, Worker};

/// What the API serves and accepts.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The model's id in requests and `/v1/models`.
    pub model_id: String,
    pub sources: ImageSources,
    /// Largest request body.
    pub max_body_bytes: usize,
}

#[derive(Clone)]
struct Api {
    worker: Arc<Worker>,
    opts: Arc<ServeOptions>,
    /// Requests whose images are being read and decoded at once.
    preparing: Arc<Semaphore>,
}

/// Requests prepared at once: each may decode up to 512 MiB of images.
const PREPARING: usize = 4;

/// The API's routes on `worker`.
pub fn router(worker: Worker, opts: ServeOptions) -> Router {
    let limit = opts.max_body_bytes;
    let api = Api {
        worker: Arc::new(worker),
        opts: Arc::new(opts),
        preparing: Arc::new(Semaphore::new(PREPARING)),
    };
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(limit, declared_length))
        .with_state(api)
}

/// Refuses a body whose declared length passes the limit before reading any
/// of it (bodies without a length are cut at the limit as they are read).
async fn declared_length(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit as u64
    {
        return error_response(&ApiError {
            status: 413,
            message: format!(
                "the request body is {n} bytes, over the limit of {} MiB",
                limit >> 20
            ),
            kind: "invalid_request_error",
            param: None,
        });
    }
    next.run(req).await
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, Json(e.body())).into_response();
    if e.status == 429 || e.status == 503 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

async fn chat(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    match answer(api, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn answer(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError {
        status: e.status().as_u16(),
        message: format!(
            "the request body could not be read ({}); the limit is {} MiB",
            e.body_text(),
            api.opts.max_body_bytes >> 20
        ),
        kind: "invalid_request_error",
        param: None,
    })?;
    let req: ChatRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not a chat request: {e}"), None))?;
    let opts = api.opts.clone();
    let permit = api
        .preparing
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| stopped())?;
    let prepared = tokio::task::spawn_blocking(move || prepare(req, &opts.model_id, &opts.sources))
        .await
        .map_err(|e| ApiError {
            status: 500,
            message: format!("preparing the request failed: {e}"),
            kind: "server_error",
            param: None,
        })??;
    drop(permit);
    let (stream, include_usage) = (prepared.stream, prepared.include_usage);
    let (tx, mut rx) = unbounded_channel();
    let ticket = api.worker.submit(prepared, tx)?;
    // The first event decides the status: a refusal is still a 4xx.
    let first = rx.recv().await.ok_or_else(stopped)?;
    if let JobEvent::Failed(e) = first {
        return Err(e);
    }
    let reply = Reply {
        id: format!("chatcmpl-{}", unique()),
        created: now_s(),
        model: api.opts.model_id.clone(),
    };
    if stream {
        let chunks = streamed(reply, first, rx, ticket, include_usage);
        return Ok(Sse::new(chunks)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let mut event = first;
    let mut ticket = ticket;
    loop {
        match event {
            JobEvent::Text(_) => {}
            JobEvent::Done { text, response, .. } => {
                ticket.complete();
                return Ok(Json(reply.whole(text, &response)).into_response());
            }
            JobEvent::Failed(e) => {
                ticket.complete();
                return Err(e);
            }
        }
        event = rx.recv().await.ok_or_else(stopped)?;
    }
}

/// The fields every part of one response shares.
#[derive(Clone)]
struct Reply {
    id: String,
    created: u64,
    model: String,
}

impl Reply {
    fn whole(&self, text: String, r: &GenerateResponse) -> ChatCompletion {
        ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion",
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: text,
                },
                finish_reason: r.finish_reason.name(),
            }],
            usage: usage(r),
            timings: timings(r),
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&'static str>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
            timings: None,
        }
    }
}

/// The server-sent events of a streamed response, from its first event on.
/// The ticket lives as long as the stream: a client that goes away drops
/// both and cancels the request.
fn streamed(
    reply: Reply,
    first: JobEvent,
    rx: UnboundedReceiver<JobEvent>,
    ticket: Ticket,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let role = reply.chunk(
        Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        },
        None,
    );
    let opening = stream::iter(vec![Ok::<_, Infallible>(sse(&role))]);
    struct St {
        reply: Reply,
        pending: Option<JobEvent>,
        rx: UnboundedReceiver<JobEvent>,
        ticket: Ticket,
        include_usage: bool,
        ended: bool,
    }
    let st = St {
        reply,
        pending: Some(first),
        rx,
        ticket,
        include_usage,
        ended: false,
    };
    let body = stream::unfold(st, |mut st| async move {
        if st.ended {
            return None;
        }
        let event = match st.pending.take() {
            Some(e) => e,
            None => match st.rx.recv().await {
                Some(e) => e,
                None => {
                    st.ended = true;
                    let e = error_event(&stopped());
                    return Some((stream::iter(vec![Ok(e)]), st));
                }
            },
        };
        let out: Vec<Result<SseEvent, Infallible>> = match event {
            JobEvent::Text(t) => {
                let c = st.reply.chunk(
                    Delta {
                        role: None,
                        content: Some(t),
                    },
                    None,
                );
                vec![Ok(sse(&c))]
            }
            JobEvent::Done { response, .. } => {
                st.ticket.complete();
                st.ended = true;
                let last = st
                    .reply
                    .chunk(Delta::default(), Some(response.finish_reason.name()));
                let mut v = vec![Ok(sse(&last))];
                if st.include_usage {
                    let mut u = st.reply.chunk(Delta::default(), None);
                    u.choices.clear();
                    u.usage = Some(usage(&response));
                    u.timings = Some(timings(&response));
                    v.push(Ok(sse(&u)));
                }
                v.push(Ok(SseEvent::default().data("[DONE]")));
                v
            }
            JobEvent::Failed(e) => {
                st.ticket.complete();
                st.ended = true;
                vec![Ok(error_event(&e))]
            }
        };
        Some((stream::iter(out), st))
    });
    opening.chain(body.flatten())
}

fn sse(v: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(v).unwrap_or_default())
}

/// An error after the stream began: OpenAI's clients read an `error` object.
fn error_event(e: &ApiError) -> SseEvent {
    SseEvent::default().data(e.body().to_string())
}

fn stopped() -> ApiError {
    ApiError {
        status: 503,
        message: "the engine stopped before answering".into(),
        kind: "server_error",
        param: None,
    }
}

fn usage(r: &GenerateResponse) -> Usage {
    Usage {
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.output_tokens,
        total_tokens: r.prompt_tokens + r.output_tokens,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: r.cache.reused_tokens,
        },
    }
}

fn timings(r: &GenerateResponse) -> Value {
    let t = &r.timings;
    json!({
        "preprocess_s": t.preprocess_s,
        "vision_s": t.vision_s,
        "prefill_s": t.prefill_s,
        "ttft_s": t.ttft_s,
        "decode_s": t.decode_s,
        "total_s": t.total_s,
        "image_tokens": r.image_tokens,
    })
}

async fn models(State(api): State<Api>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": api.opts.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "vlm-bench",
        }]
    }))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        api.worker.metrics.render(),
    )
        .into_response()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unique within the process, and unlikely to repeat across restarts.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("{:x}{n:04x}", now_s())
}
