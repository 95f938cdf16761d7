//! An OpenAI chat request as the engine takes it: messages with image items
//! in place, the images loaded, sampling and limits checked, stop strings
//! kept for the worker.

use std::time::{SystemTime, UNIX_EPOCH};

use engine::generate::MAX_NEW_TOKENS;
use engine::prompt::{Content as EngineContent, Message};
use engine::{GenerateRequest, Sampling};

use crate::images::ImageSources;
use crate::wire::{ApiError, ChatRequest, Content, Part};

/// Output tokens when a request names none.
pub const DEFAULT_MAX_TOKENS: usize = 1024;
/// Most images in one request, and bytes of their decoded pixels together.
pub const MAX_IMAGES: usize = 64;
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;
/// Most messages in one request, and bytes of their text together (the
/// longest context, 262,144 tokens, is about 1 MiB of English).
pub const MAX_MESSAGES: usize = 1024;
pub const MAX_TEXT: usize = 4 << 20;
/// Most stop strings, and bytes of each.
pub const MAX_STOPS: usize = 4;
pub const MAX_STOP_BYTES: usize = 256;

/// A request ready for the engine.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub request: GenerateRequest,
    /// Text that ends the output where it appears (not included).
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// When the engine is idle, run it by itself (the single-stream path)
    /// rather than as a batch of one; others wait until it ends.
    pub alone: bool,
}

/// Checks `req` against the served model `served` and loads its images
/// from `sources`. Blocking: images may be read from disk or fetched.
pub fn prepare(
    req: ChatRequest,
    served: &str,
    sources: &ImageSources,
) -> Result<Prepared, ApiError> {
    if let Some(m) = &req.model
        && m != served
    {
        return Err(ApiError {
            status: 404,
            message: format!("the model `{m}` does not exist; this server serves `{served}`"),
            kind: "not_found_error",
            param: Some("model"),
        });
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("only n = 1 is served", Some("n")));
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages is empty", Some("messages")));
    }
    if req.messages.len() > MAX_MESSAGES {
        return Err(ApiError::invalid(
            format!(
                "{} messages, over the limit of {MAX_MESSAGES}",
                req.messages.len()
            ),
            Some("messages"),
        ));
    }
    let text: usize = req
        .messages
        .iter()
        .map(|m| {
            m.role.len()
                + match &m.content {
                    None => 0,
                    Some(Content::Text(t)) => t.len(),
                    Some(Content::Parts(parts)) => parts
                        .iter()
                        .map(|p| match p {
                            Part::Text { text } => text.len(),
                            Part::ImageUrl { .. } => 0,
                        })
                        .sum(),
                }
        })
        .sum();
    if text > MAX_TEXT {
        return Err(ApiError::invalid(
            format!(
                "{text} bytes of text, over the limit of {} MiB a request",
                MAX_TEXT >> 20
            ),
            Some("messages"),
        ));
    }
    // Counted before any is loaded.
    let image_parts = req
        .messages
        .iter()
        .filter_map(|m| match &m.content {
            Some(Content::Parts(parts)) => Some(parts),
            _ => None,
        })
        .flatten()
        .filter(|p| matches!(p, Part::ImageUrl { .. }))
        .count();
    if image_parts > MAX_IMAGES {
        return Err(ApiError::invalid(
            format!("{image_parts} images, over the limit of {MAX_IMAGES} a request"),
            Some("messages"),
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    let mut images: Vec<std::sync::Arc<imaging::RgbImage>> = vec![];
    let mut image_bytes = 0u64;
    for (i, m) in req.messages.into_iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(ApiError::invalid(
                format!(
                    "messages[{i}]: the role `{}` is not served (system, user, assistant)",
                    m.role
                ),
                Some("messages"),
            ));
        }
        let content = match m.content {
            None => vec![],
            Some(Content::Text(text)) => vec![EngineContent::Text { text }],
            Some(Content::Parts(parts)) => {
                let mut out = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Part::Text { text } => out.push(EngineContent::Text { text }),
                        Part::ImageUrl { .. } if m.role != "user" => {
                            return Err(ApiError::invalid(
                                format!(
                                    "messages[{i}]: images go in user messages, not {}",
                                    m.role
                                ),
                                Some("messages"),
                            ));
                        }
                        Part::ImageUrl { image_url } => {
                            let room = MAX_IMAGE_BYTES - image_bytes;
                            let image = sources
                                .load_within(&image_url.url, images.len(), room)
                                .map_err(|e| ApiError {
                                    message: format!(
                                        "{} (a request's images may hold {} MiB of pixels together)",
                                        e.message,
                                        MAX_IMAGE_BYTES >> 20
                                    ),
                                    ..e
                                })?;
                            image_bytes += image.pixels.len() as u64;
                            images.push(image);
                            out.push(EngineContent::Image);
                        }
                    }
                }
                out
            }
        };
        messages.push(Message {
            role: m.role,
            content,
        });
    }
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS as u64);
    if max_tokens == 0 || max_tokens > MAX_NEW_TOKENS as u64 {
        return Err(ApiError::invalid(
            format!("max_tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_tokens}"),
            Some("max_tokens"),
        ));
    }
    let sampling = Sampling {
        // OpenAI's defaults: temperature 1, top_p 1.
        temperature: req.temperature.unwrap_or(1.0),
        top_p: req.top_p.unwrap_or(1.0),
        // -1 (vLLM's "off") and 0 keep every token.
        top_k: req
            .top_k
            .map_or(0, |k| u32::try_from(k.max(0)).unwrap_or(u32::MAX)),
        seed: req.seed.map_or_else(fresh_seed, |s| s as u64),
    };
    sampling
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string(), None))?;
    let stop = req.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOPS
        || stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
    {
        return Err(ApiError::invalid(
            format!(
                "stop takes at most {MAX_STOPS} non-empty strings of at most {MAX_STOP_BYTES} bytes"
            ),
            Some("stop"),
        ));
    }
    Ok(Prepared {
        request: GenerateRequest {
            messages,
            images,
            max_tokens: max_tokens as usize,
            sampling,
            ignore_eos: req.ignore_eos,
            return_logits: false,
        },
        stop,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        alone: false,
    })
}

