//! One load level: its requests submitted on schedule (closed loop: a new
//! one as each ends; open loop: at Poisson arrival times on the host's
//! clock), collected as they finish, and summarised.

use vlmbench_sdk::engine::{self, GenerateRequest, GenerateResponse, Pending, RequestError};
use vlmbench_sdk::images::Image;
use vlmbench_sdk::response::{self, kind_name};
use vlmbench_sdk::stats::percentile;

use crate::rng::Rng;

/// Requests kept pending at once, at most: the host refuses more.
const MAX_IN_FLIGHT: usize = 1024;

/// A load level.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    /// This many requests in flight.
    Clients(u32),
    /// Requests per second, Poisson arrivals.
    Rate(f64),
}

impl Level {
    pub fn name(&self) -> String {
        match self {
            Level::Clients(c) => format!("c={c}"),
            Level::Rate(r) => format!("rate={r}"),
        }
    }

    /// Its size, for comparing levels of one kind.
    pub fn load(&self) -> f64 {
        match self {
            Level::Clients(c) => *c as f64,
            Level::Rate(r) => *r,
        }
    }
}

/// Service-level objectives for goodput.
pub struct Slo {
    ttft_ms: Option<f64>,
    itl_ms: Option<f64>,
}

impl Slo {
    pub fn new(ttft_ms: f64, itl_ms: f64) -> Result<Slo, String> {
        let limit = |name: &str, v: f64| {
            if !(v.is_finite() && v >= 0.0) {
                Err(format!("{name} must be a number of ms >= 0"))
            } else {
                Ok((v > 0.0).then_some(v))
            }
        };
        Ok(Slo {
            ttft_ms: limit("slo_ttft_ms", ttft_ms)?,
            itl_ms: limit("slo_itl_ms", itl_ms)?,
        })
    }

    fn any(&self) -> bool {
        self.ttft_ms.is_some() || self.itl_ms.is_some()
    }

    fn met(&self, r: &GenerateResponse) -> bool {
        let ttft_ok = self.ttft_ms.is_none_or(|t| r.timings.ttft_ms <= t);
        let itl_ok = self.itl_ms.is_none_or(|t| {
            let mut gaps = response::inter_arrival_ms(r);
            gaps.sort_by(f64::total_cmp);
            gaps.is_empty() || percentile(&gaps, 0.99) <= t
        });
        ttft_ok && itl_ok
    }

