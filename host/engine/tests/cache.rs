//! The prefix and vision caches on a real (tiny, synthetic) model: greedy
//! output with the cache on must equal the output with it off, and two
//! different images must never share KV.

use std::sync::{Arc, OnceLock};

use engine::cache::PrefixOutcome;
use engine::image::{
    DecodeLimits, Encoding, Pattern, RgbImage, decode_image, encode_image, synth_image,
};
use engine::synth::{Arch, Quant, SynthOptions, synthesize};
use engine::{Engine, EngineOptions, GenerateRequest, GenerateResponse};

fn model_dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tiny");
        synthesize(
            &SynthOptions::new(Arch::Tiny, Quant::F32, 3),
            &out,
            &mut |_, _| {},
        )
        .unwrap();
        dir
    })
    .path()
    .join("tiny")
    .leak()
}

fn engine(prefix_budget: Option<usize>) -> Engine {
    let opts = EngineOptions {
        prefix_budget,
        ..EngineOptions::default()
    };
    Engine::load(model_dir(), opts).unwrap()
}

fn image(w: u32, h: u32, seed: u64) -> Arc<RgbImage> {
    Arc::new(synth_image(w, h, Pattern::Gradient, seed).unwrap())
}

fn request(prompt: &str, img: &Arc<RgbImage>) -> GenerateRequest {
    let mut r = GenerateRequest::simple(prompt, vec![img.clone()], 8);
    r.ignore_eos = true;
    r.return_logits = true;
    r
}

/// Runs `req` with the cache on, then off, and checks they agree.
fn run_both(e: &mut Engine, req: &GenerateRequest) -> GenerateResponse {
    e.set_cache_enabled(true);
    let on = e.generate(req, &mut |_| {}).unwrap();
    e.set_cache_enabled(false);
    let off = e.generate(req, &mut |_| {}).unwrap();
    e.set_cache_enabled(true);
    assert_eq!(off.cache.prefix, PrefixOutcome::Disabled);
    assert_eq!(
        on.token_ids, off.token_ids,
        "greedy tokens differ with the cache on ({:?})",
        on.cache
    );
    let (a, b) = (
        on.first_logits.as_ref().unwrap(),
        off.first_logits.as_ref().unwrap(),
    );
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        d < 1e-4,
        "first logits differ by {d} with the cache on ({:?})",
        on.cache
    );
    on
}