/// A seed for a request that named none.
fn fresh_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Where the earliest of `stops` begins in `text`, if any does.
pub fn stop_at(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<Prepared, ApiError> {
        prepare(
            serde_json::from_value(v).unwrap(),
            "tiny",
            &ImageSources::default(),
        )
    }

    #[test]
    fn a_plain_request_takes_openais_defaults() {
        let p =
            parse(serde_json::json!({"messages": [{"role": "user", "content": "Hi"}]})).unwrap();
        assert_eq!(p.request.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(p.request.sampling.temperature, 1.0);
        assert_eq!(
            p.request.messages[0].content,
            vec![EngineContent::Text { text: "Hi".into() }]
        );
        assert!(!p.stream);
        let p = parse(serde_json::json!({
            "model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 7, "max_completion_tokens": 5, "temperature": 0, "top_k": -1, "seed": 3,
            "stop": ["a", "b"]
        }))
        .unwrap();
        assert_eq!(p.request.max_tokens, 5);
        assert_eq!(p.request.sampling.top_k, 0);
        assert_eq!(p.request.sampling.seed, 3);
        assert_eq!(p.stop, vec!["a", "b"]);
    }

    #[test]
    fn bad_requests_are_refused_with_what_is_wrong() {
        for (body, status, want) in [
            (
                serde_json::json!({"messages": []}),
                400,
                "messages is empty",
            ),
            (
                serde_json::json!({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}),
                404,
                "does not exist",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1_000_000_000u64}),
                400,
                "max_tokens must be",
            ),
            (
                serde_json::json!({"messages": [{"role": "tool", "content": "x"}]}),
                400,
                "role `tool`",
            ),
            (
                serde_json::json!({"messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "data:x;base64,AA=="}}]}]}),
                400,
                "images go in user messages",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "x"}], "temperature": -1}),
                400,
                "temperature",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
                400,
                "n = 1",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "x"}], "stop": ""}),
                400,
                "stop takes",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status, status, "{body}");
            assert!(e.message.contains(want), "{body}: {}", e.message);
        }
    }

    #[test]
    fn images_are_counted_before_any_is_loaded() {
        // Not even valid data: refused by count first.
        let part =
            serde_json::json!({"type": "image_url", "image_url": {"url": "data:x;base64,@"}});
        let parts: Vec<_> = (0..MAX_IMAGES + 1).map(|_| part.clone()).collect();
        let e = parse(serde_json::json!({"messages": [{"role": "user", "content": parts}]}))
            .unwrap_err();
        assert!(
            e.message.contains("65 images, over the limit of 64"),
            "{}",
            e.message
        );
        let many: Vec<_> = (0..MAX_MESSAGES + 1)
            .map(|_| serde_json::json!({"role": "user", "content": "x"}))
            .collect();
        let e = parse(serde_json::json!({"messages": many})).unwrap_err();
        assert!(
            e.message.contains("over the limit of 1024"),
            "{}",
            e.message
        );
        let long = "x".repeat(MAX_TEXT + 1);
        let e = parse(serde_json::json!({"messages": [{"role": "user", "content": long}]}))
            .unwrap_err();
        assert!(
            e.message.contains("over the limit of 4 MiB"),
            "{}",
            e.message
        );
    }

    #[test]
    fn stops_are_found_at_their_earliest() {
        let stops = vec!["END".to_string(), "\n".to_string()];
        assert_eq!(stop_at("ab\ncdEND", &stops), Some(2));
        assert_eq!(stop_at("abc", &stops), None);
    }
}
