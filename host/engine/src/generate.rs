//! The request and response of one generation, and its timed events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::cache::CacheReport;
use crate::error::{Error, Result};
use crate::image::RgbImage;
use crate::prompt::Message;
use crate::sampler::Sampling;

/// The longest output one request may ask for.
pub const MAX_NEW_TOKENS: usize = 32_768;

/// One generation request. `images` are matched, in order, to the image
/// items of `messages`.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub messages: Vec<Message>,
    pub images: Vec<Arc<RgbImage>>,
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Keep generating past end-of-sequence tokens (benchmarks want a fixed count).
    pub ignore_eos: bool,
    /// Return the logits of the first generated position (to compare outputs
    /// beyond the chosen tokens).
    pub return_logits: bool,
}

impl GenerateRequest {
    /// A user turn with the images first, then `prompt`.
    pub fn simple(prompt: &str, images: Vec<Arc<RgbImage>>, max_tokens: usize) -> GenerateRequest {
        GenerateRequest {
            messages: vec![Message::user_with_images(images.len(), prompt)],
            images,
            max_tokens,
            sampling: Sampling::greedy(),
            ignore_eos: false,
            return_logits: false,
        }
    }
}

/// Stages of a request, reported as they complete (seconds since its start,
/// on a monotonic clock).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Images resized and patched, prompt rendered and tokenized.
    Preprocessed {
        at_s: f64,
    },
    /// Vision features ready (computed or from the cache).
    VisionEncoded {
        at_s: f64,
    },
    /// A token is on the host; `index` 0 is the first token (TTFT).
    Token {
        index: usize,
        id: u32,
        at_s: f64,
    },
    Finished {
        at_s: f64,
    },
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    /// As OpenAI's API and the store spell it.
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Stage durations in seconds, measured on the host with a monotonic clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Resize, normalise and patch the images; render and tokenize the prompt.
    pub preprocess_s: f64,
    /// Vision tower (zero when every image came from a cache).
    pub vision_s: f64,
    /// From vision done to the first token on the host.
    pub prefill_s: f64,
    /// Request start to the first token on the host.
    pub ttft_s: f64,
    /// First token to last token.
    pub decode_s: f64,
    pub total_s: f64,
    /// When each output token reached the host, since the request started.
    pub token_times_s: Vec<f64>,
}

impl Timings {
    /// Decode speed: tokens after the first over the time they took.
    pub fn decode_tok_s(&self) -> Option<f64> {
        let n = self.token_times_s.len();
        (n >= 2 && self.decode_s > 0.0).then(|| (n - 1) as f64 / self.decode_s)
    }

    /// Gaps between consecutive tokens, in seconds.
    pub fn inter_token_s(&self) -> Vec<f64> {
        self.token_times_s.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateResponse {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub image_tokens: usize,
    pub text_tokens: usize,
    pub output_tokens: usize,
    pub finish_reason: FinishReason,
    pub timings: Timings,
    pub cache: CacheReport,
    /// MLX peak memory during the request, in bytes.
    pub peak_memory_bytes: u64,
    /// Logits of the first generated position, when the request asked.
    #[serde(skip)]
    pub first_logits: Option<Vec<f32>>,
}

/// Lets another thread stop a generation between steps: cancelled (an
/// error, the output dropped) or finished early (the output so far returned
/// as stopped, as when a stop string matched).
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    cancel: Arc<AtomicBool>,
    finish: Arc<AtomicBool>,
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Ends the request in progress after the token being reported, with
    /// finish reason `Stop`. Each request starts with this cleared.
    pub fn finish_early(&self) {
        self.finish.store(true, Ordering::SeqCst);
    }

    pub fn finish_requested(&self) -> bool {
        self.finish.load(Ordering::SeqCst)
    }

    pub(crate) fn clear_finish(&self) {
        self.finish.store(false, Ordering::SeqCst);
    }

    pub fn reset(&self) {
        self.cancel.store(false, Ordering::SeqCst);
        self.clear_finish();
    }

    /// The flag behind cancellation, for code that stops on it without
    /// depending on the engine (the plugin runtime's deadline).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }
}

/// Checks a request before any work: token limits, image count, sampling.
pub fn validate_request(req: &GenerateRequest) -> Result<()> {
    if req.max_tokens == 0 || req.max_tokens > MAX_NEW_TOKENS {
        return Err(Error::request(format!(
            "max_tokens must be between 1 and {MAX_NEW_TOKENS}, got {}",
            req.max_tokens
        )));
    }
    let placeholders: usize = req.messages.iter().map(|m| m.image_count()).sum();
    if placeholders != req.images.len() {
        return Err(Error::request(format!(
            "the messages hold {placeholders} image items but {} images were given",
            req.images.len()
        )));
    }
    if req.messages.is_empty() {
        return Err(Error::request("no messages"));
    }
    req.sampling.validate()
}
