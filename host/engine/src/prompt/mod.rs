//! From chat messages and images to token ids: the chat template, the
//! expansion of image placeholders, and the tokenizer (spec §4.9, §5).

mod template;
mod tokenizer;

use serde::{Deserialize, Serialize};

pub use template::ChatTemplate;
pub use tokenizer::TextTokenizer;

use crate::error::{Error, Result};

/// One item of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Content {
    Text {
        text: String,
    },
    /// The next image of the request, in order.
    Image,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Vec<Content>,
}

impl Message {
    /// A user turn with `images` image items first, then the text (Qwen's examples' order).
    pub fn user_with_images(images: usize, text: &str) -> Message {
        let mut content = vec![Content::Image; images];
        if !text.is_empty() {
            content.push(Content::Text {
                text: text.to_string(),
            });
        }
        Message {
            role: "user".into(),
            content,
        }
    }

    pub fn image_count(&self) -> usize {
        self.content
            .iter()
            .filter(|c| matches!(c, Content::Image))
            .count()
    }
}

/// Turns messages into token ids, given each image's placeholder count.
pub struct PromptBuilder {
    pub tokenizer: TextTokenizer,
    pub template: ChatTemplate,
    image_pad: String,
}

impl PromptBuilder {
    pub fn new(
        tokenizer: TextTokenizer,
        template: ChatTemplate,
        image_token: u32,
    ) -> Result<PromptBuilder> {
        let image_pad = tokenizer.id_to_token(image_token).ok_or_else(|| {
            Error::Tokenizer(format!(
                "the image token id {image_token} is not in the vocabulary"
            ))
        })?;
        Ok(PromptBuilder {
            tokenizer,
            template,
            image_pad,
        })
    }

    /// The rendered prompt text, with one placeholder per image.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.template.render(messages, add_generation_prompt)
    }

    /// Token ids with the `i`-th image's placeholder repeated `image_tokens[i]` times.
    pub fn encode(&self, messages: &[Message], image_tokens: &[usize]) -> Result<Vec<u32>> {
        let text = self.render(messages, true)?;
        let pieces: Vec<&str> = text.split(self.image_pad.as_str()).collect();
        if pieces.len() - 1 != image_tokens.len() {
            return Err(Error::request(format!(
                "the prompt has {} image placeholders but {} images were given",
                pieces.len() - 1,
                image_tokens.len()
            )));
        }
        let mut expanded = String::with_capacity(
            text.len() + image_tokens.iter().sum::<usize>() * self.image_pad.len(),
        );
        for (i, piece) in pieces.iter().enumerate() {
            expanded.push_str(piece);
            if let Some(&n) = image_tokens.get(i) {
                for _ in 0..n {
                    expanded.push_str(&self.image_pad);
                }
            }
        }
        self.tokenizer.encode(&expanded)
    }
}
