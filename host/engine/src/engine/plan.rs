//! A request's plan, before any model work: each image's token count, the prompt's token ids with the images' placeholder runs, the
//! images' content hashes, the prefix cache's keys and the 3-D positions.

use std::time::Instant;

use crate::cache::{TokenKey, token_keys};
use crate::config::PreprocessorConfig;
use crate::error::{Error, Result};
use crate::generate::GenerateRequest;
use crate::image::model_size;
use crate::model::positions::{Positions, rope_positions};
use crate::model::{ImageSpan, image_spans};
use crate::prompt::PromptBuilder;

/// What the stages after planning read.
pub(super) struct RequestPlan {
    /// Each image's placeholder tokens.
    pub counts: Vec<usize>,
    pub ids: Vec<u32>,
    /// Where each image's placeholders sit in `ids`.
    pub spans: Vec<ImageSpan>,
    pub image_hashes: Vec<blake3::Hash>,
    /// Keys of the prompt's blocks for the prefix cache.
    pub keys: Vec<TokenKey>,
    pub positions: Positions,
}

impl RequestPlan {
    /// The plan of `req` under the processor settings `pre` and the prompt
    /// format of `prompts`, whose images stand as `image_token`.
    pub fn new(
        req: &GenerateRequest,
        pre: &PreprocessorConfig,
        prompts: &PromptBuilder,
        image_token: u32,
        marks: &mut StageMarks,
    ) -> Result<RequestPlan> {
        let merge = pre.merge_size;
        let grids = req
            .images
            .iter()
            .map(|img| {
                let (h, w) = model_size(img, pre)?;
                Ok([1, h as usize / pre.patch_size, w as usize / pre.patch_size])
            })
            .collect::<Result<Vec<_>>>()?;
        let counts: Vec<usize> = grids
            .iter()
            .map(|g| g.iter().product::<usize>() / (merge * merge))
            .collect();
        let ids = prompts.encode(&req.messages, &counts)?;
        let spans = image_spans(&ids, image_token);
        if spans.len() != req.images.len() || spans.iter().zip(&counts).any(|(s, &c)| s.len != c) {
            return Err(Error::request(
                "the prompt's text contains image placeholder tokens of its own; remove them from the text",
            ));
        }
        marks.mark("prompt ids");
        let image_hashes: Vec<blake3::Hash> = req.images.iter().map(|i| i.content_hash()).collect();
        marks.mark("image hashes");
        let keys = token_keys(&ids, &spans, &image_hashes);
        let positions = rope_positions(&ids, image_token, &grids, merge)?;
        marks.mark("token keys, positions");
        Ok(RequestPlan {
            counts,
            ids,
            spans,
            image_hashes,
            keys,
            positions,
        })
    }

    /// Prompt tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Named intervals of one stage, printed to stderr when profiling asks (a
/// measuring aid); off, marking does nothing.
pub(super) struct StageMarks(Option<Marks>);

struct Marks {
    last: Instant,
    spans: Vec<(&'static str, f64)>,
}

impl StageMarks {
    pub fn new(on: bool) -> StageMarks {
        StageMarks(on.then(|| Marks {
            last: Instant::now(),
            spans: vec![],
        }))
    }

    /// Ends the interval named `name`.
    pub fn mark(&mut self, name: &'static str) {
        if let Some(m) = &mut self.0 {
            let now = Instant::now();
            m.spans
                .push((name, now.duration_since(m.last).as_secs_f64()));
            m.last = now;
        }
    }

    pub fn report(&self, title: &str) {
        let Some(m) = &self.0 else {
            return;
        };
        let parts: Vec<String> = m
            .spans
            .iter()
            .map(|(name, s)| format!("{name} {:.2} ms", s * 1e3))
            .collect();
        eprintln!("{title}: {}", parts.join(", "));
    }
}