    pub fn describe(&self) -> String {
        match (self.ttft_ms, self.itl_ms) {
            (None, None) => {
                "Goodput needs an SLO (slo_ttft_ms, slo_itl_ms); none was given.".into()
            }
            (t, i) => format!(
                "Goodput counts requests per second that met {}.",
                [
                    t.map(|t| format!("TTFT ≤ {t} ms")),
                    i.map(|i| format!("p99 ITL ≤ {i} ms")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and ")
            ),
        }
    }
}

/// Where requests' pictures come from.
pub enum Images {
    /// A granted set's images, in turn.
    Set(Vec<(String, Image)>),
    /// Noise pictures of these sizes, in turn; each request's own when
    /// `distinct`, else one per size.
    Synthetic {
        sizes: Vec<(u32, u32)>,
        distinct: bool,
        seed: u64,
    },
}

/// Seeds of measured pictures start here; warm-ups use those below.
const MEASURED_SEEDS: u64 = 1 << 32;

impl Images {
    pub fn len(&self) -> usize {
        match self {
            Images::Set(v) => v.len(),
            Images::Synthetic { sizes, .. } => sizes.len(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Images::Set(v) => format!("{} images of a granted set", v.len()),
            Images::Synthetic {
                sizes, distinct, ..
            } => format!(
                "{} sizes ({})",
                sizes.len(),
                if *distinct {
                    "a new picture per request"
                } else {
                    "one picture per size"
                }
            ),
        }
    }

    fn synth(w: u32, h: u32, seed: u64) -> Result<Image, String> {
        vlmbench_sdk::images::synthesize(w, h, "noise", seed)
    }

    /// The `k`-th request's picture and its name.
    pub fn nth(&self, k: u64) -> Result<(String, Picture<'_>), String> {
        match self {
            Images::Set(v) => {
                let (name, img) = &v[(k as usize) % v.len()];
                Ok((name.clone(), Picture::Held(img)))
            }
            Images::Synthetic {
                sizes,
                distinct,
                seed,
            } => {
                let i = (k as usize) % sizes.len();
                let (w, h) = sizes[i];
                let n = if *distinct { k } else { i as u64 };
                let img = Self::synth(w, h, seed.wrapping_add(MEASURED_SEEDS + n))?;
                Ok((format!("{w}x{h}"), Picture::Made(img)))
            }
        }
    }

    /// The `k`-th warm-up's picture: never one a measured request sends.
    pub fn warm_up(&self, k: u32) -> Result<(String, Picture<'_>), String> {
        match self {
            Images::Set(_) => self.nth(k as u64),
            Images::Synthetic { sizes, seed, .. } => {
                let (w, h) = sizes[(k as usize) % sizes.len()];
                let img = Self::synth(w, h, seed.wrapping_add(k as u64))?;
                Ok((format!("{w}x{h}"), Picture::Made(img)))
            }
        }
    }
}

/// A request's picture: one of a set's, or one made for it (dropped once
/// submitted: the host holds it until the request ends).
pub enum Picture<'a> {
    Held(&'a Image),
    Made(Image),
}

impl Picture<'_> {
    pub fn image(&self) -> &Image {
        match self {
            Picture::Held(i) => i,
            Picture::Made(i) => i,
        }
    }
}

/// What a level runs: its request, the images they cycle through, and
/// what to do on errors.
pub struct Plan {
    pub base: GenerateRequest,
    pub images: Images,
    pub stop_on_error: bool,
    pub slo: Slo,
    pub seed: u64,
}

/// p50, p90 and p99 of a figure (NaN when nothing was measured).
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Spread {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return Spread {
                p50: f64::NAN,
                p90: f64::NAN,
                p99: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        Spread {
            p50: percentile(&v, 0.5),
            p90: percentile(&v, 0.9),
            p99: percentile(&v, 0.99),
        }
    }
}

/// A level's figures.
pub struct LevelResult {
    pub level: Level,
    pub ok: u32,
    /// Failed requests by kind, in the order kinds were first seen.
    pub errors: Vec<(&'static str, u32)>,
    pub duration_s: f64,
    pub requests_s: f64,
    pub output_tok_s: f64,
    pub ttft: Spread,
    pub itl: Spread,
    pub tpot: Spread,
    pub e2e: Spread,
    pub goodput_s: Option<f64>,
}

impl LevelResult {
    pub fn errors(&self) -> u32 {
        self.errors.iter().map(|(_, n)| n).sum()
    }

    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        self.errors
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The outcomes of a level as they came.
struct Outcomes {
    answers: Vec<GenerateResponse>,
    errors: Vec<(&'static str, u32)>,
    first_error: Option<String>,
}

impl Outcomes {
    fn take(&mut self, outcome: Result<GenerateResponse, RequestError>) {
        match outcome {
            Ok(r) => self.answers.push(r),
            Err(e) => {
                let kind = kind_name(e.kind);
                match self.errors.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n += 1,
                    None => self.errors.push((kind, 1)),
                }
                if self.first_error.is_none() {
                    self.first_error = Some(response::describe(&e));
                }
            }
        }
    }
}

/// How far ahead of its time an open-loop request is handed to the host:
/// enough that the host sends it on time, little enough that few images
/// wait in memory.
const SUBMIT_AHEAD_MS: f64 = 1000.0;

/// Runs `requests` requests at `level`; `first` numbers its first request
/// among all the run's (each gets its own picture and seed).
pub fn run_level(
    plan: &Plan,
    level: Level,
    requests: u32,
    first: u64,
) -> Result<LevelResult, String> {
    let mut out = Outcomes {
        answers: vec![],
        errors: vec![],
        first_error: None,
    };
    let name = level.name();
    let mut rng = Rng::new(plan.seed ^ level.load().to_bits());
    let in_flight = match level {
        Level::Clients(c) => c as usize,
        Level::Rate(_) => MAX_IN_FLIGHT,
    };
    let start = engine::clock_ms() + 5.0;
    let mut next_at = start;
    let mut sent = 0u32;
    let mut pending: Vec<Pending> = vec![];
    loop {
        while sent < requests && pending.len() < in_flight {
            if matches!(level, Level::Rate(_)) && next_at > engine::clock_ms() + SUBMIT_AHEAD_MS {
                break;
            }
            let k = first + sent as u64;
            let (img_name, img) = plan.images.nth(k)?;
            let mut r = plan.base.clone();
            r.label = name.clone();
            // Every request sees its own seed, as different users would.
            r.sampling.seed = plan.seed.wrapping_add(k);
            let at = match level {
                Level::Clients(_) => None,
                Level::Rate(rate) => {
                    let at = next_at;
                    next_at += rng.exp_gap_ms(rate);
                    Some(at)
                }
            };
            match engine::submit(&[img.image()], &r, at) {
                Ok(p) => pending.push(p),
                Err(e) => {
                    let msg = format!(
                        "{name}: request {sent} ({img_name}) refused: {}",
                        response::describe(&e)
                    );
                    if plan.stop_on_error {
                        return Err(msg);
                    }
                    out.take(Err(e));
                }
            }
            sent += 1;
        }
        if pending.is_empty() && sent >= requests {
            break;
        }
        // Open loop: wake in time to hand over the next arrivals.
        let timeout = match level {
            Level::Rate(_) if sent < requests => {
                Some(((next_at - engine::clock_ms() - SUBMIT_AHEAD_MS / 2.0).max(1.0)) as u32)
            }
            _ => None,
        };
        if pending.is_empty() {
            // Nothing in flight yet: wait for the next arrival's turn.
            let handles: Vec<&Pending> = vec![];
            let _ = engine::wait_any(&handles, timeout.or(Some(1)));
            continue;
        }
        let handles: Vec<&Pending> = pending.iter().collect();
        let Some(i) = engine::wait_any(&handles, timeout) else {
            continue;
        };
        let done = pending.swap_remove(i as usize);
        out.take(engine::wait(&done));
        if plan.stop_on_error
            && let Some(e) = &out.first_error
        {
            return Err(format!("{name}: a request failed: {e}"));
        }
    }
    Ok(summarise(plan, level, out))
}

fn summarise(plan: &Plan, level: Level, out: Outcomes) -> LevelResult {
    let answers = &out.answers;
    let first_sent = answers
        .iter()
        .map(|r| r.timings.sent_at_ms)
        .fold(f64::INFINITY, f64::min);
    let last_end = answers
        .iter()
        .map(|r| r.timings.sent_at_ms + r.timings.total_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let duration_s = if answers.is_empty() {
        0.0
    } else {
        (last_end - first_sent) / 1e3
    };
    let per_s = |n: f64| {
        if duration_s > 0.0 {
            n / duration_s
        } else {
            f64::NAN
        }
    };
    let tokens: u64 = answers.iter().map(|r| r.output_tokens as u64).sum();
    let tpot = answers
        .iter()
        .filter(|r| r.output_tokens > 1)
        .map(|r| (r.timings.total_ms - r.timings.ttft_ms) / (r.output_tokens - 1) as f64)
        .collect();
    let goodput_s = plan
        .slo
        .any()
        .then(|| per_s(answers.iter().filter(|r| plan.slo.met(r)).count() as f64));
    LevelResult {
        level,
        ok: answers.len() as u32,
        errors: out.errors,
        duration_s,
        requests_s: per_s(answers.len() as f64),
        output_tok_s: per_s(tokens as f64),
        ttft: Spread::of(answers.iter().map(|r| r.timings.ttft_ms).collect()),
        itl: Spread::of(
            answers
                .iter()
                .flat_map(response::inter_arrival_ms)
                .collect(),
        ),
        tpot: Spread::of(tpot),
        e2e: Spread::of(answers.iter().map(|r| r.timings.total_ms).collect()),
        goodput_s,
    }
}
