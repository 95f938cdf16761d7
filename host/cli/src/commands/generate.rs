//! `host generate`: one request, printed with its stage timings.

use std::sync::Arc;

use anyhow::{Context, Result};
use engine::image::{DecodeLimits, decode_image};
use engine::{Engine, GenerateRequest, Sampling};

use crate::cli::GenerateArgs;
use crate::model_resolve;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: GenerateArgs) -> Result<()> {
    let dir = model_resolve::resolve_args(settings, &args.model, false)?;
    let mut images = vec![];
    for path in &args.image {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        images.push(Arc::new(decode_image(
            &path.display().to_string(),
            &bytes,
            DecodeLimits::default(),
        )?));
    }
    let opts = settings.engine_options(&args.model);
    let mut engine = Engine::load(&dir, opts)
        .with_context(|| format!("loading the model in {}", dir.display()))?;
    let mut req = GenerateRequest::simple(&args.prompt, images, args.max_tokens);
    req.sampling = Sampling {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
    };
    req.ignore_eos = args.ignore_eos;
    let resp = engine.generate(&req, &mut |_| {})?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    let info = engine.info();
    println!("{}", resp.text);
    eprintln!();
    if info.synthetic {
        eprintln!(
            "note: {} has synthetic (random) weights; the text is meaningless",
            info.name
        );
    }
    let t = &resp.timings;
    eprintln!(
        "tokens: {} prompt ({} image, {} text), {} output ({:?})",
        resp.prompt_tokens,
        resp.image_tokens,
        resp.text_tokens,
        resp.output_tokens,
        resp.finish_reason
    );
    eprintln!(
        "time: preprocess {:.1} ms, vision {:.1} ms, prefill {:.1} ms, TTFT {:.1} ms, decode {:.1} ms, total {:.1} ms",
        t.preprocess_s * 1e3,
        t.vision_s * 1e3,
        t.prefill_s * 1e3,
        t.ttft_s * 1e3,
        t.decode_s * 1e3,
        t.total_s * 1e3
    );
    if let Some(tps) = t.decode_tok_s() {
        eprintln!(
            "decode: {tps:.1} tok/s; peak memory {:.1} MB",
            resp.peak_memory_bytes as f64 / 1e6
        );
    }
    Ok(())
}