fn logit_distance(a: &GenerateResponse, b: &GenerateResponse) -> f32 {
    let (a, b) = (
        a.first_logits.as_ref().unwrap(),
        b.first_logits.as_ref().unwrap(),
    );
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn same_request_twice_is_an_exact_hit() {
    let mut e = engine(None);
    let img = image(320, 320, 1);
    let first = run_both(&mut e, &request("Describe this image.", &img));
    assert_eq!(first.cache.prefix, PrefixOutcome::Miss);
    assert_eq!(first.cache.vision_misses, 1);
    let second = run_both(&mut e, &request("Describe this image.", &img));
    assert_eq!(second.cache.prefix, PrefixOutcome::Exact);
    assert_eq!(second.cache.reused_tokens, second.prompt_tokens - 1);
    // The image lies entirely in the reused prefix: no vision work at all.
    assert_eq!(second.cache.vision_skipped, 1);
}

#[test]
fn same_image_new_prompt_reuses_the_image_part() {
    let mut e = engine(None);
    let img = image(320, 320, 2);
    run_both(&mut e, &request("Describe this image.", &img));
    let r = run_both(&mut e, &request("What colour dominates?", &img));
    assert_eq!(r.cache.prefix, PrefixOutcome::Partial);
    // Everything up to and including <|vision_end|> is reused.
    assert!(r.cache.reused_tokens >= r.image_tokens + 4, "{:?}", r.cache);
    assert!(r.cache.reused_tokens < r.prompt_tokens - 1);
}

#[test]
fn different_images_of_the_same_size_never_share_kv() {
    let mut e = engine(None);
    let (a, b) = (image(320, 320, 10), image(320, 320, 11));
    let ra = run_both(&mut e, &request("Describe this image.", &a));
    let req_b = request("Describe this image.", &b);
    let rb = run_both(&mut e, &req_b);
    // Only the text before the image can be shared.
    let ids = e
        .prompts()
        .encode(&req_b.messages, &[rb.image_tokens])
        .unwrap();
    let image_start = ids
        .iter()
        .position(|&t| t == e.info().image_token_id)
        .unwrap();
    assert_eq!(rb.cache.prefix, PrefixOutcome::Partial);
    assert_eq!(
        rb.cache.reused_tokens, image_start,
        "reused tokens across different images"
    );
    assert_eq!(rb.cache.vision_misses, 1);
    // The images reach the model: their outputs differ.
    assert!(
        logit_distance(&ra, &rb) > 1e-3,
        "two different images gave the same logits"
    );
}

#[test]
fn a_then_b_then_a_hits_a_again() {
    let mut e = engine(None);
    let (a, b) = (image(256, 256, 20), image(256, 256, 21));
    let prompt = "Describe this image.";
    run_both(&mut e, &request(prompt, &a));
    run_both(&mut e, &request(prompt, &b));
    let again = run_both(&mut e, &request(prompt, &a));
    assert_eq!(again.cache.prefix, PrefixOutcome::Exact);
}

#[test]
fn identical_pixels_re_encoded_hit_the_cache() {
    let mut e = engine(None);
    let img = synth_image(300, 200, Pattern::Gradient, 5).unwrap();
    let png = encode_image(&img, Encoding::Png).unwrap();
    let webp = encode_image(&img, Encoding::WebP).unwrap();
    assert_ne!(png, webp);
    let from_png = Arc::new(decode_image("a.png", &png, DecodeLimits::default()).unwrap());
    let from_webp = Arc::new(decode_image("a.webp", &webp, DecodeLimits::default()).unwrap());
    run_both(&mut e, &request("Describe this image.", &from_png));
    let r = run_both(&mut e, &request("Describe this image.", &from_webp));
    assert_eq!(r.cache.prefix, PrefixOutcome::Exact);
    // A new prompt misses the prefix but reuses the vision features.
    e.set_cache_enabled(true);
    let mut q = request("Another question entirely, longer than before.", &from_webp);
    q.messages[0].content.reverse(); // text first: the image now sits after new text
    let r = run_both(&mut e, &q);
    assert_eq!(r.cache.vision_hits, 1, "{:?}", r.cache);
}

#[test]
fn four_resolutions_each_hit_on_repeat() {
    let mut e = engine(None);
    for (i, side) in [224u32, 336, 512, 768].into_iter().enumerate() {
        let img = image(side, side, 40 + i as u64);
        let first = run_both(&mut e, &request("Describe this image.", &img));
        assert_eq!(
            first.cache.prefix,
            if i == 0 {
                PrefixOutcome::Miss
            } else {
                PrefixOutcome::Partial
            }
        );
        let again = run_both(&mut e, &request("Describe this image.", &img));
        assert_eq!(again.cache.prefix, PrefixOutcome::Exact, "{side}x{side}");
    }
}

#[test]
fn evicted_prefixes_are_recomputed_correctly() {
    // Room for about one 256x256 prompt's KV: the second evicts the first.
    let mut probe = engine(None);
    let first = run_both(
        &mut probe,
        &request("Describe this image.", &image(256, 256, 60)),
    );
    let bytes = probe.cache_stats().prefix_bytes as usize;
    assert!(bytes > 0);
    drop(first);
    let mut e = engine(Some(bytes + bytes / 2));
    let (a, b) = (image(256, 256, 60), image(256, 256, 61));
    run_both(&mut e, &request("Describe this image.", &a));
    run_both(&mut e, &request("Describe this image.", &b));
    assert!(e.cache_stats().prefix_evictions >= 1);
    let again = run_both(&mut e, &request("Describe this image.", &a));
    assert_ne!(
        again.cache.prefix,
        PrefixOutcome::Exact,
        "A should have been evicted"
    );
    assert!(e.cache_stats().prefix_bytes as usize <= bytes + bytes / 2);
}

#[test]
fn clear_and_statistics() {
    let mut e = engine(None);
    let img = image(256, 256, 70);
    run_both(&mut e, &request("Describe this image.", &img));
    run_both(&mut e, &request("Describe this image.", &img));
    let s = e.cache_stats();
    assert_eq!(
        (s.prefix_lookups, s.prefix_exact_hits, s.prefix_misses),
        (2, 1, 1)
    );
    assert!(s.vision_entries == 1 && s.prefix_entries == 1);
    e.clear_cache();
    let s = e.cache_stats();
    assert_eq!(
        (s.prefix_entries, s.vision_entries, s.prefix_bytes),
        (0, 0, 0)
    );
    let r = run_both(&mut e, &request("Describe this image.", &img));
    assert_eq!(r.cache.prefix, PrefixOutcome::Miss);
}
