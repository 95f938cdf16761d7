//! # serving_sweep
//!
//! How a server holds up as load grows, measured the way vLLM's
//! `bench serve` does, on images: closed-loop levels (N clients, each
//! sending its next request when its last one ends) and open-loop levels
//! (requests arriving as a Poisson process at R per second, whatever the
//! server does). Requests cycle through a mix of image sizes (the vllm-mlx
//! image benchmark's ten by default) or a granted image set.
//!
//! Per level: requests per second, output tokens per second, TTFT,
//! inter-token latency (between arrivals: a server's event of several tokens
//! is one arrival), time per output token and end-to-end latency at p50,
//! p90 and p99, goodput under the SLOs given, and errors by kind. Closed-loop
//! levels stop rising once the server saturates: output throughput gains
//! less than `saturation` while median latency grows by more than half of
//! the load's growth. The host sends every request at its scheduled time and
//! times it, so a slow plugin cannot bend the figures.
//!
//! Run against the host's engine:
//! `host run --plugin serving_sweep.wasm --set concurrency=1,2,4`;
//! against a server: add `--endpoint http://127.0.0.1:8000/v1`.

mod load;
mod rng;

use vlmbench_sdk::engine;
use vlmbench_sdk::images::Image;
use vlmbench_sdk::table::Table;
use vlmbench_sdk::types::{ParamKind, PluginInfo};
use vlmbench_sdk::{Params, Workload, images, param, progress, request, results};

use load::{Level, LevelResult, Slo};

/// The vllm-mlx image benchmark's resolutions.
const DEFAULT_SIZES: &str =
    "224x224,336x336,448x448,512x512,672x672,768x768,896x896,1024x1024,1280x720,1920x1080";

/// Images a granted set contributes to the mix, at most.
const MAX_SET_IMAGES: usize = 64;

struct ServingSweep;

fn parse_list<T: std::str::FromStr>(what: &str, s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<T>()
                .map_err(|_| format!("{what}: {x:?} is not a number"))
        })
        .collect()
}

/// The images requests cycle through: a granted set's, or synthetic ones
/// of the sizes asked, each request its own picture when `distinct`.
fn image_mix(p: &Params) -> Result<load::Images, String> {
    let set = p.text("image_set")?;
    if !set.is_empty() {
        let names = images::list_images(&set)?;
        if names.is_empty() {
            return Err(format!("image set {set:?} has no images"));
        }
        // A file that does not open is left out of the mix, and said so.
        let mut opened: Vec<(String, Image)> = vec![];
        for n in names.iter().take(MAX_SET_IMAGES) {
            match images::open_image(&set, n) {
                Ok(img) => opened.push((n.clone(), img)),
                Err(e) => vlmbench_sdk::warn(&format!("{n} is left out of the mix: {e}")),
            }
        }
        if opened.is_empty() {
            return Err(format!("no image of set {set:?} could be opened"));
        }
        if opened.len() < names.len().min(MAX_SET_IMAGES) {
            results::note(&format!(
                "{} of the first {} files of set {set:?} could not be opened and were left out of the mix (the log says why).",
                names.len().min(MAX_SET_IMAGES) - opened.len(),
                names.len().min(MAX_SET_IMAGES)
            ));
        }
        return Ok(load::Images::Set(opened));
    }
    let sizes = p.sizes("sizes")?;
    if sizes.is_empty() {
        return Err("sizes: give at least one WIDTHxHEIGHT".into());
    }
    Ok(load::Images::Synthetic {
        sizes,
        distinct: p.bool("distinct")?,
        seed: p.int("seed")? as u64,
    })
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1e3)
    } else {
        format!("{v:.1} ms")
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.2}")
    }
}

/// Whether `now` shows the server saturated against `before`: throughput
/// grew by less than `gain` while median latency grew by more than half the
/// load's growth.
fn saturated(before: &LevelResult, now: &LevelResult, gain: f64) -> bool {
    let load_growth = now.level.load() / before.level.load();
    let flat = now.output_tok_s < before.output_tok_s * (1.0 + gain);
    let latency_growth = now.e2e.p50 / before.e2e.p50;
    flat && latency_growth > 1.0 + (load_growth - 1.0) / 2.0
}

