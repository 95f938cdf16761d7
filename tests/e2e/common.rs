//! Running `host` in a private data folder shared by the tests of this binary
//! (so the synthetic default model is generated once).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Generate the default model once, before tests race to do it.
        let out = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["model", "resolve"])
            .env("VLM_BENCH_HOME", dir.path())
            .env("HF_HUB_CACHE", dir.path().join("hf-hub-empty"))
            .env_remove("VLM_BENCH_MODEL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

/// A fresh database path for one test.
pub fn db(name: &str) -> PathBuf {
    let dir = home().join("dbs");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&p);
    p
}

pub fn host() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_host"));
    c.env("VLM_BENCH_HOME", home())
        .env("HF_HUB_CACHE", home().join("hf-hub-empty"))
        .env_remove("VLM_BENCH_MODEL")
        .env_remove("VLM_BENCH_DB");
    c
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Ran {
    let out: Output = host().args(args).output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

pub fn probe() -> String {
    plugins_built::test_plugin("probe").display().to_string()
}

pub fn hostile() -> String {
    plugins_built::test_plugin("hostile").display().to_string()
}

/// A finished `host` process: what it printed, how long it took, and the
/// most memory it held (its peak resident set, read from /proc while it
/// ran; 0 where there is no /proc).
pub struct Measured {
    pub ran: Ran,
    pub took: std::time::Duration,
    pub peak_rss_bytes: u64,
}

/// Runs `host` with `args`, watching its memory.
pub fn run_measured(args: &[&str]) -> Measured {
    let start = std::time::Instant::now();
    let mut child = host()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Drain the pipes on their own threads so a chatty child never blocks.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).to_string()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
        {
            peak = peak.max(kb * 1024);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Measured {
        ran: Ran {
            code: status.code().unwrap_or(-1),
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        took: start.elapsed(),
        peak_rss_bytes: peak,
    }
}

pub fn open(db: &Path) -> store::Store {
    store::Store::open(db).unwrap()
}

/// A child process that is killed and reaped when dropped, so a failing
/// assertion never leaves a host process running after the tests.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `host serve` for `db` on a free port: the process and its `host:port`.
pub fn serve(db: &str) -> (KillOnDrop, String) {
    let mut server = KillOnDrop(
        host()
            .args(["serve", "--addr", "127.0.0.1:0", "--db", db])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .expect("the server prints its URL")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    (server, addr)
}
