//! Crash safety and load: `host run` killed at random moments leaves a
//! consistent database with the run marked interrupted; `host serve` reads
//! while `host run` writes; the server holds a mixed load without 5xx.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{KillOnDrop, db, host, open, serve};

/// A small deterministic sequence of delays (no clock-seeded randomness in tests).
fn delays(n: usize) -> Vec<Duration> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(300 + x % 2700)
        })
        .collect()
}

/// A quiet `host run` of the sweep into `db`, in the background.
fn spawn_sweep(db: &str, resolutions: &str, repeats: u32, max_tokens: u32) -> KillOnDrop {
    KillOnDrop(
        host()
            .args(["run", "--plugin", "resolution_sweep.wasm", "--db", db, "-q"])
            .args(["--set", &format!("resolutions={resolutions}")])
            .args(["--set", &format!("repeats={repeats}")])
            .args(["--set", &format!("max_tokens={max_tokens}")])
            .args(["--set", "check_image=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let db = db("crash");
    let d = db.to_str().unwrap().to_string();
    let mut killed_runs = 0;
    for (i, delay) in delays(20).into_iter().enumerate() {
        let mut child = spawn_sweep(&d, "224x224,256x256", 40, 4);
        std::thread::sleep(delay);
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        // Opening the store is the "next start": it must find the database sound
        // and mark what the killed process left running.
        let s = open(&db);
        s.integrity_check()
            .unwrap_or_else(|e| panic!("iteration {i}: {e}"));
        for r in s.list_runs(&Default::default()).unwrap() {
            assert_ne!(
                r.status, "running",
                "iteration {i}: run {} still marked running",
                r.id
            );
            if status.code().is_none() && r.status == "interrupted" {
                // Every request row stored belongs to a run that exists.
                let d = s.run(r.id).unwrap();
                assert!(d.requests.iter().all(|q| q.row.output_tokens == 4));
            }
        }
        if status.code().is_none() {
            killed_runs += 1;
        }
    }
    let s = open(&db);
    let interrupted = s
        .list_runs(&Default::default())
        .unwrap()
        .iter()
        .filter(|r| r.status == "interrupted")
        .count();
    assert!(
        killed_runs >= 15,
        "only {killed_runs} of 20 processes were killed mid-run"
    );
    assert!(
        interrupted >= 10,
        "only {interrupted} runs were marked interrupted"
    );
}

/// The status of a GET as sent (0 when the connection failed).
fn get(addr: &str, target: &str) -> u16 {
    testkit::http_get(addr, target).map_or(0, |(status, _)| status)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn serve_reads_while_run_writes_and_holds_a_mixed_load() {
    let db = db("load");
    let d = db.to_str().unwrap().to_string();
    let (server, addr) = serve(&d);

    // A run writes while we read.
    let mut run = spawn_sweep(&d, "224x224", 30, 8);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reads = 0;
    while run.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run did not finish");
        for t in [
            "/api/runs",
            "/api/runs/1",
            "/api/facets",
            "/api/runs/1/export?format=csv",
        ] {
            let code = get(&addr, t);
            // 404 only before the run's row exists.
            assert!(
                code == 200 || (code == 404 && t.starts_with("/api/runs/1")),
                "{t} answered {code} during the run"
            );
            reads += 1;
        }
    }
    assert!(run.wait().unwrap().success());
    assert!(reads > 20, "only {reads} reads happened during the run");

    // A bounded mixed load: valid, invalid and hostile requests from 4 threads.
    let targets = [
        "/api/runs",
        "/api/runs/1",
        "/api/runs/999",
        "/api/runs/x",
        "/api/compare?ids=1",
        "/api/runs?limit=-5",
        "/../etc/passwd",
        "/app.js",
        "/%00",
        "/api/runs/1/export?format=pdf",
    ];
    let long = format!("/api/runs?plugin={}", "a".repeat(8000));
    let before = rss_kb(server.0.id());
    let t0 = Instant::now();
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let (addr, long) = (&addr, &long);
                s.spawn(move || {
                    (0..300)
                        .map(|i| {
                            if (i + k) % 50 == 0 {
                                get(addr, long)
                            } else {
                                get(addr, targets[(i * 7 + k) % targets.len()])
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let took = t0.elapsed();
    let after = rss_kb(server.0.id());
    assert!(
        codes.iter().all(|&c| (200..500).contains(&c)),
        "server errors: {:?}",
        codes
            .iter()
            .filter(|&&c| !(200..500).contains(&c))
            .collect::<Vec<_>>()
    );
    assert!(
        codes.contains(&200)
            && codes.contains(&404)
            && codes.contains(&400)
            && codes.contains(&414)
    );
    eprintln!(
        "{} requests in {took:?}; server RSS {before} kB before, {after} kB after",
        codes.len()
    );
    assert!(
        after < before + 64 * 1024,
        "server memory grew from {before} kB to {after} kB"
    );
}
