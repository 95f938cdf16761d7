//! What a plugin can send, arbitrary: parameters checked against declared
//! specs, request validation, and the placement of image placeholders
//! (3-D positions and cache keys). Errors are fine; panics are bugs.
#![no_main]

use arbitrary::Arbitrary;
use engine::model::image_spans;
use engine::model::positions::rope_positions;
use engine::prompt::{Content, Message};
use engine::{GenerateRequest, Sampling};
use libfuzzer_sys::fuzz_target;
use runtime::bindings::wit_types::{ParamKind, ParamSpec};

#[derive(Arbitrary, Debug)]
struct Input {
    specs: Vec<(String, u8, String)>,
    sets: Vec<(String, String)>,
    messages: Vec<(String, Vec<Option<String>>)>,
    max_tokens: u32,
    temperature: f32,
    top_p: f32,
    top_k: u32,
    ids: Vec<u16>,
    grids: Vec<(u8, u8, u8)>,
}

fuzz_target!(|input: Input| {
    let specs: Vec<ParamSpec> = input
        .specs
        .iter()
        .take(16)
        .map(|(n, k, d)| ParamSpec {
            name: n.clone(),
            kind: match k % 4 {
                0 => ParamKind::Boolean,
                1 => ParamKind::Integer,
                2 => ParamKind::Float,
                _ => ParamKind::Text,
            },
            default_value: d.clone(),
            help: String::new(),
        })
        .collect();
    let _ = runtime::params::resolve_params(&specs, &input.sets);

    let messages: Vec<Message> = input
        .messages
        .iter()
        .take(8)
        .map(|(role, parts)| Message {
            role: role.clone(),
            content: parts
                .iter()
                .take(8)
                .map(|p| match p {
                    Some(t) => Content::Text { text: t.clone() },
                    None => Content::Image,
                })
                .collect(),
        })
        .collect();
    let req = GenerateRequest {
        messages,
        images: vec![],
        max_tokens: input.max_tokens as usize,
        sampling: Sampling {
            temperature: input.temperature,
            top_p: input.top_p,
            top_k: input.top_k,
            seed: 0,
        },
        ignore_eos: false,
        return_logits: false,
    };
    let _ = engine::validate_request(&req);

    // Placeholder runs against grids: positions either line up or are refused.
    let pad = 9u32;
    let ids: Vec<u32> = input
        .ids
        .iter()
        .take(4096)
        .map(|&i| if i % 3 == 0 { pad } else { i as u32 })
        .collect();
    let grids: Vec<[usize; 3]> = input
        .grids
        .iter()
        .take(8)
        .map(|&(t, h, w)| {
            [
                1 + t as usize % 2,
                2 * (1 + h as usize % 16),
                2 * (1 + w as usize % 16),
            ]
        })
        .collect();
    if let Ok(p) = rope_positions(&ids, pad, &grids, 2) {
        assert_eq!(p.len(), ids.len());
        assert!(image_spans(&ids, pad).len() <= grids.len());
    }
});
