//! Continuous batching changes no answer: requests of mixed lengths and
//! images, joining a running batch at different steps and prefilled in
//! chunks, give the tokens and first logits they give alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::image::{Pattern, synth_image};
use engine::synth::{Arch, Quant, SynthOptions, synthesize};
use engine::{
    Batch, BatchEvent, CancelToken, Engine, EngineOptions, GenerateRequest, GenerateResponse,
    Sampling, SequenceId,
};

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

fn engine(dir: &Path, cache: bool) -> Engine {
    let opts = EngineOptions {
        cache_enabled: cache,
        ..EngineOptions::default()
    };
    Engine::load(dir, opts).unwrap()
}

fn request(text: &str, image: Option<(u32, u32, u64)>, max_tokens: usize) -> GenerateRequest {
    let images = image
        .map(|(w, h, seed)| vec![Arc::new(synth_image(w, h, Pattern::Noise, seed).unwrap())])
        .unwrap_or_default();
    let mut r = GenerateRequest::simple(text, images, max_tokens);
    r.ignore_eos = true;
    r.return_logits = true;
    r
}

/// `r` sampled at temperature 1 with `seed`: a random model's greedy
/// output repeats one token, while sampled tokens follow every change of
/// the logits, so they show a step that went wrong.
fn sampled(mut r: GenerateRequest, seed: u64) -> GenerateRequest {
    r.sampling = Sampling {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        seed,
    };
    r
}

fn requests() -> Vec<GenerateRequest> {
    vec![
        sampled(request("Describe the picture.", Some((64, 64, 1)), 40), 1),
        sampled(request("Count to ten.", None, 30), 2),
        request(&"A long prompt about boats. ".repeat(12), None, 9),
        sampled(request("What is in this image?", Some((96, 48, 2)), 14), 3),
        request("Short.", None, 1),
    ]
}

/// Runs `reqs` through one batch: the first two join at once, the others
/// after `later` steps each. Returns the responses in request order, the
/// largest number of sequences decoding together, and each request's
/// streamed tokens.
fn batched(
    e: &mut Engine,
    reqs: &[GenerateRequest],
    chunk: usize,
    later: usize,
) -> (Vec<GenerateResponse>, usize, Vec<Vec<u32>>) {
    let mut batch = Batch::new(8, chunk);
    let mut ids: HashMap<SequenceId, usize> = HashMap::new();
    let mut responses: Vec<Option<GenerateResponse>> = reqs.iter().map(|_| None).collect();
    let mut streamed = vec![vec![]; reqs.len()];
    let mut next = 0;
    let mut most = 0;
    let mut step = 0;
    while responses.iter().any(Option::is_none) {
        if next < reqs.len() && (next < 2 || step % later == 0) {
            let id = e
                .batch_add(&mut batch, &reqs[next], CancelToken::new())
                .unwrap()
                .expect("room in the batch");
            ids.insert(id, next);
            next += 1;
        }
        most = most.max(batch.decoding());
        for ev in e.batch_step(&mut batch).unwrap() {
            match ev {
                BatchEvent::Token { seq, index, id, .. } => {
                    let s = &mut streamed[ids[&seq]];
                    assert_eq!(index, s.len(), "tokens come in order");
                    s.push(id);
                }
                BatchEvent::Done { seq, response } => responses[ids[&seq]] = Some(*response),
                BatchEvent::Cancelled { seq } => panic!("{seq:?} cancelled"),
            }
        }
        step += 1;
        assert!(step < 1000, "the batch does not finish");
    }
    assert!(batch.is_empty());
    let responses = responses.into_iter().map(Option::unwrap).collect();
    (responses, most, streamed)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn batched_requests_give_what_they_give_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    let mut e = engine(&dir, false);
    let reqs = requests();
    let alone: Vec<GenerateResponse> = reqs
        .iter()
        .map(|r| e.generate(r, &mut |_| {}).unwrap())
        .collect();
    // Chunks of 16 tokens: every prompt takes several steps to prefill,
    // while the sequences before it decode.
    let (together, most, streamed) = batched(&mut e, &reqs, 16, 3);
    assert!(most >= 3, "at most {most} sequences decoded together");
    let distinct = |r: &GenerateResponse| {
        let mut ids = r.token_ids.clone();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    assert!(
        distinct(&alone[1]) > 10,
        "sampled tokens vary: {:?}",
        alone[1].token_ids
    );
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a.token_ids, b.token_ids, "request {i}: tokens");
        assert_eq!(b.token_ids, streamed[i], "request {i}: streamed tokens");
        assert_eq!(b.output_tokens, reqs[i].max_tokens);
        assert_eq!(
            (a.prompt_tokens, a.image_tokens),
            (b.prompt_tokens, b.image_tokens)
        );
        let d = max_diff(
            a.first_logits.as_ref().unwrap(),
            b.first_logits.as_ref().unwrap(),
        );
        assert!(d <= 1e-4, "request {i}: first logits differ by {d}");
        assert_eq!(b.timings.token_times_s.len(), b.output_tokens);
    }
}

