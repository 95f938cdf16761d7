//! The JSON API over a test database, through a real socket.

use std::net::SocketAddr;
use std::sync::mpsc;

use serde_json::{Value, json};
use store::{ImageDesc, NewRun, RequestRow, Store};

fn seed(db: &std::path::Path) {
    let mut s = Store::open(db).unwrap();
    for run in 0..3 {
        let id = s
            .create_run(&NewRun {
                plugin_name: if run < 2 {
                    "resolution_sweep".into()
                } else {
                    "image_set".into()
                },
                plugin_version: "0.1.0".into(),
                plugin_blake3: "ab".repeat(32),
                plugin_wit: "vlmbench:workload@0.1.0".into(),
                params: json!({"quick": "true"}),
                model_name: "m".into(),
                model_path: "/m".into(),
                model_config_hash: "cd".into(),
                model_quantization: "bf16".into(),
                model_synthetic: true,
                model: json!({}),
                host_version: "0.1.0".into(),
                host_commit: "c".into(),
                mlx_version: "0.32.4".into(),
                backend: "cpu".into(),
                device: "test cpu".into(),
                machine: json!({"cpu": "test"}),
                endpoint: None,
            })
            .unwrap();
        for (i, side) in [224u32, 448].iter().enumerate() {
            for rep in 0..3 {
                let total = 1000.0 + 100.0 * i as f64 + rep as f64 + run as f64 * 300.0;
                s.record_request(
                    id,
                    &RequestRow {
                        label: format!("{side}x{side}"),
                        warmup: rep == 0,
                        started_at: store::now_rfc3339(),
                        images: vec![ImageDesc {
                            name: String::new(),
                            width: *side,
                            height: *side,
                            blake3: "x".into(),
                        }],
                        max_tokens: 10,
                        ignore_eos: true,
                        sampling: json!({}),
                        prompt_tokens: 80,
                        image_tokens: 64,
                        text_tokens: 16,
                        output_tokens: 10,
                        finish_reason: "length".into(),
                        preprocess_ms: 1.0,
                        vision_ms: 10.0,
                        prefill_ms: 5.0,
                        ttft_ms: 16.0,
                        decode_ms: total - 16.0,
                        total_ms: total,
                        token_times_ms: (0..10).map(|k| 16.0 + k as f64 * 10.0).collect(),
                        cache_prefix: "disabled".into(),
                        cache_reused_tokens: 0,
                        vision_hits: 0,
                        vision_misses: 1,
                        vision_skipped: 0,
                        peak_memory_bytes: 1 << 20,
                        output_preview: "hello, \"world\"".into(),
                        ..RequestRow::default()
                    },
                )
                .unwrap();
            }
        }
        s.finish_run(id, "completed", None).unwrap();
    }
}

fn start() -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    seed(&db);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        server::serve("127.0.0.1:0".parse().unwrap(), db, None, |addr| {
            tx.send(addr).unwrap()
        })
        .unwrap();
    });
    (rx.recv().unwrap(), dir)
}

/// A GET as sent, without a client's normalising (`testkit::http_get`).
fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    testkit::http_get(&addr.to_string(), target).unwrap()
}

fn json(addr: SocketAddr, target: &str) -> (u16, Value) {
    let (st, body) = get(addr, target);
    (st, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn api_answers_and_rejects_bad_requests() {
    let (addr, _dir) = start();
    let (st, runs) = json(addr, "/api/runs");
    assert_eq!(st, 200);
    assert_eq!(runs["total"], 3);
    assert_eq!(runs["runs"][0]["id"], 3, "newest first");
    assert_eq!(runs["runs"][0]["requests"], 6);
    let (_, f) = json(addr, "/api/runs?plugin=resolution_sweep&limit=1");
    assert_eq!(
        (f["total"].as_i64(), f["runs"].as_array().unwrap().len()),
        (Some(2), 1)
    );
    let (_, facets) = json(addr, "/api/facets");
    assert_eq!(facets["plugins"], json!(["image_set", "resolution_sweep"]));
    let (st, run) = json(addr, "/api/runs/1");
    assert_eq!(st, 200);
    assert_eq!(run["requests"].as_array().unwrap().len(), 6);
    // The benchmark's table from the measured requests, for the page.
    let table = &run["resolution_table"];
    assert_eq!(table["columns"][0], "Resolution");
    assert_eq!(table["rows"][0][0], "224x224");
    assert_eq!(table["rows"].as_array().unwrap().len(), 2);
    assert_eq!(
        run["requests"][1]["speed_tok_s"].as_f64().unwrap().round(),
        10.0
    );
    let (st, csv) = get(addr, "/api/runs/1/export?format=csv");
    assert_eq!(st, 200);
    assert!(
        csv.contains("\"hello, \"\"world\"\"\""),
        "CSV quoting: {csv}"
    );
    let (_, md) = get(addr, "/api/runs/1/export?format=md");
    assert!(md.contains("| 224x224 | 50K |"), "{md}");
    let (st, cmp) = json(addr, "/api/compare?ids=1,2");
    assert_eq!(st, 200);
    let speed = cmp["comparison"]["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["figure"] == "total_ms")
        .unwrap()
        .clone();
    assert_eq!(
        speed["significant"][1], true,
        "300 ms apart with 0.7 ms noise is beyond noise"
    );

    for (target, code) in [
        ("/api/runs/999", 404),
        ("/api/runs/abc", 400),
        ("/api/runs?limit=many", 400),
        ("/api/runs/1/export?format=xml", 400),
        ("/api/compare?ids=1", 400),
        ("/api/compare?ids=1,x", 400),
        ("/api/nothing", 404),
        ("/../../etc/passwd", 404),
        ("/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/app.js/../../Cargo.toml", 404),
    ] {
        assert_eq!(get(addr, target).0, code, "{target}");
    }
    let long = format!("/api/runs?plugin={}", "x".repeat(5000));
    assert_eq!(get(addr, &long).0, 414);
    let (st, page) = get(addr, "/");
    assert_eq!(st, 200);
    assert!(page.contains("<script src=\"/app.js\">"));
}
