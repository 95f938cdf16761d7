//! Many requests at once: plugins that submit and wait (WIT 0.2), the host's
//! engine batching them, `host run --endpoint` measuring our own server,
//! mlx-vlm's server and a server that misbehaves, and the limits that hold
//! a plugin that floods the host or never waits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{KillOnDrop, db, home, hostile, open, probe, run};
use crate::serving::serve_api;

fn metric(d: &store::RunDetail, name: &str) -> f64 {
    d.metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name} in {:?}", d.metrics))
        .value
}

fn latest(db: &Path) -> store::RunDetail {
    let s = open(db);
    s.run(s.latest_run().unwrap().unwrap()).unwrap()
}

/// Most requests that were in flight at one time among `rows`.
fn most_in_flight(rows: &[&store::StoredRequest]) -> usize {
    let mut edges: Vec<(f64, i32)> = rows
        .iter()
        .flat_map(|r| {
            let at = r.row.sent_at_ms.expect("a sent time");
            [(at, 1), (at + r.row.total_ms, -1)]
        })
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn scheduled_requests_are_sent_on_time_and_batched_together() {
    let db = db("schedule");
    let r = run(&[
        "run",
        "--plugin",
        &probe(),
        "--db",
        db.to_str().unwrap(),
        "--set",
        "mode=schedule",
        "--set",
        "count=8",
        "--set",
        "interval_ms=15",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = latest(&db);
    assert_eq!(metric(&d, "finished"), 8.0);
    assert_eq!(
        metric(&d, "sent_early"),
        0.0,
        "the host sent a request before its time"
    );
    // Sent on schedule, 15 ms apart: none early, none late by much.
    let rows: Vec<_> = d.requests.iter().collect();
    assert_eq!(rows.len(), 8);
    let mut sent: Vec<f64> = rows.iter().map(|r| r.row.sent_at_ms.unwrap()).collect();
    sent.sort_by(f64::total_cmp);
    let late = metric(&d, "worst_late_ms");
    assert!(late < 200.0, "{late} ms late");
    let span = sent[7] - sent[0];
    assert!(
        span >= 7.0 * 15.0 - late,
        "8 requests sent within {span:.1} ms"
    );
    // The engine ran them together, not one after another.
    assert!(most_in_flight(&rows) > 1, "requests never overlapped");
    for r in &rows {
        assert_eq!(r.row.output_tokens, 4);
        assert!(r.row.queued_ms.is_some() && r.row.error.is_none());
    }
}

#[test]
fn a_plugin_that_floods_the_host_or_never_waits_is_bounded() {
    let db = db("flood");
    let r = run(&[
        "run",
        "--plugin",
        &hostile(),
        "--db",
        db.to_str().unwrap(),
        "--set",
        "mode=submit_flood",
        "--set",
        "count=10000",
        "--set",
        "size=32",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("1024 requests are pending"),
        "{}",
        r.stderr
    );
    let d = latest(&db);
    assert_eq!(d.summary.status, "failed");
    assert_eq!(metric(&d, "submitted"), 1024.0);
    assert_eq!(
        metric(&d, "before"),
        1.0,
        "what came before the flood is kept"
    );

    // Requests scheduled an hour ahead, never waited for: the run ends at
    // once and nothing is left running or recorded.
    let db = crate::common::db("never-wait");
    let started = Instant::now();
    let r = run(&[
        "run",
        "--plugin",
        &hostile(),
        "--db",
        db.to_str().unwrap(),
        "--set",
        "mode=never_wait",
        "--set",
        "count=5",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(60));
    let d = latest(&db);
    assert_eq!(d.summary.status, "completed");
    assert!(d.requests.is_empty(), "{:?}", d.requests);
}

#[test]
fn a_plugin_built_against_wit_0_1_runs_unchanged() {
    let db = db("wit-0-1");
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/plugins/resolution_sweep-wit-0.1.0.wasm");
    let r = run(&[
        "run",
        "--plugin",
        wasm.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--set",
        "resolutions=64x64,96x64",
        "--set",
        "repeats=2",
        "--set",
        "warmup=0",
        "--set",
        "max_tokens=6",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = latest(&db);
    assert_eq!(d.plugin_wit, "vlmbench:workload@0.1.0");
    assert_eq!(
        d.summary.verdict_passed,
        Some(true),
        "{:?}",
        d.verdict_summary
    );
    // Its image check read first logits through the 0.1 shapes.
    assert!(metric(&d, "image_check_max_logit_diff") > 0.0);
    let measured: Vec<_> = d.requests.iter().filter(|r| !r.row.warmup).collect();
    assert_eq!(measured.len(), 4);
    for q in measured {
        assert_eq!(q.row.output_tokens, 6);
        assert!(q.row.image_tokens > 0 && q.row.vision_ms > 0.0);
    }
    assert!(r.stdout.contains("| 96x64 |"), "{}", r.stdout);
}

/// The serving sweep's flags for a quick run.
const QUICK_SWEEP: [&str; 12] = [
    "--set",
    "concurrency=1,3",
    "--set",
    "requests=2",
    "--set",
    "sizes=64x64,96x96",
    "--set",
    "max_tokens=8",
    "--set",
    "saturation=0",
    "--set",
    "warmup=1",
];

fn sweep_table(d: &store::RunDetail) -> &store::ResultTable {
    d.tables
        .iter()
        .find(|t| t.name == "Serving sweep")
        .unwrap_or_else(|| panic!("no sweep table in {:?}", d.tables))
}

#[test]
fn serving_sweep_runs_locally_and_against_our_server_and_compares() {
    let db = db("sweep-local");
    let dbs = db.to_str().unwrap();
    let mut args = vec!["run", "--plugin", "serving_sweep.wasm", "--db", dbs];
    args.extend(QUICK_SWEEP);
    args.extend(["--set", "rates=20", "--set", "rate_requests=4"]);
    let local = run(&args);
    assert_eq!(local.code, 0, "{}", local.stderr);
    let l = latest(&db);
    let t = sweep_table(&l);
    let loads: Vec<&str> = t.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(loads, ["c=1", "c=3", "rate=20"]);
    for row in &t.rows {
        assert_eq!(row[2], "0", "errors at {}: {row:?}", row[0]);
    }
    let at_three: Vec<_> = l.requests.iter().filter(|r| r.row.label == "c=3").collect();
    assert_eq!(at_three.len(), 6);
    assert!(most_in_flight(&at_three) > 1);
    assert!(metric(&l, "output_tok_s[c=3]") > 0.0);

    // A granted image set instead of synthetic sizes: the files that open
    // are the mix, the others are left out and said so.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images");
    let set_run = run(&[
        "run",
        "--plugin",
        "serving_sweep.wasm",
        "--db",
        dbs,
        "--images",
        fixtures.to_str().unwrap(),
        "--set",
        "image_set=images",
        "--set",
        "concurrency=2",
        "--set",
        "requests=2",
        "--set",
        "max_tokens=4",
        "--set",
        "warmup=0",
    ]);
    assert_eq!(set_run.code, 0, "{}", set_run.stderr);
    let s = latest(&db);
    assert_eq!(s.requests.len(), 4);
    assert!(s.requests.iter().all(|r| r.row.error.is_none()));
    assert!(
        s.notes.iter().any(|n| n.contains("could not be opened")),
        "{:?}",
        s.notes
    );

    let serve_db = crate::common::db("sweep-served");
    let (_server, addr) = serve_api(serve_db.to_str().unwrap(), &[]);
    let url = format!("http://{addr}/v1");
    let mut args = vec!["run", "--plugin", "serving_sweep.wasm", "--db", dbs];
    args.extend(["--endpoint", &url]);
    args.extend(QUICK_SWEEP);
    let remote = run(&args);
    assert_eq!(remote.code, 0, "{}", remote.stderr);
    let e = latest(&db);
    assert_eq!(e.summary.endpoint.as_deref(), Some(url.as_str()));
    assert_eq!(e.summary.backend, "endpoint");
    let rows: Vec<_> = e.requests.iter().filter(|r| !r.row.warmup).collect();
    assert_eq!(rows.len(), 8);
    for q in &rows {
        assert!(q.row.remote && q.row.error.is_none(), "{:?}", q.row);
        assert_eq!(q.row.output_tokens, 8, "ignore_eos reached our server");
        assert!(q.row.ttft_ms > 0.0 && q.row.total_ms >= q.row.ttft_ms);
        assert!(q.row.prompt_tokens > 0);
    }
    // The server's own counters, scraped before and after.
    let scraped = e
        .tables
        .iter()
        .find(|t| t.name.starts_with("server metrics"))
        .expect("a scrape of /metrics");
    let completed = scraped
        .rows
        .iter()
        .find(|r| r[0] == "vlm_requests_total{status=\"completed\"}")
        .expect("requests completed");
    assert_eq!(completed[3], "10", "8 measured + 2 warm-ups: {completed:?}");
    // Every request the server answered is in its own run too.
    assert_eq!(latest(&serve_db).requests.len(), 10);

    let cmp = run(&[
        "results",
        "compare",
        &l.summary.id.to_string(),
        &e.summary.id.to_string(),
        "--db",
        dbs,
    ]);
    assert_eq!(cmp.code, 0, "{}", cmp.stderr);
    assert!(
        cmp.stdout.contains(&format!("server at {url}")) && cmp.stdout.contains("| c=3 |"),
        "{}",
        cmp.stdout
    );

    // The other built-in plugins against the server: what it cannot report
    // is said, not faked.
    let cache = run(&[
        "run",
        "--plugin",
        "cache_verification.wasm",
        "--db",
        dbs,
        "--endpoint",
        &url,
        "--set",
        "size=64",
        "--set",
        "resolutions=64,96",
        "--set",
        "max_tokens=6",
    ]);
    assert_eq!(cache.code, 0, "{}", cache.stderr);
    let c = latest(&db);
    assert_eq!(
        c.summary.verdict_passed,
        Some(true),
        "{:?}",
        c.verdict_summary
    );
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("outputs and timings only")),
        "{:?}",
        c.notes
    );
    let steps = &c
        .tables
        .iter()
        .find(|t| t.name.starts_with("Prefix cache"))
        .unwrap()
        .rows;
    // Our server reports what its prefix cache reused on a repeated request.
    let repeat = steps.iter().find(|r| r[0] == "1b").unwrap();
    assert_ne!(repeat[3], "—", "{repeat:?}");
    let sweep = run(&[
        "run",
        "--plugin",
        "resolution_sweep.wasm",
        "--db",
        dbs,
        "--endpoint",
        &url,
        "--set",
        "resolutions=64x64",
        "--set",
        "repeats=1",
        "--set",
        "warmup=0",
        "--set",
        "max_tokens=6",
    ]);
    assert_eq!(sweep.code, 0, "{}", sweep.stderr);
    let w = latest(&db);
    assert_eq!(
        w.verdict_summary.as_deref(),
        Some("the image reaches the model (different images give different outputs)")
    );
    assert!(
        w.metrics
            .iter()
            .all(|m| m.name != "image_check_max_logit_diff")
    );
}

/// A server that misbehaves in a new way for each chat request, in turn:
/// the behaviours a real server shows when it fails.
/// `host` with `args`, the API key `sekret` in `FLAKY_KEY`.
fn with_key(args: &[&str]) -> crate::common::Ran {
    let out = crate::common::host()
        .args(args)
        .env("FLAKY_KEY", "sekret")
        .output()
        .unwrap();
    crate::common::Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// It answers only requests that carry the API key `sekret`.
fn misbehaving_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let chats = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let counter = chats.clone();
            std::thread::spawn(move || answer(conn, &counter));
        }
    });
    addr
}

const OK_EVENTS: &str = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
    data: {\"choices\":[{\"delta\":{\"content\":\"one\"}}]}\n\n\
    data: {\"choices\":[{\"delta\":{\"content\":\" two three four\"},\"finish_reason\":\"length\"}]}\n\n\
    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":4}}\n\n\
    data: [DONE]\n\n";

fn answer(mut conn: TcpStream, chats: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let reply = |conn: &mut TcpStream, status: &str, kind: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if !head
        .to_ascii_lowercase()
        .contains("authorization: bearer sekret\r\n")
    {
        return reply(
            &mut conn,
            "401 Unauthorized",
            "application/json",
            r#"{"error":{"message":"no API key"}}"#,
        );
    }
    if head.starts_with("GET /v1/models") {
        let models = r#"{"object":"list","data":[{"id":"flaky","object":"model","owned_by":"flaky-server"}]}"#;
        return reply(&mut conn, "200 OK", "application/json", models);
    }
    if !head.starts_with("POST /v1/chat/completions") {
        return reply(&mut conn, "404 Not Found", "text/plain", "no such page");
    }
    let stream_head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    match chats.fetch_add(1, Ordering::SeqCst) % 7 {
        0 => {
            let _ = write!(conn, "{stream_head}{OK_EVENTS}");
        }
        1 => reply(
            &mut conn,
            "500 Internal Server Error",
            "application/json",
            r#"{"error":{"message":"the GPU fell over"}}"#,
        ),
        2 => {
            let _ = write!(conn, "{stream_head}data: {{this is not json\n\n");
        }
        3 => {
            // One piece of text, then the connection closes: no [DONE].
            let _ = write!(
                conn,
                "{stream_head}data: {{\"choices\":[{{\"delta\":{{\"content\":\"cut\"}}}}]}}\n\n"
            );
        }
        4 => {
            // Says nothing for longer than the client waits.
            std::thread::sleep(Duration::from_secs(8));
        }
        5 => {
            // Fails mid-stream, as servers report it: an error event.
            let _ = write!(
                conn,
                "{stream_head}data: {{\"choices\":[{{\"delta\":{{\"content\":\"a\"}}}}]}}\n\n\
                 data: {{\"error\":{{\"message\":\"out of KV blocks\"}}}}\n\n"
            );
        }
        _ => reply(
            &mut conn,
            "429 Too Many Requests",
            "application/json",
            r#"{"error":{"message":"slow down"}}"#,
        ),
    }
}

#[test]
fn a_misbehaving_server_is_recorded_request_by_request() {
    let addr = misbehaving_server();
    let db = db("flaky");
    let url = format!("http://{addr}/v1");
    let sweep = |stop: &str| {
        with_key(&[
            "run",
            "--plugin",
            "serving_sweep.wasm",
            "--db",
            db.to_str().unwrap(),
            "--endpoint",
            &url,
            "--api-key-env",
            "FLAKY_KEY",
            "--read-timeout",
            "1",
            "--set",
            "concurrency=1",
            "--set",
            "requests=7",
            "--set",
            "warmup=0",
            "--set",
            "sizes=32x32",
            "--set",
            "max_tokens=4",
            "--set",
            &format!("stop_on_error={stop}"),
        ])
    };
    // Without its key the server is refused at the start, by its own words.
    let r = run(&[
        "run",
        "--plugin",
        "serving_sweep.wasm",
        "--db",
        db.to_str().unwrap(),
        "--endpoint",
        &url,
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("HTTP 401: no API key"), "{}", r.stderr);
    // The plugin counts errors and goes on.
    let r = sweep("false");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = latest(&db);
    let kinds: Vec<Option<&str>> = d
        .requests
        .iter()
        .map(|q| q.row.error_kind.as_deref())
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            Some("server"),
            Some("protocol"),
            Some("protocol"),
            Some("timeout"),
            Some("server"),
            Some("overloaded")
        ]
    );
    assert!(
        d.requests[5]
            .row
            .error
            .as_deref()
            .unwrap()
            .contains("out of KV blocks")
    );
    let ok = &d.requests[0].row;
    assert_eq!(ok.output_tokens, 4);
    assert_eq!(ok.prompt_tokens, 20);
    // Two events brought the four tokens: one, then three together.
    assert_eq!(ok.token_times_ms.len(), 2);
    assert_eq!(ok.chunk_tokens, [1, 3]);
    assert!(
        d.requests[1]
            .row
            .error
            .as_deref()
            .unwrap()
            .contains("the GPU fell over")
    );
    let row = &sweep_table(&d).rows[0];
    assert_eq!(row[1], "1");
    assert_eq!(row[2], "2 server, 2 protocol, 1 timeout, 1 overloaded");
    assert_eq!(d.summary.model_name, "flaky");

    // The plugin stops at the first error: the run fails, what was recorded stays.
    let r = sweep("true");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("the GPU fell over"), "{}", r.stderr);
    let d = latest(&db);
    assert_eq!(d.summary.status, "failed");
    assert_eq!(d.requests.len(), 2);

    // Nobody listening: refused before any run starts.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let before = open(&db).count_runs().unwrap();
    let r = run(&[
        "run",
        "--plugin",
        "serving_sweep.wasm",
        "--db",
        db.to_str().unwrap(),
        "--endpoint",
        &dead,
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("asking {dead}/models")),
        "{}",
        r.stderr
    );
    assert_eq!(open(&db).count_runs().unwrap(), before);
}