#[test]
fn a_cancelled_sequence_leaves_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    let mut e = engine(&dir, false);
    let reqs = [request("One.", None, 30), request("Two.", None, 8)];
    let alone = e.generate(&reqs[1], &mut |_| {}).unwrap();
    let mut batch = Batch::new(4, 64);
    let cancel = CancelToken::new();
    let a = e
        .batch_add(&mut batch, &reqs[0], cancel.clone())
        .unwrap()
        .unwrap();
    let b = e
        .batch_add(&mut batch, &reqs[1], CancelToken::new())
        .unwrap()
        .unwrap();
    let (mut cancelled, mut done) = (false, None);
    for step in 0..100 {
        if step == 4 {
            cancel.cancel();
        }
        for ev in e.batch_step(&mut batch).unwrap() {
            match ev {
                BatchEvent::Cancelled { seq } => {
                    assert_eq!(seq, a);
                    assert!(step >= 4);
                    cancelled = true;
                }
                BatchEvent::Done { seq, response } => {
                    assert_eq!(seq, b, "the cancelled sequence does not finish");
                    done = Some(response);
                }
                BatchEvent::Token { .. } => {}
            }
        }
        if batch.is_empty() {
            break;
        }
    }
    assert!(cancelled);
    assert_eq!(done.unwrap().token_ids, alone.token_ids);
    assert_eq!(
        batch.held_bytes(),
        0,
        "what the sequences held is given back"
    );
}

#[test]
fn a_batch_is_limited_by_count_and_by_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    let mut e = engine(&dir, false);
    let r = request("Hello.", None, 4);
    let mut two = Batch::new(2, 64);
    for _ in 0..2 {
        assert!(
            e.batch_add(&mut two, &r, CancelToken::new())
                .unwrap()
                .is_some()
        );
    }
    assert!(
        e.batch_add(&mut two, &r, CancelToken::new())
            .unwrap()
            .is_none()
    );

    // A request that fits alone joins an empty batch, but not one that
    // already holds most of the engine's memory limit.
    let cost = two.held_bytes() / 2;
    let opts = EngineOptions {
        cache_enabled: false,
        request_memory: Some(cost * 3 / 2),
        ..EngineOptions::default()
    };
    let mut small = Engine::load(&dir, opts).unwrap();
    let mut batch = Batch::new(8, 64);
    assert!(
        small
            .batch_add(&mut batch, &r, CancelToken::new())
            .unwrap()
            .is_some()
    );
    assert!(
        small
            .batch_add(&mut batch, &r, CancelToken::new())
            .unwrap()
            .is_none()
    );
}

#[test]
fn requests_with_the_same_image_share_its_features() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    let mut e = engine(&dir, true);
    let reqs = [
        request("What is this?", Some((64, 64, 9)), 4),
        request("Describe it.", Some((64, 64, 9)), 4),
    ];
    let (responses, _, _) = batched(&mut e, &reqs, 64, 1);
    assert_eq!(responses[0].cache.vision_misses, 1);
    assert_eq!(responses[1].cache.vision_hits, 1);
    assert_eq!(e.cache_stats().vision_hits, 1);
}
