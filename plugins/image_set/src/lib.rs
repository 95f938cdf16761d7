//! # image_set
//!
//! Runs the model over your own images. Grant a folder with
//! `--images DIR` (or `--images NAME=DIR`); the plugin uses every image in it,
//! or the entries of a manifest in that folder (`--set manifest=tasks.jsonl`):
//!
//! ```json
//! [{"image": "cat.png", "prompt": "What animal is this?", "expected": "A cat."},
//!  {"image": "sub/receipt.jpg", "prompt": "What is the total?", "expected_regex": "\\$?42(\\.00)?"}]
//! ```
//!
//! JSON (an array) or JSONL (one object per line). `prompt`, `expected`
//! (exact text, compared trimmed) and `expected_regex` are optional; with an
//! expectation the run records a check per image and a verdict.
//!
//! Run: `host run --plugin image_set.wasm --images ./photos [--set manifest=tasks.jsonl]`.

use regex_lite::Regex;
use serde_json::Value;
use vlmbench_sdk::engine::{self, GenerateResponse};
use vlmbench_sdk::stats::Summary;
use vlmbench_sdk::table::{self, Table};
use vlmbench_sdk::types::{ParamKind, PluginInfo};
use vlmbench_sdk::{Params, Workload, images, param, progress, request, response, results};

struct ImageSet;

struct Task {
    image: String,
    prompt: String,
    expected: Option<String>,
    expected_regex: Option<String>,
}

fn parse_manifest(text: &str, default_prompt: &str) -> Result<Vec<Task>, String> {
    let entries: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(a)) => a,
        Ok(other) => vec![other],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| format!("manifest line {}: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?,
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let image = field("image")
                .ok_or_else(|| format!("manifest entry {}: no \"image\" field", i + 1))?;
            let expected_regex = field("expected_regex");
            if let Some(re) = &expected_regex {
                Regex::new(re).map_err(|err| {
                    format!("manifest entry {}: bad expected_regex: {err}", i + 1)
                })?;
            }
            Ok(Task {
                image,
                prompt: field("prompt").unwrap_or_else(|| default_prompt.to_string()),
                expected: field("expected"),
                expected_regex,
            })
        })
        .collect()
}

fn check(task: &Task, text: &str) -> Option<bool> {
    if let Some(exact) = &task.expected {
        return Some(text.trim() == exact.trim());
    }
    task.expected_regex
        .as_ref()
        .map(|re| Regex::new(re).map(|r| r.is_match(text)).unwrap_or(false))
}

fn cell(text: &str, n: usize) -> String {
    let t: String = text.chars().take(n).collect::<String>().replace('\n', " ");
    if text.chars().count() > n {
        format!("{t}…")
    } else {
        t
    }
}

