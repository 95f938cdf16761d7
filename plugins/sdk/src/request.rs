//! Builders for `engine::generate` requests.

use crate::engine::{ContentPart, GenerateRequest, Message, Sampling};

/// Greedy decoding.
pub fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
    }
}

/// A user turn: `images` image parts (the first `images` images passed to
/// `generate`), then the prompt text.
pub fn with_images(prompt: &str, images: u32, max_tokens: u32) -> GenerateRequest {
    let mut content: Vec<ContentPart> = (0..images).map(ContentPart::Image).collect();
    content.push(ContentPart::Text(prompt.to_string()));
    GenerateRequest {
        messages: vec![Message {
            role: "user".into(),
            content,
        }],
        max_tokens,
        sampling: greedy(),
        ignore_eos: false,
        label: String::new(),
        warmup: false,
        return_logits: false,
    }
}

/// A text-only user turn.
pub fn text(prompt: &str, max_tokens: u32) -> GenerateRequest {
    with_images(prompt, 0, max_tokens)
}
