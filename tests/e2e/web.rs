//! The results page in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/browser/page.mjs`), against `host serve` on a test
//! database. Saves a screenshot to tests/artifacts/.

use std::path::Path;
use std::process::Command;

use crate::common::{db, run, serve};

/// Runs `tests/browser/page.mjs` (playwright-core driving Debian's Chromium)
/// on `urls`; returns one JSON object per page.
fn pages(urls: &[String], screenshot: Option<&Path>) -> Vec<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the browser test needs Node.js and `npm ci` in tests/browser, and Debian's chromium (scripts/test.sh sets them up)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("page.mjs")).args(urls);
    if let Some(p) = screenshot {
        cmd.arg("--screenshot").arg(p);
    }
    let out = cmd.output().expect("running node");
    assert!(
        out.status.success(),
        "page.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_page_shows_runs_and_draws_charts() {
    let db = db("web");
    let d = db.to_str().unwrap();
    let r = run(&[
        "run",
        "--plugin",
        "resolution_sweep.wasm",
        "--db",
        d,
        "--set",
        "resolutions=224x224,320x320",
        "--set",
        "repeats=2",
        "--set",
        "max_tokens=8",
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A run whose requests overlapped: its load levels, and the telemetry.
    let r = run(&[
        "run",
        "--plugin",
        "serving_sweep.wasm",
        "--db",
        d,
        "--set",
        "concurrency=1,2",
        "--set",
        "requests=2",
        "--set",
        "sizes=64x64",
        "--set",
        "max_tokens=6",
        "--set",
        "saturation=0",
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let (_server, base) = serve(d);

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("run-page.png");
    let _ = std::fs::remove_file(&shot);
    let got = pages(
        &[
            format!("http://{base}/#/"),
            format!("http://{base}/#/run/2"),
            format!("http://{base}/#/compare/2,1"),
            format!("http://{base}/#/run/1"),
        ],
        Some(&shot),
    );
    let (list, sweep, compare, run_page) = (&got[0], &got[1], &got[2], &got[3]);
    for page in [sweep, compare] {
        assert_eq!(
            page["errors"],
            serde_json::json!([]),
            "script errors: {page}"
        );
    }
    let has = |page: &serde_json::Value, key: &str, what: &str| {
        page[key].as_array().unwrap().iter().any(|t| t == what)
    };
    assert!(
        has(sweep, "tables", "Serving sweep") && has(sweep, "tables", "Telemetry"),
        "{sweep}"
    );
    assert!(has(sweep, "ids", "telemetry"), "{sweep}");
    assert!(has(compare, "ids", "compare-load"), "{compare}");
    assert_eq!(
        list["errors"],
        serde_json::json!([]),
        "script errors: {list}"
    );
    assert_eq!(list["runsTable"], true, "no run table: {list}");
    assert_eq!(list["runRows"], 2, "{list}");
    assert_eq!(
        run_page["errors"],
        serde_json::json!([]),
        "script errors: {run_page}"
    );
    assert_eq!(run_page["title"], "Run 1: resolution_sweep");
    assert!(
        run_page["charts"].as_u64().unwrap() >= 3,
        "charts: {run_page}"
    );
    assert!(
        run_page["lines"].as_u64().unwrap() >= 2 && run_page["bars"].as_u64().unwrap() >= 8,
        "chart content: {run_page}"
    );
    assert!(
        run_page["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "Repeat statistics"),
        "{run_page}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
}
