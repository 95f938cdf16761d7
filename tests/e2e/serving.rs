//! The OpenAI-compatible API, driven by OpenAI's own Python client
//! (`tests/clients/openai_client.py`, the `openai` package pinned in
//! `tests/clients/requirements.txt`) against `host serve --model`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{KillOnDrop, db, home, host, open};

/// `host serve --model` on a free port with `extra` flags: the process and
/// its `host:port`. The server's stderr goes to `DB.log`.
pub fn serve_api(db: &str, extra: &[&str]) -> (KillOnDrop, String) {
    let mut server = KillOnDrop(
        host()
            .args(["serve", "--addr", "127.0.0.1:0", "--db", db])
            .args(["--model", "synthetic:qwen3-vl-tiny"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(format!("{db}.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr = address(&mut server);
    (server, addr)
}

/// The `host:port` a starting server prints; the rest of its output is
/// drained on a thread, so that the server never writes to a closed pipe.
fn address(server: &mut KillOnDrop) -> String {
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("the server prints its URL, not {line:?}"))
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_openai_client_gets_answers_streams_and_errors() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/.venv/bin/python");
    assert!(
        python.exists(),
        "the API test needs OpenAI's Python client in tests/clients/.venv (scripts/test.sh sets it up)"
    );
    let db = db("api");
    let images = home().join("api-images");
    std::fs::create_dir_all(&images).unwrap();
    let (_server, addr) = serve_api(
        db.to_str().unwrap(),
        &["--queue", "16", "--images", images.to_str().unwrap()],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/openai_client.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(format!("http://{addr}/v1"))
        .arg("qwen3-vl-tiny-bf16-seed0")
        .arg(&images)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\nthe server said: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(format!("{}.log", db.display())).unwrap_or_default()
    );
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // The mid-stream disconnect cancelled its request.
    assert!(figures["cancelled"].as_u64().unwrap() >= 1, "{figures}");
    // Every answered request is a row of the serving run.
    let completed = figures["completed"].as_u64().unwrap();
    assert!(completed >= 13, "{figures}");
    let s = open(&db);
    s.integrity_check().unwrap();
    let id = s.latest_run().unwrap().unwrap();
    let run = s.run(id).unwrap();
    assert_eq!(run.summary.plugin_name, "openai-api");
    assert_eq!(run.requests.len() as u64, completed);
    assert!(
        run.requests
            .iter()
            .any(|r| r.row.images.len() == 1 && r.row.image_tokens > 0)
    );
}

/// One raw HTTP/1.1 POST: the status and the headers and body as text.
fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let db = db("api_queue");
    let (_server, addr) = serve_api(db.to_str().unwrap(), &["--queue", "1", "--max-batch", "1"]);
    // Each request decodes 300 tokens: one runs, one waits, the rest are turned away.
    let body =
        r#"{"messages":[{"role":"user","content":"Go."}],"max_tokens":300,"ignore_eos":true}"#;
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| post(&addr, "/v1/chat/completions", body)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, t)| t)
        .collect();
    assert!(
        ok >= 1 && !busy.is_empty() && ok + busy.len() == 6,
        "{answers:?}"
    );
    for text in busy {
        let lower = text.to_lowercase();
        assert!(lower.contains("retry-after: 1"), "{text}");
        assert!(text.contains("\"rate_limit_error\""), "{text}");
    }
    // Still serving.
    let (status, _) = post(
        &addr,
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#,
    );
    assert_eq!(status, 200);
}
