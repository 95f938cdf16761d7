//! Reading an OpenAI chat-completions answer as it arrives: server-sent
//! events (`data: {chunk}` lines, `data: [DONE]`) or, from a server that
//! ignored `stream`, one JSON completion. Each event that brings output text
//! is one arrival; how many tokens each brought is worked out at the end.

use std::io::{BufRead, Read};
use std::time::Instant;

use serde_json::Value;

/// One event that brought output text.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Since the request was sent.
    pub at_ms: f64,
    /// Characters of text it brought.
    pub chars: usize,
    /// The server's running count of completion tokens after it, where the
    /// server reports usage in every event (vLLM's `continuous_usage_stats`).
    pub tokens_so_far: Option<u32>,
}

/// A whole answer as read.
#[derive(Debug, Default)]
pub struct Answer {
    pub text: String,
    pub arrivals: Vec<Arrival>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub cached_tokens: Option<u32>,
    /// `[DONE]` came (a stream), or the JSON was whole (not a stream).
    pub complete: bool,
}

/// Why reading failed.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed or timed out.
    Io(std::io::Error),
    /// Not what the protocol says.
    Protocol(String),
    /// The server sent an error event mid-stream.
    Server(String),
    /// The run stopped the request.
    Cancelled,
}

/// The most bytes one event line may have (a chunk of text with its JSON).
const MAX_LINE: usize = 4 << 20;
/// The most text an answer may bring.
const MAX_TEXT: usize = 64 << 20;

/// Reads a stream of events from `body` until `[DONE]` or its end.
pub fn read_events(
    body: &mut dyn BufRead,
    sent: Instant,
    cancelled: &dyn Fn() -> bool,
) -> Result<Answer, ReadError> {
    let mut answer = Answer::default();
    let mut line = Vec::new();
    loop {
        if cancelled() {
            return Err(ReadError::Cancelled);
        }
        line.clear();
        let n = Read::take(&mut *body, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(answer);
        }
        if line.len() > MAX_LINE {
            return Err(ReadError::Protocol(format!(
                "an event line over {} MiB",
                MAX_LINE >> 20
            )));
        }
        let at_ms = sent.elapsed().as_secs_f64() * 1e3;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        // Comments (`:`), event names and ids carry nothing we read.
        let Some(data) = text.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim_start();
        if data == "[DONE]" {
            answer.complete = true;
            return Ok(answer);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            ReadError::Protocol(format!("an event that is not JSON ({e}): {}", clip(data)))
        })?;
        take_chunk(&mut answer, &chunk, at_ms)?;
        if answer.text.len() > MAX_TEXT {
            return Err(ReadError::Protocol(format!(
                "more than {} MiB of text",
                MAX_TEXT >> 20
            )));
        }
    }
}

/// Reads a whole (not streamed) completion that arrived `at_ms` after it
/// was sent.
pub fn read_whole(body: &str, at_ms: f64) -> Result<Answer, ReadError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        ReadError::Protocol(format!("an answer that is not JSON ({e}): {}", clip(body)))
    })?;
    if let Some(err) = v.get("error") {
        return Err(ReadError::Server(error_text(err)));
    }
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| ReadError::Protocol(format!("no choices in: {}", clip(body))))?;
    let text = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut answer = Answer {
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(String::from),
        complete: true,
        ..Answer::default()
    };
    if !text.is_empty() {
        answer.arrivals.push(Arrival {
            at_ms,
            chars: text.chars().count(),
            tokens_so_far: None,
        });
    }
    answer.text = text;
    take_usage(&mut answer, v.get("usage"));
    Ok(answer)
}

fn take_chunk(answer: &mut Answer, chunk: &Value, at_ms: f64) -> Result<(), ReadError> {
    if let Some(err) = chunk.get("error") {
        return Err(ReadError::Server(error_text(err)));
    }
    take_usage(answer, chunk.get("usage"));
    let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
        // The last event of `include_usage` has no choices.
        return Ok(());
    };
    if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
        answer.finish_reason = Some(r.to_string());
    }
    let piece = choice
        .pointer("/delta/content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !piece.is_empty() {
        answer.text.push_str(piece);
        answer.arrivals.push(Arrival {
            at_ms,
            chars: piece.chars().count(),
            tokens_so_far: chunk
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
                .map(|t| t as u32),
        });
    }
    Ok(())
}

fn take_usage(answer: &mut Answer, usage: Option<&Value>) {
    let Some(u) = usage.filter(|u| u.is_object()) else {
        return;
    };
    let num = |p: &str| u.pointer(p).and_then(Value::as_u64).map(|n| n as u32);
    if let Some(p) = num("/prompt_tokens") {
        answer.prompt_tokens = Some(p);
    }
    if let Some(c) = num("/completion_tokens") {
        answer.completion_tokens = Some(c);
    }
    if let Some(c) = num("/prompt_tokens_details/cached_tokens") {
        answer.cached_tokens = Some(c);
    }
}