impl Workload for ImageSet {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "image_set".into(),
            version: "0.1.0".into(),
            description:
                "Per-image and aggregate figures over your own images, with optional answer checks"
                    .into(),
            params: vec![
                param(
                    "set",
                    ParamKind::Text,
                    "",
                    "the granted set to use (default: the first)",
                ),
                param(
                    "manifest",
                    ParamKind::Text,
                    "",
                    "a JSON or JSONL manifest in the set (default: every image)",
                ),
                param(
                    "prompt",
                    ParamKind::Text,
                    "Describe this image.",
                    "prompt for images without one",
                ),
                param(
                    "max_tokens",
                    ParamKind::Integer,
                    "128",
                    "output tokens at most",
                ),
                param(
                    "ignore_eos",
                    ParamKind::Boolean,
                    "false",
                    "generate exactly max_tokens",
                ),
                param(
                    "warmup",
                    ParamKind::Integer,
                    "1",
                    "warm-up requests before measuring (on the first image)",
                ),
                param(
                    "repeats",
                    ParamKind::Integer,
                    "1",
                    "measured requests per image",
                ),
                param(
                    "limit",
                    ParamKind::Integer,
                    "0",
                    "use at most this many images (0: all)",
                ),
                param(
                    "cache",
                    ParamKind::Boolean,
                    "false",
                    "leave the prefix and vision caches on (off: every repeat is computed in full)",
                ),
            ],
        }
    }

    fn run(p: Params) -> Result<(), String> {
        let sets = images::list_sets();
        if sets.is_empty() {
            return Err(
                "no images were granted: run with --images DIR (or --images NAME=DIR)".into(),
            );
        }
        let set = match p.text("set")?.as_str() {
            "" => sets[0].name.clone(),
            s => s.to_string(),
        };
        let prompt = p.text("prompt")?;
        let manifest = p.text("manifest")?;
        let mut tasks = if manifest.is_empty() {
            images::list_images(&set)?
                .into_iter()
                .map(|image| Task {
                    image,
                    prompt: prompt.clone(),
                    expected: None,
                    expected_regex: None,
                })
                .collect()
        } else {
            parse_manifest(&images::read_text(&set, &manifest)?, &prompt)?
        };
        let limit = p.int_in("limit", 0, 1_000_000)? as usize;
        if limit > 0 {
            tasks.truncate(limit);
        }
        if tasks.is_empty() {
            return Err(format!("set {set:?} has no images to run"));
        }
        let max_tokens = p.int_in("max_tokens", 1, 32_768)? as u32;
        let warmup = p.int_in("warmup", 0, 100)? as u32;
        let repeats = p.int_in("repeats", 1, 1000)? as u32;
        let ignore_eos = p.bool("ignore_eos")?;
        // Off by default: with it on, the warm-up and each first repeat
        // would fill the cache and later repeats would time cache hits.
        let before = engine::cache_stats();
        if !p.bool("cache")?
            && let Err(e) = engine::cache_configure(Some(false), None, None)
        {
            vlmbench_sdk::warn(&format!("the cache stays as it is: {e}"));
        }
        vlmbench_sdk::log(&format!(
            "{} images from set {set:?}, {repeats} measured request(s) each",
            tasks.len()
        ));

        let make = |t: &Task, label: &str, warm: bool| {
            let mut r = request::with_images(&t.prompt, 1, max_tokens);
            r.ignore_eos = ignore_eos;
            r.label = label.to_string();
            r.warmup = warm;
            r
        };
        let total = warmup + tasks.len() as u32 * repeats;
        let mut done = 0;
        if warmup > 0 {
            let img = images::open_image(&set, &tasks[0].image)?;
            for _ in 0..warmup {
                progress::report(done, total, "warm-up");
                engine::generate(&[&img], &make(&tasks[0], &tasks[0].image, true))?;
                done += 1;
            }
        }
        let mut per_image = Table::new(&[
            "Image",
            "Size",
            "Image tokens",
            "Time",
            "Tokens",
            "Speed",
            "TTFT",
            "Decode tok/s",
            "Output",
        ]);
        let mut checks = Table::new(&["Image", "Expected", "Output", "Result"]);
        let (mut passed, mut checked) = (0, 0);
        let (mut total_s, mut total_tokens) = (0.0, 0u64);
        let mut all: Vec<GenerateResponse> = vec![];
        for t in &tasks {
            let img = images::open_image(&set, &t.image)?;
            let mut runs = vec![];
            for _ in 0..repeats {
                progress::report(done, total, &t.image);
                runs.push(engine::generate(&[&img], &make(t, &t.image, false))?);
                done += 1;
            }
            let time = Summary::of(
                &runs
                    .iter()
                    .map(|r| r.timings.total_ms / 1e3)
                    .collect::<Vec<_>>(),
            )
            .expect("repeats ≥ 1");
            let tokens =
                runs.iter().map(|r| r.output_tokens as f64).sum::<f64>() / runs.len() as f64;
            let ttft = runs.iter().map(|r| r.timings.ttft_ms).sum::<f64>() / runs.len() as f64;
            let decode: Vec<f64> = runs.iter().filter_map(response::decode_tok_s).collect();
            total_s += runs.iter().map(|r| r.timings.total_ms / 1e3).sum::<f64>();
            total_tokens += runs.iter().map(|r| r.output_tokens as u64).sum::<u64>();
            per_image.row(vec![
                t.image.clone(),
                format!("{}x{}", img.width(), img.height()),
                runs[0].image_tokens.map_or("—".into(), |t| t.to_string()),
                table::seconds(time.mean),
                format!("{tokens:.0}"),
                table::tok_s(tokens / time.mean),
                table::ms(ttft),
                Summary::of(&decode).map_or("–".into(), |s| format!("{:.1}", s.mean)),
                cell(&runs[0].text, 60),
            ]);
            if let Some(ok) = check(t, &runs[0].text) {
                checked += 1;
                passed += ok as u32;
                let expected = t
                    .expected
                    .clone()
                    .or_else(|| t.expected_regex.as_ref().map(|r| format!("/{r}/")))
                    .unwrap_or_default();
                checks.row(vec![
                    t.image.clone(),
                    cell(&expected, 40),
                    cell(&runs[0].text, 60),
                    if ok { "✓".into() } else { "✗".into() },
                ]);
            }
            all.extend(runs);
        }
        progress::report(done, total, "done");
        per_image.record("Per image")?;
        let ttft = Summary::of(&all.iter().map(|r| r.timings.ttft_ms).collect::<Vec<_>>())
            .expect("requests");
        let speed = Summary::of(
            &all.iter()
                .map(|r| r.output_tokens as f64 / (r.timings.total_ms / 1e3))
                .collect::<Vec<_>>(),
        )
        .expect("requests");
        let mut agg = Table::new(&[
            "Images",
            "Requests",
            "Total Time (s)",
            "Total Tokens",
            "Aggregate Tok/s",
            "Speed mean [95% CI]",
            "TTFT median",
            "TTFT p90",
        ]);
        agg.row(vec![
            tasks.len().to_string(),
            all.len().to_string(),
            format!("{total_s:.2}"),
            total_tokens.to_string(),
            format!("{:.1}", total_tokens as f64 / total_s),
            if speed.n > 1 {
                format!(
                    "{:.1} [{:.1}, {:.1}]",
                    speed.mean, speed.ci95.0, speed.ci95.1
                )
            } else {
                format!("{:.1}", speed.mean)
            },
            table::ms(ttft.median),
            table::ms(ttft.p90),
        ]);
        agg.record("Aggregate")?;
        results::metric("aggregate_tok_s", total_tokens as f64 / total_s, "tok/s");
        results::metric("ttft_median_ms", ttft.median, "ms");
        if checked > 0 {
            checks.record("Answer checks")?;
            results::metric("answers_correct", passed as f64, "count");
            results::metric("answers_checked", checked as f64, "count");
            results::verdict(
                passed == checked,
                &format!("{passed} of {checked} answers as expected"),
            );
        }
        if let Some(before) = before {
            engine::cache_configure(Some(before.enabled), None, None)?;
        }
        Ok(())
    }
}

vlmbench_sdk::export_plugin!(ImageSet);
