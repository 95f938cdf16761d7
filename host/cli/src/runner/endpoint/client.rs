//! The HTTP side of an endpoint: what the server says about itself
//! (`GET /models`, its `Server` header), and one streamed chat completion.

use std::io::{BufReader, Read};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use runtime::bindings::wit_engine as w;
use serde_json::{Value, json};

use super::stream::{self, ReadError};
use crate::runner::record::error;

/// A server and how to reach it.
pub struct Endpoint {
    /// The base URL, without a trailing slash (`http://host:port/v1`).
    pub base: String,
    /// The model requests name.
    pub model: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

/// What the server said about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerInfo {
    /// Its `Server` header, or the listed model's `owned_by`, or empty.
    pub server: String,
    /// The models it lists.
    pub models: Vec<String>,
}

/// The most bytes of a non-streamed answer or of the model list.
const MAX_BODY: u64 = 64 << 20;

impl Endpoint {
    /// Connects to `url`, asks for its models, and picks `model` (or the
    /// only one listed). `read_timeout` bounds every wait for the server's
    /// next bytes.
    pub fn connect(
        url: &str,
        model: Option<&str>,
        api_key: Option<String>,
        read_timeout: Duration,
    ) -> Result<(Endpoint, ServerInfo)> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--endpoint {url}: give an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1"
            );
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(read_timeout)
            .timeout_write(read_timeout)
            .max_idle_connections_per_host(1024)
            .user_agent(concat!("vlm-bench-host/", env!("CARGO_PKG_VERSION")))
            .build();
        let endpoint = Endpoint {
            base,
            model: model.unwrap_or_default().to_string(),
            api_key,
            agent,
        };
        let (info, listed) = endpoint
            .models()
            .with_context(|| format!("asking {}/models which models it serves", endpoint.base))?;
        let model = match model {
            Some(m) => m.to_string(),
            None => match listed.as_slice() {
                [(only, _)] => only.clone(),
                [] => bail!(
                    "{}/models lists no model: name one with --endpoint-model",
                    endpoint.base
                ),
                many => bail!(
                    "{}/models lists {} models ({}): pick one with --endpoint-model",
                    endpoint.base,
                    many.len(),
                    many.iter()
                        .map(|(m, _)| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        let owned_by = listed
            .iter()
            .find(|(m, _)| *m == model)
            .map(|(_, o)| o.clone())
            .unwrap_or_default();
        let server = if info.is_empty() { owned_by } else { info };
        let models = listed.into_iter().map(|(m, _)| m).collect();
        Ok((
            Endpoint { model, ..endpoint },
            ServerInfo { server, models },
        ))
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let mut r = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(key) = &self.api_key {
            r = r.set("Authorization", &format!("Bearer {key}"));
        }
        r
    }

    /// The `Server` header and the listed (model, owner) pairs.
    fn models(&self) -> Result<(String, Vec<(String, String)>)> {
        let resp = self.request("GET", "/models").call().map_err(|e| match e {
            ureq::Error::Status(code, r) => anyhow::anyhow!("HTTP {code}: {}", error_message(r)),
            ureq::Error::Transport(t) => anyhow::anyhow!("{t}"),
        })?;
        let server = resp.header("server").unwrap_or_default().to_string();
        let mut body = String::new();
        resp.into_reader()
            .take(MAX_BODY)
            .read_to_string(&mut body)
            .context("reading the model list")?;
        let v: Value = serde_json::from_str(&body).context("the model list is not JSON")?;
        let listed = v
            .get("data")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| {
                        let id = m.get("id")?.as_str()?.to_string();
                        let owner = m
                            .get("owned_by")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        Some((id, owner))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((server, listed))
    }

    /// Sends one chat completion (`body`, sent at `sent`) and reads its
    /// answer as it arrives.
    pub fn chat(
        &self,
        body: &str,
        sent: Instant,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<stream::Answer, w::RequestError> {
        let resp = self
            .request("POST", "/chat/completions")
            .set("Content-Type", "application/json")
            .set("Accept", "text/event-stream")
            .send_string(body);
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let message = error_message(r);
                let kind = match code {
                    429 | 503 => w::ErrorKind::Overloaded,
                    400..=499 => w::ErrorKind::Invalid,
                    _ => w::ErrorKind::Server,
                };
                return Err(error(
                    kind,
                    format!("HTTP {code}: {message}"),
                    Some(code),
                    None,
                ));
            }
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&t)),
        };
        let streamed = resp
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let read = if streamed {
            let mut reader = BufReader::new(resp.into_reader());
            stream::read_events(&mut reader, sent, cancelled)
        } else {
            let mut text = String::new();
            match resp.into_reader().take(MAX_BODY).read_to_string(&mut text) {
                Ok(_) => stream::read_whole(&text, sent.elapsed().as_secs_f64() * 1e3),
                Err(e) => Err(ReadError::Io(e)),
            }
        };
        read.map_err(|e| match e {
            ReadError::Io(e) if is_timeout(&e) => error(
                w::ErrorKind::Timeout,
                format!("the server sent nothing within the read timeout: {e}"),
                None,
                None,
            ),
            ReadError::Io(e) => error(
                w::ErrorKind::Connection,
                format!("the connection failed mid-answer: {e}"),
                None,
                None,
            ),
            ReadError::Protocol(m) => error(w::ErrorKind::Protocol, m, None, None),
            ReadError::Server(m) => error(
                w::ErrorKind::Server,
                format!("the server reported an error mid-stream: {m}"),
                None,
                None,
            ),
            ReadError::Cancelled => error(
                w::ErrorKind::Cancelled,
                "dropped while the answer arrived",
                None,
                None,
            ),
        })
    }
}