/// mlx-vlm's OpenAI-compatible server (its own continuous batching), from
/// PyPI with the MLX CPU wheel, serving a synthetic model in the
/// mlx-community layout: a server nobody here wrote.
#[test]
fn serving_sweep_measures_mlx_vlms_server() {
    let python =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/.venv-mlx-vlm/bin/python");
    assert!(
        python.exists(),
        "this test needs mlx-vlm in tests/clients/.venv-mlx-vlm (scripts/test.sh sets it up)"
    );
    let model = home().join("tiny-4bit-mlx");
    if !model.join("config.json").exists() {
        let synth = run(&[
            "model",
            "synth",
            "--arch",
            "qwen3-vl-tiny",
            "--quant",
            "4",
            "--layout",
            "mlx",
            "--out",
            model.to_str().unwrap(),
        ]);
        assert_eq!(synth.code, 0, "{}", synth.stderr);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = home().join("mlx-vlm-server.log");
    let _server = KillOnDrop(
        std::process::Command::new(&python)
            .args(["-m", "mlx_vlm.server", "--model"])
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/v1");
    let deadline = Instant::now() + Duration::from_secs(180);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mlx-vlm's server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let db = db("mlx-vlm");
    let r = run(&[
        "run",
        "--plugin",
        "serving_sweep.wasm",
        "--db",
        db.to_str().unwrap(),
        "--endpoint",
        &url,
        "--set",
        "concurrency=1,2",
        "--set",
        "requests=2",
        "--set",
        "sizes=64x64",
        "--set",
        "max_tokens=8",
        "--set",
        "saturation=0",
        "--set",
        "warmup=1",
    ]);
    assert_eq!(
        r.code,
        0,
        "{}\nserver log:\n{}",
        r.stderr,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let d = latest(&db);
    assert!(
        d.summary.device.starts_with("mlx_vlm/"),
        "{}",
        d.summary.device
    );
    let rows: Vec<_> = d.requests.iter().filter(|r| !r.row.warmup).collect();
    assert_eq!(rows.len(), 6);
    for q in rows {
        assert!(q.row.error.is_none(), "{:?}", q.row.error);
        assert!(q.row.output_tokens > 0 && q.row.ttft_ms > 0.0);
    }
    let t = sweep_table(&d);
    assert_eq!(t.rows.len(), 2);
}
