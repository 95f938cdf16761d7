//! Requests are costed before any work: over the model's context or the
//! engine's memory limit they are refused with the numbers, and within them
//! long inputs run in pieces that give what one pass gives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::image::{Pattern, synth_image};
use engine::synth::{Arch, Quant, SynthOptions, synthesize};
use engine::{Engine, EngineOptions, GenerateRequest, GenerateResponse};

fn tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny");
    synthesize(
        &SynthOptions::new(Arch::Tiny, Quant::Bf16, 3),
        &out,
        &mut |_, _| {},
    )
    .unwrap();
    out
}

fn engine(dir: &Path, request_memory: Option<u64>, piece_flops: Option<f64>) -> Engine {
    let opts = EngineOptions {
        cache_enabled: false,
        request_memory,
        piece_flops,
        ..EngineOptions::default()
    };
    Engine::load(dir, opts).unwrap()
}

/// A 1024x1024 image (4096 patches) and about 1,500 tokens of text after it.
fn long_request() -> GenerateRequest {
    let img = Arc::new(synth_image(1024, 1024, Pattern::Gradient, 5).unwrap());
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(50);
    let mut r = GenerateRequest::simple(&text, vec![img], 4);
    r.ignore_eos = true;
    r.return_logits = true;
    r
}

fn run(e: &mut Engine, r: &GenerateRequest) -> GenerateResponse {
    e.generate(r, &mut |_| {}).unwrap()
}

#[test]
fn long_inputs_in_pieces_give_what_one_pass_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    let r = long_request();

    let mut whole = engine(&dir, None, Some(f64::INFINITY));
    let a = whole.admission();
    assert_eq!(a.prefill_piece(3000, 3000), 3000, "one pass");
    assert_eq!(a.vision_piece(4096), 4096);
    let one = run(&mut whole, &r);
    drop(whole);

    // 96 MiB per request: pieces of 16 MiB of scores and activations.
    let mut pieces = engine(&dir, Some(96 << 20), Some(f64::INFINITY));
    let a = pieces.admission();
    let prompt = one.prompt_tokens;
    assert!(prompt > 1500, "{prompt} prompt tokens");
    assert!(
        a.prefill_piece(prompt, prompt) * 3 < prompt,
        "prefill in pieces"
    );
    assert!(a.vision_piece(4096) * 8 <= 4096, "vision in pieces");
    let split = run(&mut pieces, &r);

    drop(pieces);
    same_output(&one, &split);

    // The default: pieces of about 2e9 operations on the CPU (one piece on
    // a GPU at this size).
    let mut default = engine(&dir, None, None);
    if mlx::default_device() == mlx::Device::Cpu {
        assert!(default.admission().prefill_piece(prompt, prompt) * 3 < prompt);
    }
    same_output(&one, &run(&mut default, &r));
}

/// Same tokens, and first logits within the compute dtype's rounding: f32 on
/// the CPU (1e-4); bf16 on a GPU, where pieces sum in another order (an H100
/// gave 4.9e-3 on this request).
fn same_output(a: &GenerateResponse, b: &GenerateResponse) {
    let tolerance = if mlx::default_device() == mlx::Device::Cpu {
        1e-4
    } else {
        2e-2
    };
    assert_eq!(a.token_ids, b.token_ids);
    let (l1, l2) = (
        a.first_logits.as_ref().unwrap(),
        b.first_logits.as_ref().unwrap(),
    );
    let worst = l1
        .iter()
        .zip(l2)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < tolerance, "first logits differ by {worst}");
}

#[test]
fn over_the_limits_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    let r = long_request();

    let mut small = engine(&dir, Some(8 << 20), None);
    let err = small.generate(&r, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("over the engine's limit of 8.0 MiB per request") && err.contains("KV cache"),
        "{err}"
    );
    // The same engine still answers what fits.
    let ok = GenerateRequest::simple("Hi", vec![], 2);
    small.generate(&ok, &mut |_| {}).unwrap();

    // A model trained for 512 positions.
    let cfg_path = dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "\"max_position_embeddings\": 262144",
        "\"max_position_embeddings\": 512",
    );
    assert!(cfg.contains("\"max_position_embeddings\": 512"));
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut short = engine(&dir, None, None);
    let err = short.generate(&r, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("over the model's context of 512") && err.contains("1024 of them for images"),
        "{err}"
    );
    let mut near = GenerateRequest::simple("Hi", vec![], 2);
    near.max_tokens = 600;
    let err = short.generate(&near, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("up to 600 output tokens"), "{err}");
}
