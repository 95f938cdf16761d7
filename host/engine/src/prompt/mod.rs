//! From chat messages and images to token ids: the chat template, the
//! expansion of image placeholders, and the tokenizer (`docs/qwen3-vl.md` §4.9, §5).

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
    image_token: u32,
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
            image_token,
        })
    }

    /// The rendered prompt text, with one placeholder per image.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.template.render(messages, add_generation_prompt)
    }

    /// Token ids with the `i`-th image's placeholder repeated `image_tokens[i]` times.
    ///
    /// The placeholder is an added token, which the tokenizer never merges with
    /// its neighbours, so the text is encoded with one placeholder per image
    /// and the ids are repeated afterwards: the same ids as encoding the
    /// expanded text (a test checks it), without tokenizing thousands of
    /// placeholders (~2 ms for a 1920x1080 image).
    pub fn encode(&self, messages: &[Message], image_tokens: &[usize]) -> Result<Vec<u32>> {
        let text = self.render(messages, true)?;
        let placeholders = text.matches(self.image_pad.as_str()).count();
        if placeholders != image_tokens.len() {
            return Err(Error::request(format!(
                "the prompt has {placeholders} image placeholders but {} images were given",
                image_tokens.len()
            )));
        }
        let ids = self.tokenizer.encode(&text)?;
        let pad = self.image_token;
        if ids.iter().filter(|&&id| id == pad).count() != placeholders {
            // A tokenizer where the placeholder is no single added token.
            return self.encode_expanded(&text, image_tokens);
        }
        let mut out = Vec::with_capacity(ids.len() + image_tokens.iter().sum::<usize>());
        let mut image = 0;
        for id in ids {
            if id == pad {
                out.extend(std::iter::repeat_n(pad, image_tokens[image]));
                image += 1;
            } else {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Encodes `text` with its placeholders expanded in the text itself.
    fn encode_expanded(&self, text: &str, image_tokens: &[usize]) -> Result<Vec<u32>> {
        let pieces: Vec<&str> = text.split(self.image_pad.as_str()).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_builder() -> PromptBuilder {
        let dir = tempfile::tempdir().unwrap();
        let json = crate::synth::tokenizer::tokenizer_json().to_string();
        std::fs::write(dir.path().join("tokenizer.json"), json).unwrap();
        let tokenizer = TextTokenizer::load(dir.path()).unwrap();
        let template =
            ChatTemplate::from_source(include_str!("../synth/chat_template.jinja").into()).unwrap();
        PromptBuilder::new(tokenizer, template, 151_655).unwrap()
    }

    #[test]
    fn repeating_placeholder_ids_equals_encoding_the_expanded_text() {
        let b = synthetic_builder();
        let text_after = |text: &str| Message {
            role: "user".into(),
            content: vec![
                Content::Text { text: text.into() },
                Content::Image,
                Content::Text {
                    text: "  and then, <b>x</b>\n\n".into(),
                },
                Content::Image,
            ],
        };
        let cases: Vec<(Vec<Message>, Vec<usize>)> = vec![
            (
                vec![Message::user_with_images(1, "Describe this image.")],
                vec![2040],
            ),
            (
                vec![Message::user_with_images(2, " leading space")],
                vec![64, 1],
            ),
            (vec![text_after("Compare:")], vec![3, 130]),
            (
                vec![Message::user_with_images(0, "no image at all")],
                vec![],
            ),
        ];
        for (messages, counts) in cases {
            let text = b.render(&messages, true).unwrap();
            let fast = b.encode(&messages, &counts).unwrap();
            assert_eq!(fast, b.encode_expanded(&text, &counts).unwrap(), "{text:?}");
            let pads = fast.iter().filter(|&&id| id == 151_655).count();
            assert_eq!(pads, counts.iter().sum::<usize>());
        }
        assert!(
            b.encode(&[Message::user_with_images(2, "x")], &[4])
                .is_err()
        );
    }
}
