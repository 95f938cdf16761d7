//! A Qwen-shaped byte-level BPE tokenizer for synthetic models: 256 byte
//! tokens, merges up to id 151642, then Qwen's added tokens at their real ids
//! (151643–151668, `docs/qwen3-vl.md` §1.4). Loadable by `tokenizers` in Rust and Python.

use serde_json::{Value, json};

/// Qwen's added tokens: (id, content, special).
pub const ADDED_TOKENS: [(u32, &str, bool); 26] = [
    (151_643, "<|endoftext|>", true),
    (151_644, "<|im_start|>", true),
    (151_645, "<|im_end|>", true),
    (151_646, "<|object_ref_start|>", true),
    (151_647, "<|object_ref_end|>", true),
    (151_648, "<|box_start|>", true),
    (151_649, "<|box_end|>", true),
    (151_650, "<|quad_start|>", true),
    (151_651, "<|quad_end|>", true),
    (151_652, "<|vision_start|>", true),
    (151_653, "<|vision_end|>", true),
    (151_654, "<|vision_pad|>", true),
    (151_655, "<|image_pad|>", true),
    (151_656, "<|video_pad|>", true),
    (151_657, "<tool_call>", false),
    (151_658, "</tool_call>", false),
    (151_659, "<|fim_prefix|>", false),
    (151_660, "<|fim_middle|>", false),
    (151_661, "<|fim_suffix|>", false),
    (151_662, "<|fim_pad|>", false),
    (151_663, "<|repo_name|>", false),
    (151_664, "<|file_sep|>", false),
    (151_665, "<tool_response>", false),
    (151_666, "</tool_response>", false),
    (151_667, "<think>", false),
    (151_668, "</think>", false),
];

/// First id after the BPE vocabulary.
const BPE_VOCAB: usize = 151_643;

/// Qwen2's pre-tokenizer split pattern.
const SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's byte → printable character map (what ByteLevel uses).
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut map = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        map[*b as usize] = char::from_u32(c).expect("valid char");
    }
    map
}

/// The `tokenizer.json` document.
pub fn tokenizer_json() -> Value {
    let chars = byte_chars();
    let mut vocab = serde_json::Map::with_capacity(BPE_VOCAB);
    let mut tokens: Vec<String> = Vec::with_capacity(BPE_VOCAB);
    for c in &chars {
        let t = c.to_string();
        vocab.insert(t.clone(), json!(tokens.len()));
        tokens.push(t);
    }
    // Merged tokens over a common alphabet: all pairs, then triples in order,
    // until the vocabulary reaches Qwen's size. Each merge joins an existing
    // token with one more character.
    let space = chars[b' ' as usize];
    let newline = chars[b'\n' as usize];
    let mut alphabet: Vec<char> = vec![space];
    alphabet.extend('a'..='z');
    alphabet.extend('A'..='Z');
    alphabet.extend('0'..='9');
    alphabet.extend(['.', ',', '\'', '-', newline]);
    let mut merges: Vec<Value> = Vec::with_capacity(BPE_VOCAB);
    let mut level: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    'outer: while tokens.len() < BPE_VOCAB {
        let mut next = vec![];
        for prefix in &level {
            for c in &alphabet {
                if tokens.len() >= BPE_VOCAB {
                    break 'outer;
                }
                let t = format!("{prefix}{c}");
                if vocab.contains_key(&t) {
                    continue;
                }
                merges.push(json!([prefix, c.to_string()]));
                vocab.insert(t.clone(), json!(tokens.len()));
                tokens.push(t.clone());
                next.push(t);
            }
        }
        level = next;
    }
    let added: Vec<Value> = ADDED_TOKENS
        .iter()
        .map(|(id, content, special)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": special})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    })
}

/// `tokenizer_config.json` as transformers writes it for Qwen.
pub fn tokenizer_config_json() -> Value {
    let mut decoder = serde_json::Map::new();
    for (id, content, special) in ADDED_TOKENS {
        decoder.insert(
            id.to_string(),
            json!({"content": content, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": special}),
        );
    }
    json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"],
        "bos_token": null,
        "clean_up_tokenization_spaces": false,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 262144,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": false,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": null
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_tokens_sit_at_qwen_ids_and_text_round_trips() {
        let json = tokenizer_json().to_string();
        let tk = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(tk.get_vocab_size(true), 151_669);
        assert_eq!(tk.token_to_id("<|image_pad|>"), Some(151_655));
        assert_eq!(tk.token_to_id("<|im_end|>"), Some(151_645));
        let text = "<|im_start|>user\nDescribe this image, in 3 words.<|im_end|>\n";
        let enc = tk.encode(text, true).unwrap();
        assert_eq!(enc.get_ids()[0], 151_644);
        assert!(
            enc.get_ids().len() < text.len() / 2,
            "merges shorten text: {}",
            enc.get_ids().len()
        );
        assert_eq!(tk.decode(enc.get_ids(), false).unwrap(), text);
    }
}