/// What an error response says: its OpenAI-style `error.message`, else the
/// start of its body.
fn error_message(r: ureq::Response) -> String {
    let mut text = String::new();
    let _ = r.into_reader().take(64 << 10).read_to_string(&mut text);
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| text.chars().take(500).collect())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// A failure before any answer: no connection, or no answer in time.
fn transport_error(t: &ureq::Transport) -> w::RequestError {
    let io = std::error::Error::source(t).and_then(|s| s.downcast_ref::<std::io::Error>());
    let kind = match t.kind() {
        _ if io.is_some_and(is_timeout) => w::ErrorKind::Timeout,
        ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => w::ErrorKind::Connection,
        ureq::ErrorKind::Io => w::ErrorKind::Connection,
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => w::ErrorKind::Invalid,
        _ => w::ErrorKind::Protocol,
    };
    error(kind, t.to_string(), None, None)
}

/// The chat-completions body of `request`, its images given as `uris`.
pub fn chat_body(
    endpoint: &Endpoint,
    request: &w::GenerateRequest,
    uris: &[std::sync::Arc<String>],
) -> Result<String, String> {
    let mut messages = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        let text_only = m
            .content
            .iter()
            .all(|c| matches!(c, w::ContentPart::Text(_)));
        let content = if text_only {
            let text: String = m
                .content
                .iter()
                .map(|c| match c {
                    w::ContentPart::Text(t) => t.as_str(),
                    w::ContentPart::Image(_) => "",
                })
                .collect();
            Value::String(text)
        } else {
            let mut parts = Vec::with_capacity(m.content.len());
            for c in &m.content {
                parts.push(match c {
                    w::ContentPart::Text(t) => json!({"type": "text", "text": t}),
                    w::ContentPart::Image(i) => {
                        let uri = uris.get(*i as usize).ok_or_else(|| {
                            format!(
                                "content refers to image {i}, but {} images were passed",
                                uris.len()
                            )
                        })?;
                        json!({"type": "image_url", "image_url": {"url": uri.as_str()}})
                    }
                });
            }
            Value::Array(parts)
        };
        messages.push(json!({"role": m.role, "content": content}));
    }
    let s = &request.sampling;
    let mut body = json!({
        "model": endpoint.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "seed": s.seed,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if s.top_k > 0 {
        body["top_k"] = json!(s.top_k);
    }
    if request.ignore_eos {
        // vLLM's and our server's name for a forced length.
        body["ignore_eos"] = json!(true);
    }
    serde_json::to_string(&body).map_err(|e| e.to_string())
}
