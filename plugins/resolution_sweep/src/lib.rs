//! # resolution_sweep
//!
//! The vllm-mlx image benchmark, done carefully: one synthetic image per
//! resolution (224x224 … 1920x1080), the same prompt, greedy decoding, a fixed
//! number of output tokens by default; warm-ups kept out of the figures;
//! repeats with mean, spread, percentiles and a 95% confidence interval; stage
//! timings (preprocess, vision, TTFT, decode) and inter-token latency; and a
//! check that the image really reaches the model.
//!
//! Run: `host run --plugin resolution_sweep.wasm [--set quick=true]`.
//! Build: `cargo build --release --target wasm32-wasip2` in `plugins/`.

use vlmbench_sdk::engine::{self, GenerateResponse};
use vlmbench_sdk::stats::Summary;
use vlmbench_sdk::table::{self, Measured, ResolutionTable, Table};
use vlmbench_sdk::types::{ParamKind, PluginInfo};
use vlmbench_sdk::{Params, Workload, images, param, progress, request, response, results};

const FULL: &[(u32, u32)] = &[
    (224, 224),
    (336, 336),
    (448, 448),
    (512, 512),
    (672, 672),
    (768, 768),
    (896, 896),
    (1024, 1024),
    (1280, 720),
    (1920, 1080),
];
const QUICK: &[(u32, u32)] = &[(224, 224), (448, 448), (768, 768), (1024, 1024)];

struct Sweep;

/// Everything measured at one resolution.
struct Point {
    label: String,
    pixels: u64,
    /// None where a server answered (it does not report them).
    image_tokens: Option<u32>,
    runs: Vec<GenerateResponse>,
}

impl Point {
    /// Statistics of one figure over the repeats (NaN when no repeat has it,
    /// e.g. decode speed with one output token).
    fn figure(&self, f: impl Fn(&GenerateResponse) -> f64) -> Summary {
        Summary::of(&self.runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(Summary {
            n: 0,
            mean: f64::NAN,
            std: f64::NAN,
            min: f64::NAN,
            median: f64::NAN,
            p90: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
            ci95: (f64::NAN, f64::NAN),
        })
    }
    fn speed(r: &GenerateResponse) -> f64 {
        r.output_tokens as f64 / (r.timings.total_ms / 1e3)
    }
    fn decode(r: &GenerateResponse) -> f64 {
        response::decode_tok_s(r).unwrap_or(f64::NAN)
    }
    /// Inter-token latency over every gap between arrivals of every repeat
    /// (a server's event of several tokens is one arrival).
    fn itl(&self) -> Option<Summary> {
        let gaps: Vec<f64> = self
            .runs
            .iter()
            .flat_map(response::inter_arrival_ms)
            .collect();
        Summary::of(&gaps)
    }
    /// A stage's mean, or a dash where the backend does not report it.
    fn stage(&self, f: impl Fn(&GenerateResponse) -> Option<f64>) -> String {
        if self.runs.iter().any(|r| f(r).is_none()) {
            return "—".into();
        }
        table::ms(self.figure(|r| f(r).unwrap_or(f64::NAN)).mean)
    }
}

fn preview(text: &str) -> String {
    let t: String = text
        .chars()
        .take(40)
        .collect::<String>()
        .replace(['\n', '|'], " ");
    if text.chars().count() > 40 {
        format!("{t}…")
    } else {
        t
    }
}

/// Two different images, same prompt: the outputs (or first logits) must differ.
fn image_check(
    prompt: &str,
    max_tokens: u32,
    (w, h): (u32, u32),
    seed: u64,
) -> Result<(bool, f64, bool), String> {
    let a = images::synthesize(w, h, "gradient", seed.wrapping_add(1000))?;
    let b = images::synthesize(w, h, "checker", seed.wrapping_add(2000))?;
    let mut r = request::with_images(prompt, 1, max_tokens.min(8));
    r.ignore_eos = true;
    // A server returns no logits: its texts are compared alone.
    r.return_logits = response::local_engine();
    r.label = "image check".into();
    r.warmup = true;
    let ra = engine::generate(&[&a], &r)?;
    let rb = engine::generate(&[&b], &r)?;
    let diff = match (&ra.first_logits, &rb.first_logits) {
        (Some(a), Some(b)) => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() as f64)
            .fold(0.0, f64::max),
        _ => 0.0,
    };
    let texts_differ = ra.token_ids != rb.token_ids || ra.text != rb.text;
    Ok((diff > 1e-4 || texts_differ, diff, texts_differ))
}