fn record(levels: &[LevelResult], slo: &Slo) -> Result<(), String> {
    let mut t = Table::new(&[
        "Load",
        "Requests",
        "Errors",
        "Duration",
        "Req/s",
        "Out tok/s",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "TPOT p50",
        "E2E p50",
        "E2E p90",
        "E2E p99",
        "Goodput req/s",
    ]);
    for l in levels {
        let name = l.level.name();
        t.row(vec![
            name.clone(),
            l.ok.to_string(),
            l.errors_text(),
            format!("{:.1} s", l.duration_s),
            num(l.requests_s),
            num(l.output_tok_s),
            ms(l.ttft.p50),
            ms(l.ttft.p99),
            ms(l.itl.p50),
            ms(l.itl.p99),
            ms(l.tpot.p50),
            ms(l.e2e.p50),
            ms(l.e2e.p90),
            ms(l.e2e.p99),
            l.goodput_s.map_or("–".into(), num),
        ]);
        for (metric, value, unit) in [
            ("requests_s", l.requests_s, "req/s"),
            ("output_tok_s", l.output_tok_s, "tok/s"),
            ("ttft_p50_ms", l.ttft.p50, "ms"),
            ("ttft_p99_ms", l.ttft.p99, "ms"),
            ("itl_p50_ms", l.itl.p50, "ms"),
            ("itl_p99_ms", l.itl.p99, "ms"),
            ("e2e_p50_ms", l.e2e.p50, "ms"),
            ("e2e_p99_ms", l.e2e.p99, "ms"),
            ("errors", l.errors() as f64, "count"),
        ] {
            results::metric(&format!("{metric}[{name}]"), value, unit);
        }
        if let Some(g) = l.goodput_s {
            results::metric(&format!("goodput_s[{name}]"), g, "req/s");
        }
    }
    t.record("Serving sweep")?;
    results::note(&format!(
        "Load `c=N` keeps N requests in flight (closed loop); `rate=R` sends requests as a Poisson process at R per second (open loop). Requests/s and tokens/s count successful requests over the level's duration, from its first request sent to its last answer. TTFT runs from sending to the first output text; ITL is the gap between arrivals of output text (an event carrying several tokens is one arrival); TPOT is (E2E − TTFT) / (output tokens − 1) per request. {}",
        slo.describe()
    ));
    Ok(())
}

