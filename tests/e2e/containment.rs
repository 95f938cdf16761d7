//! Containment: a hostile plugin (`plugins/tests/hostile`) tries to make the
//! host store, hold or wait for more than the user allowed, to crash it, and
//! to confuse its messages. Each attack must end the run in the expected
//! state, within its deadline, under the memory budget plus a margin, with
//! what was recorded before intact and the database sound.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{KillOnDrop, Measured, db, home, host, hostile, open, run, run_measured};

/// What the host holds for a run of the synthetic tiny model before any
/// plugin does anything (the engine, the model, wasmtime, SQLite): the
/// margin over the budgets the tests allow.
const HOST_MARGIN: u64 = 400 << 20;

/// A run of the hostile plugin in `mode`: the measured process and the
/// stored run, checked to be sound and to keep the metric recorded first.
fn attack(name: &str, mode: &str, extra: &[&str]) -> (Measured, store::RunDetail, PathBuf) {
    let db = db(name);
    let plugin = hostile();
    let mut args = vec![
        "run",
        "--plugin",
        plugin.as_str(),
        "--db",
        db.to_str().unwrap(),
    ];
    let set_mode = format!("mode={mode}");
    args.extend_from_slice(&["--set", &set_mode]);
    args.extend_from_slice(extra);
    let m = run_measured(&args);
    let flag = |name: &str, default: u64| -> u64 {
        extra
            .iter()
            .position(|a| *a == name)
            .map_or(default, |i| extra[i + 1].parse().unwrap())
    };
    // The plugin's share and the engine's work for one request.
    let budget = flag("--memory-mb", 512) + flag("--request-mb", 0);
    assert!(
        m.peak_rss_bytes < (budget << 20) + HOST_MARGIN,
        "{mode}: the host held {} MiB, over the budget of {budget} MiB and the margin",
        m.peak_rss_bytes >> 20
    );
    let s = open(&db);
    s.integrity_check().unwrap();
    let id = s
        .latest_run()
        .unwrap()
        .unwrap_or_else(|| panic!("no run recorded: {}", m.ran.stderr));
    let d = s.run(id).unwrap();
    assert!(
        d.metrics
            .iter()
            .any(|m| m.name == "before" && m.value == 1.0),
        "{mode}: what was recorded before the attack is gone: {}",
        m.ran.stderr
    );
    (m, d, db)
}

