//! The chat template shipped with the model, rendered with minijinja under
//! the settings transformers uses (trim_blocks, lstrip_blocks, Python string
//! methods). Qwen's Instruct format is built in for directories without one.

use std::path::Path;

use minijinja::{Environment, ErrorKind, context};
use serde_json::Value;

use super::{Content, Message};
use crate::error::{Error, Result};

pub enum ChatTemplate {
    Jinja {
        env: Box<Environment<'static>>,
        source: String,
    },
    /// Qwen3-VL Instruct's format, for model directories that ship no template.
    QwenDefault,
}

impl ChatTemplate {
    /// Looks in `chat_template.jinja`, `chat_template.json`, then
    /// `tokenizer_config.json`, as transformers does (`docs/qwen3-vl.md` §5.1a).
    pub fn load(dir: &Path) -> Result<ChatTemplate> {
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            let src = std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?;
            return ChatTemplate::from_source(src);
        }
        for file in ["chat_template.json", "tokenizer_config.json"] {
            let path = dir.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Error::config(&path, format!("invalid JSON: {e}")))?;
            match v.get("chat_template") {
                Some(Value::String(s)) => return ChatTemplate::from_source(s.clone()),
                // A list of named templates: use "default".
                Some(Value::Array(list)) => {
                    let default = list
                        .iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                        .and_then(|t| t.get("template"))
                        .and_then(Value::as_str);
                    if let Some(s) = default {
                        return ChatTemplate::from_source(s.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(ChatTemplate::QwenDefault)
    }

    pub fn from_source(source: String) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Template(e.to_string()))?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.clone())
            .map_err(|e| Error::Template(format!("cannot parse: {e:#}")))?;
        Ok(ChatTemplate::Jinja {
            env: Box::new(env),
            source,
        })
    }

    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match self {
            ChatTemplate::Jinja { env, .. } => {
                let tmpl = env
                    .get_template("chat")
                    .map_err(|e| Error::Template(e.to_string()))?;
                let msgs = minijinja::Value::from(minijinja::value::Serde(messages));
                tmpl.render(context! {
                    messages => msgs,
                    add_generation_prompt => add_generation_prompt,
                    add_vision_id => false,
                    bos_token => "",
                    eos_token => "<|im_end|>",
                })
                .map_err(|e| Error::Template(format!("cannot render: {e:#}")))
            }
            ChatTemplate::QwenDefault => Ok(qwen_default(messages, add_generation_prompt)),
        }
    }

    pub fn source(&self) -> Option<&str> {
        match self {
            ChatTemplate::Jinja { source, .. } => Some(source),
            ChatTemplate::QwenDefault => None,
        }
    }
}

/// Qwen3-VL Instruct rendering (`docs/qwen3-vl.md` §5.1): no default system prompt,
/// content items concatenated, images as vision_start/image_pad/vision_end.
fn qwen_default(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        for c in &m.content {
            match c {
                Content::Text { text } => out.push_str(text),
                Content::Image => out.push_str("<|vision_start|><|image_pad|><|vision_end|>"),
            }
        }
        out.push_str("<|im_end|>\n");
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_format_matches_the_spec_example() {
        let msgs = vec![Message::user_with_images(1, "Describe this image.")];
        assert_eq!(
            qwen_default(&msgs, true),
            "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn jinja_and_builtin_agree_on_a_qwen_style_template() {
        let src = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}\
            {%- for content in message.content %}{%- if content.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>\
            {%- elif content.type == 'text' %}{{- content.text }}{%- endif %}{%- endfor %}{{- '<|im_end|>\\n' }}{%- endfor %}\
            {%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
        let t = ChatTemplate::from_source(src.to_string()).unwrap();
        let msgs = vec![
            Message {
                role: "system".into(),
                content: vec![Content::Text {
                    text: "You are terse.".into(),
                }],
            },
            Message::user_with_images(2, "Compare."),
        ];
        assert_eq!(t.render(&msgs, true).unwrap(), qwen_default(&msgs, true));
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let t = ChatTemplate::from_source(
            "{{ messages[0].content[0].text.strip().upper() }}{% if messages|length > 1 %}{{ raise_exception('too many') }}{% endif %}".into(),
        )
        .unwrap();
        let one = vec![Message {
            role: "user".into(),
            content: vec![Content::Text {
                text: "  hi ".into(),
            }],
        }];
        assert_eq!(t.render(&one, false).unwrap(), "HI");
        let two = vec![one[0].clone(), one[0].clone()];
        assert!(
            t.render(&two, false)
                .unwrap_err()
                .to_string()
                .contains("too many")
        );
    }
}
