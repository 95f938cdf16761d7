//! The results page in a real browser: Debian's Chromium, headless, against
//! `host serve` on a test database. Saves a screenshot to tests/artifacts/.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{db, host, run};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    for p in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "Chromium is needed for the web page test: apt-get install chromium (scripts/test.sh installs it)"
    );
}

/// Runs headless Chromium on `url` with `extra` arguments; returns stdout.
fn browse(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=15000",
            "--window-size=1400,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
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

    let mut child = host()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", d])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server(child);
    let url = line
        .split("http://")
        .nth(1)
        .expect("the server prints its URL");
    let base = url.split('/').next().unwrap().to_string();

    let runs = browse(&format!("http://{base}/#/"), &["--dump-dom"]);
    assert!(
        runs.contains("id=\"runs-table\""),
        "no run table in:\n{runs}"
    );
    assert!(
        runs.contains("href=\"#/run/1\"") && runs.contains("resolution_sweep"),
        "run 1 not listed"
    );

    let page = browse(&format!("http://{base}/#/run/1"), &["--dump-dom"]);
    assert!(
        page.contains("data-ready=\"1\""),
        "the page did not finish rendering"
    );
    assert!(page.contains("class=\"chart\""), "no chart rendered");
    assert!(page.contains("<polyline"), "the chart has no line");
    assert!(page.contains("320x320") && page.contains("Repeat statistics"));

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("run-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &format!("http://{base}/#/run/1"),
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
}