/// A hostile run that sleeps in WASI for `seconds`, started in the
/// background: the process, and its run's id once recorded.
fn sleeping_run(db: &std::path::Path, seconds: u64) -> (KillOnDrop, i64) {
    let child = KillOnDrop(
        host()
            .args([
                "run",
                "--plugin",
                &hostile(),
                "--db",
                db.to_str().unwrap(),
                "-q",
            ])
            .args([
                "--set",
                "mode=sleep",
                "--set",
                &format!("seconds={seconds}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        assert!(Instant::now() < deadline, "the run never started");
        if let Some(id) = open(db).latest_run().unwrap() {
            break id;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (child, id)
}

fn error_of(d: &store::RunDetail) -> String {
    d.summary.error.clone().unwrap_or_default()
}

/// The run's time as the host reported it ("run 3 timed_out in 3.1 s").
fn reported_seconds(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("run ") && l.contains(" in ") && l.contains(" s"))
        .unwrap_or_else(|| panic!("no run line in {stderr}"));
    let after = line.split(" in ").nth(1).unwrap();
    after
        .split(' ')
        .next()
        .unwrap()
        .trim_end_matches(':')
        .parse()
        .unwrap()
}

#[test]
fn everything_a_plugin_makes_the_host_hold_counts_against_one_budget() {
    // 30 images of 4096x4096 (48 MiB of pixels each) against 256 MiB.
    let (m, d, _) = attack(
        "hoard",
        "hoard_images",
        &[
            "--set",
            "count=30",
            "--set",
            "size=4096",
            "--memory-mb",
            "256",
            "-q",
        ],
    );
    assert_eq!(d.summary.status, "failed", "{}", m.ran.stderr);
    let e = error_of(&d);
    assert!(
        e.contains("memory budget of 256 MiB (--memory-mb) ran out") && e.contains("images"),
        "{e}"
    );
    let held = d.metrics.iter().filter(|m| m.name == "held").count();
    assert!((1..6).contains(&held), "{held} images held");

    // Growing memory politely: refused, not a trap.
    let (m, d, _) = attack("reserve", "try_reserve", &["--set", "size=1024", "-q"]);
    assert_eq!(d.summary.status, "completed", "{}", m.ran.stderr);
}

#[test]
fn requests_past_their_limits_are_refused_before_the_engine_works() {
    // 2,000 parts naming one 32x32 image.
    let (_, d, _) = attack("parts", "image_parts", &["--set", "count=2000", "-q"]);
    let e = error_of(&d);
    assert!(
        e.contains("image parts") && e.contains("over the limit"),
        "{e}"
    );

    // A role of 1 MiB.
    let (_, d, _) = attack("role", "long_role", &["--set", "size=1024", "-q"]);
    let e = error_of(&d);
    assert!(e.contains("over the limit"), "{e}");

    // A 3000x3000 image against 64 MiB of engine memory per request.
    let (_, d, _) = attack(
        "huge_image_refused",
        "huge_image",
        &["--set", "size=3000", "--request-mb", "64", "-q"],
    );
    let e = error_of(&d);
    assert!(
        e.contains("over the engine's limit of 64.0 MiB per request")
            && e.contains("the largest image's encoding"),
        "{e}"
    );

    // top_k past the vocabulary keeps every token; JPEG quality is 1 to 100.
    for mode in ["top_k", "jpeg_quality"] {
        let (m, d, _) = attack(mode, mode, &["-q"]);
        assert_eq!(d.summary.status, "completed", "{mode}: {}", m.ran.stderr);
    }
}

#[test]
fn a_run_ends_at_its_deadline_whatever_the_plugin_waits_on() {
    for (mode, set) in [
        // Blocked in WASI's clock.
        ("sleep", "seconds=60"),
        // A prompt of 32 KiB: prefill in pieces.
        ("long_prompt", "size=32"),
        // The vision tower on 35,000 patches.
        ("huge_image", "size=3000"),
    ] {
        let (m, d, _) = attack(
            &format!("deadline_{mode}"),
            mode,
            &["--set", set, "--timeout", "3", "--request-mb", "1024"],
        );
        assert_eq!(d.summary.status, "timed_out", "{mode}: {}", m.ran.stderr);
        let took = reported_seconds(&m.ran.stderr);
        assert!(
            took < 4.0,
            "{mode}: the run ended {took} s after it started"
        );
        assert!(m.took < Duration::from_secs(30), "{mode}: {:?}", m.took);
    }
}

#[test]
fn ctrl_c_stops_a_plugin_waiting_in_wasi() {
    let db = db("ctrl_c");
    let (mut child, id) = sleeping_run(&db, 1_000_000_000);
    std::thread::sleep(Duration::from_millis(500));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let signalled = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    assert!(!status.success());
    let s = open(&db);
    s.integrity_check().unwrap();
    assert_eq!(s.run(id).unwrap().summary.status, "cancelled");
}

#[test]
fn host_generate_refuses_what_passes_the_engine_limits() {
    let prompt = "word ".repeat(3000);
    let small = run(&["generate", "--prompt", &prompt, "--request-mb", "8"]);
    assert_eq!(small.code, 1, "{}", small.stderr);
    assert!(
        small
            .stderr
            .contains("over the engine's limit of 8.0 MiB per request"),
        "{}",
        small.stderr
    );
    // The same prompt fits the default limits.
    let ok = run(&["generate", "--prompt", &prompt, "--max-tokens", "2"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);

    // A copy of the model trained for 512 positions.
    let resolved = run(&["model", "resolve"]);
    let src = PathBuf::from(resolved.stdout.trim());
    let dst = home().join("short-context");
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    let cfg = std::fs::read_to_string(dst.join("config.json")).unwrap();
    let cfg = cfg.replace(
        "\"max_position_embeddings\": 262144",
        "\"max_position_embeddings\": 512",
    );
    assert!(cfg.contains("\"max_position_embeddings\": 512"));
    std::fs::write(dst.join("config.json"), cfg).unwrap();
    let model = dst.to_str().unwrap();
    let long = run(&["generate", "--model", model, "--prompt", &prompt]);
    assert_eq!(long.code, 1, "{}", long.stderr);
    assert!(
        long.stderr.contains("over the model's context of 512"),
        "{}",
        long.stderr
    );
}

#[test]
fn logs_and_notes_in_a_loop_fill_the_run_budget_not_the_disk() {
    // 2 x 400 lines of 64 KiB: 50 MiB sent, 4 MiB allowed.
    let (m, d, db) = attack(
        "log_flood",
        "log_flood",
        &["--set", "count=400", "--store-mb", "4", "-q"],
    );
    assert_eq!(m.ran.code, 0, "{}", m.ran.stderr);
    assert_eq!(d.summary.status, "completed");
    assert!(m.took < Duration::from_secs(120), "took {:?}", m.took);
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("storage budget of 4 MiB ran out")),
        "{:?}",
        d.notes.len()
    );
    let file = std::fs::metadata(&db).unwrap().len();
    assert!(file < 12 << 20, "the database holds {file} bytes");
}

#[test]
fn long_labels_metric_names_and_errors_are_cut_and_say_so() {
    let (m, d, _) = attack(
        "long_labels",
        "long_labels",
        &["--set", "count=3", "--set", "size=2048", "-q"],
    );
    assert_eq!(m.ran.code, 0, "{}", m.ran.stderr);
    assert_eq!(d.requests.len(), 3);
    assert!(d.requests.iter().all(|r| r.row.label.len() < 400));
    assert!(d.requests[0].row.label.ends_with("bytes cut]"));
    assert!(d.metrics.iter().all(|m| m.name.len() < 400));

    let (m, d, _) = attack("long_error", "long_error", &["--set", "size=10240", "-q"]);
    assert_eq!(m.ran.code, 1);
    let e = error_of(&d);
    assert!(
        e.len() < 70 << 10 && e.ends_with("bytes cut]"),
        "{}",
        e.len()
    );
    // The terminal gets a line, not ten megabytes.
    assert!(m.ran.stderr.len() < 8 << 10, "{}", m.ran.stderr.len());
}

#[test]
fn values_that_are_not_finite_are_recorded_as_such() {
    let (m, d, db) = attack("not_finite", "not_finite", &["-q"]);
    assert_eq!(m.ran.code, 0, "{}", m.ran.stderr);
    let value = |name: &str| d.metrics.iter().find(|m| m.name == name).unwrap().value;
    assert!(value("nan").is_nan());
    assert_eq!(value("inf"), f64::INFINITY);
    assert_eq!(value("after"), 1.0);
    let shown = run(&["results", "show", "latest", "--db", db.to_str().unwrap()]);
    assert!(shown.stdout.contains("| nan | NaN |"), "{}", shown.stdout);
}

#[test]
fn a_plugin_cannot_drive_the_terminal() {
    let (m, d, db) = attack("escapes", "escapes", &[]);
    assert_eq!(m.ran.code, 1);
    for (what, text) in [("stdout", &m.ran.stdout), ("stderr", &m.ran.stderr)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'),
            "{what} carries control characters: {text:?}"
        );
    }
    assert!(m.ran.stderr.contains("\\u{1b}]0;pwned"), "{}", m.ran.stderr);
    // Stored as sent.
    assert!(d.notes.iter().any(|n| n.contains('\u{1b}')));
    let shown = run(&["results", "show", "latest", "--db", db.to_str().unwrap()]);
    assert!(!shown.stdout.contains('\u{1b}'));
}

#[test]
fn errors_name_what_the_plugin_did() {
    let (_, d, _) = attack("exit", "exit", &["-q"]);
    assert_eq!(d.summary.status, "failed");
    assert_eq!(
        error_of(&d),
        "the plugin called exit(0) instead of returning from run"
    );

    let (_, d, _) = attack("forged_handle", "forged_handle", &["-q"]);
    let e = error_of(&d);
    assert!(
        e.contains("image handle that was dropped or never existed"),
        "{e}"
    );
    assert!(!e.contains("wasm backtrace"), "{e}");
}

#[test]
fn three_runs_write_one_database_at_once() {
    let db = db("three_writers");
    let d = db.to_str().unwrap();
    let runs: Vec<KillOnDrop> = (0..3)
        .map(|_| {
            KillOnDrop(
                host()
                    .args(["run", "--plugin", "resolution_sweep.wasm", "--db", d, "-q"])
                    .args(["--set", "resolutions=224x224,256x256"])
                    .args(["--set", "repeats=8", "--set", "max_tokens=4"])
                    .args(["--set", "check_image=false"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for mut r in runs {
        let status = r.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(r.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{err}");
    }
    let s = open(&db);
    s.integrity_check().unwrap();
    let runs = s.list_runs(&Default::default()).unwrap();
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert_eq!(r.status, "completed");
        // 2 resolutions x (1 warm-up + 8 repeats).
        assert_eq!(r.requests, 18, "run {}", r.id);
    }
}

#[test]
fn a_silent_live_run_is_not_taken_for_a_dead_one() {
    let db = db("silent");
    let d = db.to_str().unwrap();
    let (mut run_proc, id) = sleeping_run(&db, 6);
    // As if it had said nothing for ten minutes.
    let mut s = open(&db);
    s.connection()
        .execute(
            "UPDATE runs SET heartbeat_ms = heartbeat_ms - 600000 WHERE id = ?1",
            [id],
        )
        .unwrap();
    let listed = run(&["results", "list", "--db", d]);
    assert!(listed.stdout.contains("running"), "{}", listed.stdout);
    assert_eq!(open(&db).run(id).unwrap().summary.status, "running");
    assert!(run_proc.wait().unwrap().success());
    assert_eq!(open(&db).run(id).unwrap().summary.status, "completed");
}
