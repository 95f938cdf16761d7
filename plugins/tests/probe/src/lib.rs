//! A plugin that misbehaves on request, to test the host's sandbox. Each mode
//! records one metric first, so tests can check that rows recorded before a
//! failure survive it.

use vlmbench_sdk::types::{ParamKind, PluginInfo};
use vlmbench_sdk::{Params, Workload, engine, images, param, request, results};

struct Probe;

fn snoop() -> Vec<String> {
    let mut found = vec![];
    match std::fs::read("/etc/passwd") {
        Ok(_) => found.push("fs: read /etc/passwd".to_string()),
        Err(e) => results::note(&format!("fs denied: {e}")),
    }
    match std::fs::read_dir("/") {
        Ok(_) => found.push("fs: listed /".to_string()),
        Err(e) => results::note(&format!("dir denied: {e}")),
    }
    match std::net::TcpStream::connect("127.0.0.1:80") {
        Ok(_) => found.push("net: connected to 127.0.0.1:80".to_string()),
        Err(e) => results::note(&format!("net denied: {e}")),
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    if env.is_empty() {
        results::note("env empty");
    } else {
        found.push(format!("env: {} variables visible", env.len()));
    }
    found
}

impl Workload for Probe {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "probe".into(),
            version: "0.1.0".into(),
            description: "Misbehaves on request to test the sandbox.".into(),
            params: vec![
                param(
                    "mode",
                    ParamKind::Text,
                    "ok",
                    "ok, loop, alloc, panic, trap, snoop, error, generate, schedule, calls",
                ),
                param(
                    "count",
                    ParamKind::Integer,
                    "1000",
                    "host calls made by mode=calls, requests by mode=schedule",
                ),
                param(
                    "interval_ms",
                    ParamKind::Integer,
                    "20",
                    "time between the requests of mode=schedule",
                ),
                param(
                    "ratio",
                    ParamKind::Float,
                    "0.5",
                    "a float, echoed as a metric",
                ),
                param(
                    "flag",
                    ParamKind::Boolean,
                    "false",
                    "a boolean, echoed as a metric",
                ),
            ],
        }
    }

    fn run(p: Params) -> Result<(), String> {
        results::metric("before", 1.0, "count");
        results::metric("ratio", p.float("ratio")?, "");
        results::metric("flag", p.bool("flag")? as u8 as f64, "");
        match p.text("mode")?.as_str() {
            "ok" => Ok(()),
            "error" => Err("asked to fail".into()),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = vec![];
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("probe panicked on purpose"),
            "trap" => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                unreachable!()
            }
            "snoop" => {
                let found = snoop();
                if found.is_empty() {
                    Ok(())
                } else {
                    Err(format!("sandbox escape: {}", found.join("; ")))
                }
            }
            "generate" => {
                let img = images::synthesize(64, 64, "gradient", 1)?;
                let mut r = request::with_images("Describe this image.", 1, 4);
                r.ignore_eos = true;
                r.label = "probe".into();
                let out = engine::generate(&[&img], &r)?;
                results::metric("output_tokens", out.output_tokens as f64, "tokens");
                results::note(&out.text);
                Ok(())
            }
            "schedule" => {
                // `count` requests sent `interval_ms` apart on the host's
                // clock, collected with wait-any as they finish: what each
                // was told about when it was sent, and how late.
                let n = p.int("count")?.clamp(1, 1024) as u32;
                let interval = p.int("interval_ms")?.max(0) as f64;
                let img = images::synthesize(64, 64, "gradient", 1)?;
                let t0 = engine::clock_ms() + 50.0;
                let mut pending = vec![];
                for i in 0..n {
                    let mut r = request::with_images("Describe this image.", 1, 4);
                    r.ignore_eos = true;
                    r.label = format!("scheduled {i}");
                    let at = t0 + i as f64 * interval;
                    pending.push((at, engine::submit(&[&img], &r, Some(at))?));
                }
                let mut worst_late: f64 = 0.0;
                let mut early = 0;
                let mut finished = 0;
                while !pending.is_empty() {
                    let handles: Vec<&engine::Pending> = pending.iter().map(|(_, p)| p).collect();
                    let Some(i) = engine::wait_any(&handles, Some(60_000)) else {
                        return Err("no request finished within 60 s".into());
                    };
                    let (at, done) = pending.swap_remove(i as usize);
                    if !done.ready() {
                        return Err("wait-any named a request that is not ready".into());
                    }
                    let out = engine::wait(&done)?;
                    if engine::wait(&done).is_ok() {
                        return Err("a second wait returned the outcome again".into());
                    }
                    if out.timings.sent_at_ms + 0.5 < at {
                        early += 1;
                    }
                    worst_late = worst_late.max(out.timings.late_ms);
                    finished += 1;
                }
                results::metric("finished", finished as f64, "requests");
                results::metric("sent_early", early as f64, "requests");
                results::metric("worst_late_ms", worst_late, "ms");
                Ok(())
            }
            "calls" => {
                // Host round trips for the call-cost benchmark.
                let n = p.int("count")?.max(0) as u64;
                let mut sum = 0;
                for _ in 0..n {
                    sum += engine::cache_stats().map_or(0, |c| c.prefix_lookups);
                }
                results::metric("sum", sum as f64, "");
                Ok(())
            }
            other => Err(format!("unknown mode {other}")),
        }
    }
}

vlmbench_sdk::export_plugin!(Probe);