fn error_text(err: &Value) -> String {
    err.get("message")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| clip(&err.to_string()))
}

fn clip(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// How many tokens each arrival brought, given `total` output tokens.
/// Where the server counted tokens in every event, its counts; where every
/// event brought one token, one each; otherwise `total` shared out in
/// proportion to the characters each brought (at least one each), so a
/// chunk of several tokens keeps them at its own arrival time.
pub fn tokens_per_arrival(arrivals: &[Arrival], total: u32) -> Vec<u32> {
    let n = arrivals.len();
    if n == 0 {
        return vec![];
    }
    if arrivals.iter().all(|a| a.tokens_so_far.is_some()) {
        let mut prev = 0;
        return arrivals
            .iter()
            .map(|a| {
                let so_far = a.tokens_so_far.unwrap_or(prev).max(prev);
                let t = so_far - prev;
                prev = so_far;
                t
            })
            .collect();
    }
    let total = total as usize;
    if total <= n {
        // One each (a server may count fewer than it sent events for).
        return vec![1; n];
    }
    // One each, then the rest by characters, largest remainders first.
    let chars: usize = arrivals.iter().map(|a| a.chars).sum::<usize>().max(1);
    let rest = total - n;
    let exact: Vec<f64> = arrivals
        .iter()
        .map(|a| rest as f64 * a.chars as f64 / chars as f64)
        .collect();
    let mut out: Vec<u32> = exact.iter().map(|x| 1 + x.floor() as u32).collect();
    let given: usize = out.iter().map(|&t| t as usize).sum();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order.iter().take(total - given) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(at_ms: f64, chars: usize) -> Arrival {
        Arrival {
            at_ms,
            chars,
            tokens_so_far: None,
        }
    }

    #[test]
    fn a_stream_of_events_is_read_to_done_with_usage() {
        let body = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
            : keep-alive\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\
            \"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n\
            data: [DONE]\n\n";
        let a = read_events(&mut body.as_bytes(), Instant::now(), &|| false).unwrap();
        assert!(a.complete);
        assert_eq!(a.text, "Hello");
        assert_eq!(a.arrivals.len(), 2, "the role-only event brings no text");
        assert_eq!(a.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            (a.prompt_tokens, a.completion_tokens, a.cached_tokens),
            (Some(12), Some(2), Some(8))
        );
    }

    #[test]
    fn a_stream_cut_short_is_not_complete_and_garbage_is_a_protocol_error() {
        let cut = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n";
        let a = read_events(&mut cut.as_bytes(), Instant::now(), &|| false).unwrap();
        assert!(!a.complete);
        let garbage = "data: {not json\n";
        let e = read_events(&mut garbage.as_bytes(), Instant::now(), &|| false).unwrap_err();
        assert!(matches!(e, ReadError::Protocol(m) if m.contains("not JSON")));
        let error = "data: {\"error\":{\"message\":\"out of memory\"}}\n";
        let e = read_events(&mut error.as_bytes(), Instant::now(), &|| false).unwrap_err();
        assert!(matches!(e, ReadError::Server(m) if m == "out of memory"));
    }

    #[test]
    fn a_whole_completion_is_one_arrival() {
        let body = r#"{"choices":[{"message":{"content":"abc"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":5,"completion_tokens":3}}"#;
        let a = read_whole(body, 40.0).unwrap();
        assert_eq!(a.arrivals, vec![arrival(40.0, 3)]);
        assert_eq!(tokens_per_arrival(&a.arrivals, 3), vec![3]);
    }

    #[test]
    fn tokens_are_one_per_event_when_counts_agree() {
        let a = vec![arrival(1.0, 4), arrival(2.0, 1), arrival(3.0, 9)];
        assert_eq!(tokens_per_arrival(&a, 3), vec![1, 1, 1]);
    }

    #[test]
    fn a_chunk_of_several_tokens_keeps_them_at_its_arrival() {
        // 10 tokens in 3 events: one each, and the 7 left by characters.
        let a = vec![arrival(1.0, 2), arrival(2.0, 2), arrival(3.0, 16)];
        let t = tokens_per_arrival(&a, 10);
        assert_eq!(t.iter().sum::<u32>(), 10);
        assert_eq!(t, vec![2, 2, 6]);
    }

    #[test]
    fn a_servers_running_counts_win() {
        let mut a = vec![arrival(1.0, 5), arrival(2.0, 5)];
        a[0].tokens_so_far = Some(1);
        a[1].tokens_so_far = Some(4);
        assert_eq!(tokens_per_arrival(&a, 4), vec![1, 3]);
    }
}
