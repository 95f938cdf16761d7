//! Benchmark (not a test): API and page load times over a database of 1,000
//! runs and 100,000 request rows. `cargo bench -p server --bench load`
//!
//! Page loads are timed in headless Chromium: the whole process with
//! --dump-dom, which returns once the page's scripts and fetches are done,
//! minus the same browser on an empty page (the best of 3 of each).

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;

use serde_json::json;
use store::{ImageDesc, NewRun, RequestRow, Store};

const RUNS: usize = 1000;
const REQUESTS_PER_RUN: usize = 100;

fn seed(path: &std::path::Path) -> f64 {
    let t = Instant::now();
    let mut s = Store::open(path).unwrap();
    let labels = [
        "224x224",
        "336x336",
        "448x448",
        "512x512",
        "672x672",
        "768x768",
        "896x896",
        "1024x1024",
        "1280x720",
        "1920x1080",
    ];
    for run in 0..RUNS {
        let id = s
            .create_run(&NewRun {
                plugin_name: ["resolution_sweep", "cache_verification", "image_set"][run % 3]
                    .into(),
                plugin_version: "0.1.0".into(),
                plugin_blake3: "ab".repeat(32),
                plugin_wit: "vlmbench:workload@0.1.0".into(),
                params: json!({"quick": "false", "repeats": "9"}),
                model_name: ["qwen3-vl-8b-4", "qwen3-vl-2b-bf16"][run % 2].into(),
                model_path: "/models/x".into(),
                model_config_hash: "cd".repeat(32),
                model_quantization: "4-bit g64".into(),
                model_synthetic: true,
                model: json!({}),
                host_version: "0.1.0".into(),
                host_commit: "abc".into(),
                mlx_version: "0.32.4".into(),
                backend: "cuda".into(),
                device: ["NVIDIA H100 80GB HBM3", "Apple M4 Max"][run % 2].into(),
                machine: json!({"cpu": "bench"}),
                endpoint: None,
            })
            .unwrap();
        for k in 0..REQUESTS_PER_RUN {
            let label = labels[k % labels.len()];
            let (w, h) = label
                .split_once('x')
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
                .unwrap();
            s.record_request(
                id,
                &RequestRow {
                    label: label.into(),
                    warmup: k < labels.len(),
                    started_at: store::now_rfc3339(),
                    images: vec![ImageDesc {
                        name: String::new(),
                        width: w,
                        height: h,
                        blake3: "e".repeat(64),
                    }],
                    max_tokens: 100,
                    ignore_eos: true,
                    sampling: json!({"temperature": 0.0}),
                    prompt_tokens: 1000,
                    image_tokens: 980,
                    text_tokens: 20,
                    output_tokens: 100,
                    finish_reason: "length".into(),
                    preprocess_ms: 3.0,
                    vision_ms: 40.0,
                    prefill_ms: 30.0,
                    ttft_ms: 73.0 + k as f64,
                    decode_ms: 700.0,
                    total_ms: 780.0 + k as f64,
                    token_times_ms: (0..100).map(|i| 73.0 + 7.0 * i as f64).collect(),
                    cache_prefix: "disabled".into(),
                    cache_reused_tokens: 0,
                    vision_hits: 0,
                    vision_misses: 1,
                    vision_skipped: 0,
                    peak_memory_bytes: 6 << 30,
                    output_preview: "a".repeat(200),
                    ..RequestRow::default()
                },
            )
            .unwrap();
        }
        s.finish_run(id, "completed", None).unwrap();
    }
    t.elapsed().as_secs_f64()
}

/// The body's bytes of a GET that must succeed.
fn get(addr: SocketAddr, target: &str) -> usize {
    let (status, body) = testkit::http_get(&addr.to_string(), target).unwrap();
    assert_eq!(status, 200, "{target}: {}", &body[..60.min(body.len())]);
    body.len()
}

fn time_ms(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q| vlmbench_report::percentile(&v, q);
    (p(0.5), p(0.9))
}

/// Page loads in headless Chromium through `tests/browser/page.mjs`
/// (playwright-core): milliseconds from navigation to the page's
/// `data-ready`, per repeat.
fn page_loads(urls: &[String], repeat: usize) -> Option<Vec<(String, Vec<f64>)>> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/page.mjs");
    let out = Command::new("node")
        .arg(script)
        .args(urls)
        .args(["--repeat", &repeat.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("page.mjs: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let ms = v["ms"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_f64())
                .collect();
            Some((v["url"].as_str()?.to_string(), ms))
        })
        .collect()
}

fn main() {
    // Re-executed as the server process (so the browser talks to a process of
    // its own, as with `host serve`).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let db = std::path::PathBuf::from(&args[i + 1]);
        server::serve("127.0.0.1:0".parse().unwrap(), db, None, |a| {
            println!("{a}");
            let _ = std::io::stdout().flush();
        })
        .unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // LOAD_BENCH_DB keeps the database for a look afterwards.
    let db = std::env::var_os("LOAD_BENCH_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("load.db"));
    let _ = std::fs::remove_file(&db);
    let seed_s = seed(&db);
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: SocketAddr = line.trim().parse().unwrap();
    println!(
        "database: {RUNS} runs, {} request rows, {:.0} MB, seeded in {seed_s:.1} s\n",
        RUNS * REQUESTS_PER_RUN,
        size as f64 / 1e6
    );
    println!("| request | median | p90 | response |");
    println!("|---|---|---|---|");
    for target in [
        "/api/runs",
        "/api/runs?plugin=image_set&device=Apple%20M4%20Max",
        "/api/runs?offset=800&limit=200",
        "/api/facets",
        "/api/runs/500",
        "/api/runs/500/export?format=csv",
        "/api/compare?ids=10,20,30,40",
        "/app.js",
    ] {
        let mut bytes = 0;
        let (p50, p90) = time_ms(30, || bytes = get(addr, target));
        println!(
            "| GET {target} | {p50:.1} ms | {p90:.1} ms | {:.0} KB |",
            bytes as f64 / 1024.0
        );
    }
    let urls: Vec<String> = ["#/", "#/run/500", "#/compare/10,20,30,40"]
        .iter()
        .map(|p| format!("http://{addr}/{p}"))
        .collect();
    match page_loads(&urls, 5) {
        Some(loads) => {
            for (url, mut ms) in loads {
                ms.sort_by(|a, b| a.total_cmp(b));
                let page = url.split('/').skip(3).collect::<Vec<_>>().join("/");
                println!(
                    "| page /{page} in Chromium (navigation to rendered, 5 loads) | {:.0} ms | {:.0} ms (max) | |",
                    vlmbench_report::percentile(&ms, 0.5),
                    ms[ms.len() - 1]
                );
            }
        }
        None => println!(
            "| pages | Node.js with tests/browser/node_modules, or Chromium, missing | | |"
        ),
    }
    let _ = child.kill();
    let _ = child.wait();
}