impl Workload for ServingSweep {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "serving_sweep".into(),
            version: "0.1.0".into(),
            description: "Serving under load: closed-loop concurrency and open-loop request-rate levels over a mix of image sizes; throughput, TTFT, ITL, E2E and goodput per level, until the server saturates".into(),
            params: vec![
                param("concurrency", ParamKind::Text, "1,2,4,8,16,32", "closed-loop levels: requests kept in flight (empty: none)"),
                param("rates", ParamKind::Text, "", "open-loop levels: requests per second, Poisson arrivals (empty: none)"),
                param("requests", ParamKind::Integer, "4", "requests per client at each closed-loop level (level N sends N times this)"),
                param("rate_requests", ParamKind::Integer, "32", "requests sent at each open-loop level"),
                param("max_tokens", ParamKind::Integer, "64", "output tokens per request"),
                param("ignore_eos", ParamKind::Boolean, "true", "generate max_tokens every time (servers that ignore it may stop early; output tokens are counted as they report)"),
                param("sizes", ParamKind::Text, DEFAULT_SIZES, "image sizes the requests cycle through"),
                param("image_set", ParamKind::Text, "", "a granted image set (--images) to cycle through instead of synthetic sizes"),
                param("distinct", ParamKind::Boolean, "true", "give every request a picture of its own, so no cache answers from an earlier request (false: the same picture per size, so caches hit after the first)"),
                param("prompt", ParamKind::Text, "Describe this image in detail.", "the prompt of every request"),
                param("warmup", ParamKind::Integer, "1", "warm-up requests per image before measuring, one at a time"),
                param("slo_ttft_ms", ParamKind::Float, "0", "goodput SLO on TTFT in ms (0: none)"),
                param("slo_itl_ms", ParamKind::Float, "0", "goodput SLO on the request's p99 ITL in ms (0: none)"),
                param("saturation", ParamKind::Float, "0.1", "stop raising concurrency when throughput gains less than this fraction while latency climbs (0: run every level)"),
                param("stop_on_error", ParamKind::Boolean, "false", "fail the run at the first failed request instead of counting errors"),
                param("seed", ParamKind::Integer, "0", "seed of the synthetic images and of the open-loop arrivals"),
            ],
        }
    }

    fn run(p: Params) -> Result<(), String> {
        let concurrency: Vec<u32> = parse_list("concurrency", &p.text("concurrency")?)?;
        let rates: Vec<f64> = parse_list("rates", &p.text("rates")?)?;
        if concurrency.iter().any(|&c| !(1..=1024).contains(&c)) {
            return Err("concurrency: levels must be between 1 and 1024".into());
        }
        if rates.iter().any(|&r| !(r > 0.0 && r <= 10_000.0)) {
            return Err("rates: levels must be above 0 and at most 10000 per second".into());
        }
        if concurrency.is_empty() && rates.is_empty() {
            return Err("give at least one level in concurrency or rates".into());
        }
        let per_client = p.int_in("requests", 1, 10_000)? as u32;
        let rate_requests = p.int_in("rate_requests", 1, 100_000)? as u32;
        let max_tokens = p.int_in("max_tokens", 1, 32_768)? as u32;
        let warmup = p.int_in("warmup", 0, 100)? as u32;
        let gain = p.float("saturation")?;
        let slo = Slo::new(p.float("slo_ttft_ms")?, p.float("slo_itl_ms")?)?;
        let mix = image_mix(&p)?;
        let mut base = request::with_images(&p.text("prompt")?, 1, max_tokens);
        base.ignore_eos = p.bool("ignore_eos")?;
        let plan = load::Plan {
            base,
            images: mix,
            stop_on_error: p.bool("stop_on_error")?,
            slo,
            seed: p.int("seed")? as u64,
        };
        let model = engine::model();
        vlmbench_sdk::log(&format!(
            "{} closed-loop and {} open-loop levels over {}, {max_tokens} tokens each, against {}",
            concurrency.len(),
            rates.len(),
            plan.images.describe(),
            model.endpoint.as_ref().map_or(
                format!("the host's engine ({})", model.name),
                |e| format!("{} at {}", e.model, e.url)
            )
        ));

        // Warm-ups: every size once per round, one at a time, so one-off
        // costs (a first shape, kernel compilation) belong to no level.
        let total_warm = warmup * plan.images.len() as u32;
        for k in 0..total_warm {
            let (name, img) = plan.images.warm_up(k)?;
            progress::report(k, total_warm, &format!("warm-up {name}"));
            let mut r = plan.base.clone();
            r.warmup = true;
            r.label = format!("warm-up {name}");
            engine::generate(&[img.image()], &r)?;
        }

        let mut levels: Vec<Level> = concurrency.iter().map(|&c| Level::Clients(c)).collect();
        levels.extend(rates.iter().map(|&r| Level::Rate(r)));
        let mut done: Vec<LevelResult> = vec![];
        // Requests numbered across levels: each its own picture and seed.
        let mut numbered: u64 = 0;
        for (i, level) in levels.iter().enumerate() {
            let requests = match level {
                Level::Clients(c) => c * per_client,
                Level::Rate(_) => rate_requests,
            };
            progress::report(i as u32, levels.len() as u32, &level.name());
            let result = load::run_level(&plan, *level, requests, numbered)?;
            numbered += requests as u64;
            vlmbench_sdk::log(&format!(
                "{}: {:.2} req/s, {:.1} output tok/s, TTFT p50 {}, E2E p50 {}, {} errors",
                level.name(),
                result.requests_s,
                result.output_tok_s,
                ms(result.ttft.p50),
                ms(result.e2e.p50),
                result.errors()
            ));
            let previous = done
                .iter()
                .rev()
                .find(|d| matches!(d.level, Level::Clients(_)) && d.ok > 0);
            let stop = matches!(level, Level::Clients(_))
                && gain > 0.0
                && result.ok > 0
                && previous.is_some_and(|b| saturated(b, &result, gain));
            let name = level.name();
            done.push(result);
            if stop {
                let skipped: Vec<String> = levels[i + 1..]
                    .iter()
                    .filter(|l| matches!(l, Level::Clients(_)))
                    .map(Level::name)
                    .collect();
                results::note(&format!(
                    "Saturated at {name}: output throughput grew by less than {:.0}% over the level before while median latency climbed{}.",
                    gain * 100.0,
                    if skipped.is_empty() {
                        String::new()
                    } else {
                        format!("; higher concurrency ({}) was not run", skipped.join(", "))
                    }
                ));
                results::metric("saturated_at_clients", level.load(), "clients");
                // Open-loop levels still run: they say what the server does
                // at rates of the user's choosing.
                let rest: Vec<Level> = levels[i + 1..]
                    .iter()
                    .filter(|l| matches!(l, Level::Rate(_)))
                    .copied()
                    .collect();
                for (k, level) in rest.iter().enumerate() {
                    progress::report((i + 1 + k) as u32, levels.len() as u32, &level.name());
                    done.push(load::run_level(&plan, *level, rate_requests, numbered)?);
                    numbered += rate_requests as u64;
                }
                break;
            }
        }
        progress::report(levels.len() as u32, levels.len() as u32, "done");
        record(&done, &plan.slo)?;
        let errors: u32 = done.iter().map(LevelResult::errors).sum();
        let answered: u32 = done.iter().map(|l| l.ok).sum();
        if answered == 0 {
            return Err(format!("no request succeeded ({errors} failed)"));
        }
        Ok(())
    }
}

vlmbench_sdk::export_plugin!(ServingSweep);