impl Workload for Sweep {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "resolution_sweep".into(),
            version: "0.1.0".into(),
            description: "Time, tokens and speed per image resolution (the vllm-mlx image benchmark's sweep), with stage timings and repeat statistics".into(),
            params: vec![
                param("quick", ParamKind::Boolean, "false", "4 resolutions (224, 448, 768, 1024) instead of 10"),
                param("resolutions", ParamKind::Text, "", "comma-separated WxH list; overrides quick"),
                param("prompt", ParamKind::Text, "Describe this image.", "the prompt, after the image"),
                param("max_tokens", ParamKind::Integer, "100", "output tokens per request"),
                param("ignore_eos", ParamKind::Boolean, "true", "generate exactly max_tokens (a fixed workload)"),
                param("warmup", ParamKind::Integer, "1", "warm-up requests per resolution (recorded, flagged, not counted)"),
                param("repeats", ParamKind::Integer, "3", "measured requests per resolution"),
                param("seed", ParamKind::Integer, "0", "seed of the synthetic images"),
                param("pattern", ParamKind::Text, "gradient", "image pattern: gradient, noise, checker, solid"),
                param("cache", ParamKind::Boolean, "false", "leave the prefix and vision caches on (off: every request is computed in full)"),
                param("check_image", ParamKind::Boolean, "true", "check once that two different images give different outputs"),
            ],
        }
    }

    fn run(p: Params) -> Result<(), String> {
        let custom = p.text("resolutions")?;
        let resolutions = if !custom.trim().is_empty() {
            vlmbench_sdk::params::parse_sizes("resolutions", &custom)?
        } else if p.bool("quick")? {
            QUICK.to_vec()
        } else {
            FULL.to_vec()
        };
        let prompt = p.text("prompt")?;
        let max_tokens = p.int_in("max_tokens", 1, 32_768)? as u32;
        let warmup = p.int_in("warmup", 0, 100)? as u32;
        let repeats = p.int_in("repeats", 1, 1000)? as u32;
        let seed = p.int("seed")? as u64;
        let pattern = p.text("pattern")?;
        let ignore_eos = p.bool("ignore_eos")?;

        let model = engine::model();
        let before = engine::cache_stats();
        if !p.bool("cache")?
            && let Err(e) = engine::cache_configure(Some(false), None, None)
        {
            vlmbench_sdk::warn(&format!("the cache stays as it is: {e}"));
        }
        vlmbench_sdk::log(&format!(
            "{} resolutions, {warmup} warm-up + {repeats} measured each, {max_tokens} tokens{}, model {} ({}){}",
            resolutions.len(),
            if ignore_eos { " (EOS ignored)" } else { "" },
            model.name,
            model.quantization,
            if model.synthetic {
                ", synthetic weights"
            } else {
                ""
            }
        ));

        let total_steps = resolutions.len() as u32 * (warmup + repeats);
        let mut done = 0;
        let mut points = vec![];
        for (i, &(w, h)) in resolutions.iter().enumerate() {
            let label = format!("{w}x{h}");
            let img = images::synthesize(w, h, &pattern, seed.wrapping_add(i as u64))?;
            let mut point = Point {
                label: label.clone(),
                pixels: w as u64 * h as u64,
                image_tokens: None,
                runs: vec![],
            };
            for k in 0..warmup + repeats {
                let is_warmup = k < warmup;
                progress::report(
                    done,
                    total_steps,
                    &format!("{label} {}", if is_warmup { "warm-up" } else { "measure" }),
                );
                let mut r = request::with_images(&prompt, 1, max_tokens);
                r.ignore_eos = ignore_eos;
                r.label = label.clone();
                r.warmup = is_warmup;
                let out = engine::generate(&[&img], &r)?;
                point.image_tokens = out.image_tokens;
                if !is_warmup {
                    point.runs.push(out);
                }
                done += 1;
            }
            points.push(point);
        }
        progress::report(done, total_steps, "done");

        // The benchmark's table: means per resolution; Speed = Tokens / Time.
        let measured = points.iter().flat_map(|pt| {
            pt.runs.iter().map(|r| Measured {
                label: pt.label.clone(),
                pixels: pt.pixels,
                seconds: r.timings.total_ms / 1e3,
                output_tokens: r.output_tokens as u64,
            })
        });
        let sweep = ResolutionTable::of(measured).ok_or("no measured requests")?;
        let mut details = Table::new(&[
            "Resolution",
            "Image tokens",
            "Preprocess",
            "Vision",
            "TTFT",
            "Decode tok/s",
            "ITL p50",
            "ITL p90",
            "ITL p99",
            "Peak memory",
            "Output",
        ]);
        let mut stats_t = Table::new(&[
            "Resolution",
            "Figure",
            "n",
            "mean",
            "std",
            "median",
            "p90",
            "p99",
            "95% CI",
        ]);
        for pt in &points {
            let time = pt.figure(|r| r.timings.total_ms / 1e3);
            // The table's row of the label (a label given twice is one row).
            let row = sweep.rows.iter().find(|r| r.label == pt.label);
            let speed = row.map_or(f64::NAN, |r| r.speed);
            let itl = pt.itl();
            let peak = pt.runs.iter().filter_map(|r| r.peak_memory_bytes).max();
            details.row(vec![
                pt.label.clone(),
                pt.image_tokens.map_or("—".into(), |t| t.to_string()),
                pt.stage(|r| r.timings.preprocess_ms),
                pt.stage(|r| r.timings.vision_ms),
                table::ms(pt.figure(|r| r.timings.ttft_ms).mean),
                format!("{:.1}", pt.figure(Point::decode).mean),
                itl.map_or("–".into(), |s| table::ms(s.median)),
                itl.map_or("–".into(), |s| table::ms(s.p90)),
                itl.map_or("–".into(), |s| table::ms(s.p99)),
                peak.map_or("—".into(), |p| format!("{:.1} MB", p as f64 / 1e6)),
                preview(&pt.runs[0].text),
            ]);
            for (name, s) in [
                ("Speed (tok/s)", pt.figure(Point::speed)),
                ("TTFT (ms)", pt.figure(|r| r.timings.ttft_ms)),
                ("Decode (tok/s)", pt.figure(Point::decode)),
                ("Time (s)", time),
            ] {
                stats_t.row(vec![
                    pt.label.clone(),
                    name.into(),
                    s.n.to_string(),
                    format!("{:.3}", s.mean),
                    format!("{:.3}", s.std),
                    format!("{:.3}", s.median),
                    format!("{:.3}", s.p90),
                    format!("{:.3}", s.p99),
                    if s.n > 1 {
                        format!("[{:.3}, {:.3}]", s.ci95.0, s.ci95.1)
                    } else {
                        "n/a (1 sample)".into()
                    },
                ]);
            }
            results::metric(&format!("speed_tok_s[{}]", pt.label), speed, "tok/s");
            results::metric(
                &format!("ttft_ms[{}]", pt.label),
                pt.figure(|r| r.timings.ttft_ms).mean,
                "ms",
            );
            results::metric(
                &format!("decode_tok_s[{}]", pt.label),
                pt.figure(Point::decode).mean,
                "tok/s",
            );
        }
        results::table("Results", &sweep.columns(), &sweep.cells())?;
        results::note(&format!(
            "{} Decode speed alone is in the stage table.",
            sweep.summary()
        ));
        let aggregate_columns = ResolutionTable::aggregate_columns();
        results::table("Aggregate", &aggregate_columns, &sweep.aggregate_cells())?;
        let (mean_of_speeds, aggregate) = (sweep.average_speed(), sweep.aggregate_speed());
        let (total_s, total_tokens) = (sweep.total_seconds, sweep.total_tokens);
        details.record("Stages (means over repeats)")?;
        stats_t.record("Repeat statistics")?;
        results::metric("average_speed_tok_s", mean_of_speeds, "tok/s");
        results::metric("aggregate_tok_s", aggregate, "tok/s");
        results::metric("total_time_s", total_s, "s");
        results::metric("total_tokens", total_tokens as f64, "tokens");

        if p.bool("check_image")? {
            let (w, h) = resolutions[0];
            let (ok, diff, texts_differ) = image_check(&prompt, max_tokens, (w, h), seed)?;
            let outputs = if texts_differ {
                "different"
            } else {
                "identical greedy"
            };
            // A server returns no logits: its outputs are compared alone.
            let (msg, evidence) = if response::local_engine() {
                results::metric("image_check_max_logit_diff", diff, "");
                (
                    format!(
                        "Image check at {w}x{h}: two different images with the same prompt gave {outputs} outputs (first-token logits differ by up to {diff:.3e})."
                    ),
                    "logits",
                )
            } else {
                (
                    format!(
                        "Image check at {w}x{h}: two different images with the same prompt gave {outputs} outputs (a server returns no logits, so only the texts are compared)."
                    ),
                    "outputs",
                )
            };
            results::note(&msg);
            if !ok {
                results::verdict(
                    false,
                    &format!(
                        "the image does not reach the model: two different images gave identical {evidence}"
                    ),
                );
            } else {
                results::verdict(
                    true,
                    &format!(
                        "the image reaches the model (different images give different {evidence})"
                    ),
                );
            }
        }
        if let Some(before) = before {
            engine::cache_configure(Some(before.enabled), None, None)?;
        }
        Ok(())
    }
}

vlmbench_sdk::export_plugin!(Sweep);
