//! The sandbox: misbehaving plugins end their run with a clear error, the
//! run is marked, and everything recorded before the failure stays.

use std::time::{Duration, Instant};

use crate::common::{KillOnDrop, db, host, open, probe, run};

/// Runs the probe in `mode` and returns (exit code, stderr, the stored run).
fn probe_run(name: &str, extra: &[&str]) -> (i32, String, store::RunDetail) {
    let db = db(name);
    let mut args = vec![
        "run",
        "--plugin",
        &*Box::leak(probe().into_boxed_str()),
        "--db",
        db.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = run(&args);
    let s = open(&db);
    let id = s
        .latest_run()
        .unwrap()
        .unwrap_or_else(|| panic!("no run recorded: {}", r.stderr));
    (r.code, r.stderr, s.run(id).unwrap())
}

fn has_before_metric(d: &store::RunDetail) -> bool {
    d.metrics
        .iter()
        .any(|m| m.name == "before" && m.value == 1.0)
}

#[test]
fn an_endless_loop_is_stopped_at_its_deadline() {
    let start = Instant::now();
    let (code, stderr, d) = probe_run("loop", &["--set", "mode=loop", "--timeout", "2"]);
    let took = start.elapsed();
    assert_eq!(code, 124, "{stderr}");
    assert_eq!(d.summary.status, "timed_out");
    assert!(
        d.summary.error.as_deref().unwrap().contains("deadline"),
        "{:?}",
        d.summary.error
    );
    assert!(
        has_before_metric(&d),
        "rows recorded before the loop are kept"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let (code, stderr, d) = probe_run("alloc", &["--set", "mode=alloc", "--memory-mb", "64"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(d.summary.status, "failed");
    let err = d.summary.error.clone().unwrap();
    assert!(err.contains("memory"), "{err}");
    assert!(has_before_metric(&d));
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let (code, _, d) = probe_run("panic", &["--set", "mode=panic"]);
    assert_eq!(code, 1);
    assert_eq!(d.summary.status, "failed");
    let err = d.summary.error.clone().unwrap();
    assert!(err.contains("probe panicked on purpose"), "{err}");
    assert!(has_before_metric(&d));
}

#[test]
fn a_trap_fails_the_run() {
    let (code, _, d) = probe_run("trap", &["--set", "mode=trap"]);
    assert_eq!(code, 1);
    assert_eq!(d.summary.status, "failed");
    let err = d.summary.error.clone().unwrap();
    assert!(
        err.contains("trapped") && err.contains("unreachable"),
        "{err}"
    );
    assert!(has_before_metric(&d));
}

#[test]
fn a_plugin_error_fails_the_run_with_its_message() {
    let (code, _, d) = probe_run("error", &["--set", "mode=error"]);
    assert_eq!(code, 1);
    assert!(d.summary.error.unwrap().contains("asked to fail"));
}

#[test]
fn files_sockets_and_environment_are_out_of_reach() {
    let (code, stderr, d) = probe_run("snoop", &["--set", "mode=snoop"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(d.summary.status, "completed");
    for needle in ["fs denied", "dir denied", "net denied", "env empty"] {
        assert!(
            d.notes.iter().any(|n| n.starts_with(needle)),
            "no {needle:?} in {:?}",
            d.notes
        );
    }
}

#[test]
fn a_plugin_for_another_wit_version_is_refused_by_name() {
    let db = db("future");
    let future = plugins_built::test_plugin("future");
    let r = run(&[
        "run",
        "--plugin",
        future.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("vlmbench:workload@0.3.0")
            && r.stderr.contains("vlmbench:workload@0.2.0"),
        "{}",
        r.stderr
    );
    // Refused before any run was created.
    assert_eq!(open(&db).count_runs().unwrap(), 0);
}

#[test]
fn parameters_are_checked_before_the_run_starts() {
    let db = db("params");
    let p = probe();
    let with = |setting: &str| {
        run(&[
            "run",
            "--plugin",
            &p,
            "--db",
            db.to_str().unwrap(),
            "--set",
            setting,
        ])
    };
    let bad_type = with("count=lots");
    assert_eq!(bad_type.code, 1);
    assert!(
        bad_type.stderr.contains("count") && bad_type.stderr.contains("expected an integer"),
        "{}",
        bad_type.stderr
    );
    let unknown = with("speed=3");
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no such parameter") && unknown.stderr.contains("mode, count"),
        "{}",
        unknown.stderr
    );
    let bool_bad = with("flag=maybe");
    assert_eq!(bool_bad.code, 1);
    assert!(
        bool_bad.stderr.contains("expected true or false"),
        "{}",
        bool_bad.stderr
    );
    assert_eq!(open(&db).count_runs().unwrap(), 0);
}

#[test]
fn typed_parameters_reach_the_plugin() {
    let (code, _, d) = probe_run("typed", &["--set", "ratio=0.25", "--set", "flag=true"]);
    assert_eq!(code, 0);
    let get = |n: &str| d.metrics.iter().find(|m| m.name == n).map(|m| m.value);
    assert_eq!(get("ratio"), Some(0.25));
    assert_eq!(get("flag"), Some(1.0));
    assert_eq!(d.params["ratio"], "0.25");
}

#[test]
fn generate_records_a_request_row() {
    let (code, stderr, d) = probe_run("generate", &["--set", "mode=generate"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(d.requests.len(), 1);
    let r = &d.requests[0].row;
    assert_eq!(
        (r.label.as_str(), r.output_tokens, r.images.len()),
        ("probe", 4, 1)
    );
    assert!(r.ttft_ms > 0.0 && r.total_ms >= r.ttft_ms);
    assert_eq!(r.token_times_ms.len(), 4);
}

#[test]
fn ctrl_c_stops_the_run_and_keeps_what_was_recorded() {
    let db = db("ctrl_c");
    let mut child = KillOnDrop(
        host()
            .args([
                "run",
                "--plugin",
                &probe(),
                "--db",
                db.to_str().unwrap(),
                "--set",
                "mode=loop",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait until the run exists, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if db.exists() && open(&db).latest_run().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130));
    let s = open(&db);
    let d = s.run(s.latest_run().unwrap().unwrap()).unwrap();
    assert_eq!(d.summary.status, "cancelled");
    assert!(d.metrics.iter().any(|m| m.name == "before"));
}

#[test]
fn plugins_list_and_inspect() {
    let list = run(&["plugins", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    for name in [
        "resolution_sweep.wasm",
        "cache_verification.wasm",
        "image_set.wasm",
    ] {
        assert!(list.stdout.contains(name), "{}", list.stdout);
    }
    let inspect = run(&["plugins", "inspect", "resolution_sweep.wasm"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(
        inspect.stdout.contains("vlmbench:workload@0.2.0") && inspect.stdout.contains("quick"),
        "{}",
        inspect.stdout
    );
    let json = run(&["plugins", "inspect", &probe(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["name"], "probe");
    assert!(
        v["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "vlmbench:workload/engine@0.2.0")
    );
    let missing = run(&["run", "--plugin", "nope.wasm"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("resolution_sweep.wasm"),
        "{}",
        missing.stderr
    );
    let garbage = crate::common::home().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let bad = run(&["plugins", "inspect", garbage.to_str().unwrap()]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("not a WebAssembly component"),
        "{}",
        bad.stderr
    );
}
