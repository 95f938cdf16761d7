//! The store on real SQLite files: migrations, recording, recovery of runs a
//! crash left running, and reading while another connection writes.

use serde_json::json;
use store::{NewRun, RequestRow, RunFilter, StorageLimits, Store};

fn new_run(plugin: &str) -> NewRun {
    NewRun {
        plugin_name: plugin.into(),
        plugin_version: "1".into(),
        plugin_blake3: "h".into(),
        plugin_wit: "w".into(),
        params: json!({}),
        model_name: "m".into(),
        model_path: "/m".into(),
        model_config_hash: "c".into(),
        model_quantization: "bf16".into(),
        model_synthetic: false,
        model: json!({}),
        host_version: "0".into(),
        host_commit: "x".into(),
        mlx_version: "0.32.4".into(),
        backend: "cpu".into(),
        device: "d".into(),
        machine: json!({}),
        endpoint: None,
    }
}

fn row(label: &str, total_ms: f64) -> RequestRow {
    RequestRow {
        label: label.into(),
        warmup: false,
        started_at: store::now_rfc3339(),
        images: vec![],
        max_tokens: 4,
        ignore_eos: true,
        sampling: json!({}),
        prompt_tokens: 10,
        image_tokens: 0,
        text_tokens: 10,
        output_tokens: 4,
        finish_reason: "length".into(),
        preprocess_ms: 1.0,
        vision_ms: 0.0,
        prefill_ms: 2.0,
        ttft_ms: 3.0,
        decode_ms: 6.0,
        total_ms,
        token_times_ms: vec![3.0, 5.0, 7.0, 9.0],
        cache_prefix: "miss".into(),
        cache_reused_tokens: 0,
        vision_hits: 0,
        vision_misses: 0,
        vision_skipped: 0,
        peak_memory_bytes: 1,
        output_preview: "out".into(),
        ..RequestRow::default()
    }
}

#[test]
fn a_fresh_database_is_migrated_and_records_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("sub/dir/r.db")).unwrap();
    assert_eq!(s.schema_version().unwrap(), 4);
    let id = s.create_run(&new_run("p")).unwrap();
    s.record_request(id, &row("a", 9.0)).unwrap();
    s.record_metric(id, "m", 2.5, "x").unwrap();
    s.record_table(id, "t", &["a".into()], &[vec!["1".into()]])
        .unwrap();
    s.record_note(id, "n").unwrap();
    s.set_verdict(id, true, "fine").unwrap();
    s.finish_run(id, "completed", None).unwrap();
    assert!(s.finish_run(id, "running", None).is_err());
    let d = s.run(id).unwrap();
    assert_eq!(d.summary.status, "completed");
    let q = &d.requests[0];
    assert_eq!(q.seq, 1);
    assert!((q.speed_tok_s - 4.0 / 0.009).abs() < 1e-6);
    assert!((q.decode_tok_s.unwrap() - 3.0 / 0.006).abs() < 1e-6);
    assert_eq!((q.itl_p50_ms, q.itl_p99_ms), (Some(2.0), Some(2.0)));
    assert_eq!(d.metrics[0].value, 2.5);
    assert_eq!(d.summary.verdict_passed, Some(true));
    // Reopening does not migrate again or touch finished runs.
    drop(s);
    let s = Store::open(&dir.path().join("sub/dir/r.db")).unwrap();
    assert_eq!(s.run(id).unwrap().summary.status, "completed");
    s.integrity_check().unwrap();
}

#[test]
fn a_servers_rows_failures_and_samples_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("r.db")).unwrap();
    let mut run = new_run("serving_sweep");
    run.endpoint = Some(json!({"url": "http://127.0.0.1:9/v1", "model": "m", "server": "x/1"}));
    let id = s.create_run(&run).unwrap();
    // Five tokens in three events: one, three together, one.
    let mut answered = row("c=2", 9.0);
    answered.remote = true;
    answered.token_times_ms = vec![3.0, 5.0, 7.0];
    answered.chunk_tokens = vec![1, 3, 1];
    answered.output_tokens = 5;
    answered.decode_ms = 4.0;
    answered.sent_at_ms = Some(120.5);
    answered.late_ms = Some(0.25);
    answered.queued_ms = None;
    s.record_request(id, &answered).unwrap();
    let mut failed = row("c=2", 2.0);
    failed.error = Some("HTTP 500: boom".into());
    failed.error_kind = Some("server".into());
    s.record_request(id, &failed).unwrap();
    let reading = vec![
        ("host.rss_bytes".to_string(), 1e6),
        ("nan".to_string(), f64::NAN),
    ];
    s.record_samples(id, 0.0, &reading).unwrap();
    s.record_samples(id, 1000.0, &reading[..1]).unwrap();
    let d = s.run(id).unwrap();
    assert_eq!(d.summary.endpoint.as_deref(), Some("http://127.0.0.1:9/v1"));
    assert_eq!(d.requests[0].row, answered);
    // Four tokens after the first event, over 4 ms.
    assert!((d.requests[0].decode_tok_s.unwrap() - 1000.0).abs() < 1e-9);
    assert_eq!(d.requests[1].row.error_kind.as_deref(), Some("server"));
    assert!(!d.requests[1].row.counts());
    // Failed requests count in no figure: 5 tokens in 9 ms alone.
    let table = store::resolution_tables(&d);
    assert!(table.contains("| 555.6 tok/s |"), "{table}");
    // Samples come back in time order, what is not a number left out.
    let names: Vec<(f64, &str)> = d
        .samples
        .iter()
        .map(|x| (x.t_ms, x.name.as_str()))
        .collect();
    assert_eq!(names, [(0.0, "host.rss_bytes"), (1000.0, "host.rss_bytes")]);
}

/// `host run` and `host serve` may open a database that does not exist yet
/// at the same moment: both must succeed and the schema be applied once.
#[test]
fn connections_racing_to_create_a_database_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    for attempt in 0..20 {
        let path = tmp.path().join(format!("race-{attempt}.db"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(&path).map(|s| s.schema_version().unwrap())
                })
            })
            .collect();
        let versions: Vec<_> = openers.into_iter().map(|t| t.join().unwrap()).collect();
        let latest = Store::open(&path).unwrap().schema_version().unwrap();
        for v in versions {
            assert_eq!(v.unwrap(), latest, "attempt {attempt}");
        }
    }
}

#[test]
fn runs_left_running_by_a_dead_process_become_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let s = Store::open(&path).unwrap();
    let id = s.create_run(&new_run("p")).unwrap();
    // Pretend the run belongs to a process that no longer exists.
    drop(s);
    let mut raw = Store::open(&path).unwrap();
    raw.connection()
        .execute("UPDATE runs SET pid = 999999999 WHERE id = ?1", [id])
        .unwrap();
    let mine = raw.create_run(&new_run("alive")).unwrap();
    drop(raw);
    let s = Store::open(&path).unwrap();
    let d = s.run(id).unwrap();
    assert_eq!(d.summary.status, "interrupted");
    assert!(
        d.summary
            .error
            .unwrap()
            .contains("stopped before the run finished")
    );
    // A run of a live process (this one) is left alone.
    assert_eq!(s.run(mine).unwrap().summary.status, "running");
}

#[test]
fn filters_and_a_reader_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut w = Store::open(&path).unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    for i in 0..20 {
        let id = w
            .create_run(&new_run(if i % 2 == 0 { "even" } else { "odd" }))
            .unwrap();
        for k in 0..5 {
            w.record_request(id, &row(&format!("l{k}"), 10.0 + k as f64))
                .unwrap();
            // The reader sees a consistent database between writes.
            assert!(reader.count_runs().unwrap() >= id);
        }
        w.finish_run(id, "completed", None).unwrap();
    }
    let even = RunFilter {
        plugin: Some("even".into()),
        limit: Some(3),
        ..Default::default()
    };
    assert_eq!(reader.list_runs(&even).unwrap().len(), 3);
    assert_eq!(reader.count_matching(&even).unwrap(), 10);
    assert_eq!(reader.facets().unwrap().plugins, vec!["even", "odd"]);
    assert!(
        reader
            .list_runs(&RunFilter {
                since: Some("2999".into()),
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_live_run_stays_running_however_old_its_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut s = Store::open(&path).unwrap();
    let id = s.create_run(&new_run("silent")).unwrap();
    // Ten minutes without a word from this (live) process.
    s.connection()
        .execute(
            "UPDATE runs SET heartbeat_ms = heartbeat_ms - 600000 WHERE id = ?1",
            [id],
        )
        .unwrap();
    let other = Store::open(&path).unwrap();
    assert_eq!(other.recover_interrupted().unwrap(), 0);
    assert_eq!(other.run(id).unwrap().summary.status, "running");
    // The same pid with another start time is a reused pid: that run's
    // process is gone.
    s.connection()
        .execute("UPDATE runs SET pid_start = 'earlier' WHERE id = ?1", [id])
        .unwrap();
    assert_eq!(other.recover_interrupted().unwrap(), 1);
    assert_eq!(other.run(id).unwrap().summary.status, "interrupted");
}

#[test]
fn writers_in_several_connections_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    drop(Store::open(&path).unwrap());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = Store::open(&path).unwrap();
                barrier.wait();
                let id = s.create_run(&new_run(&format!("w{w}"))).unwrap();
                for k in 0..60 {
                    // Each request write reads (its sequence number) before
                    // it writes: the pattern that fails without the lock
                    // taken up front.
                    s.record_request(id, &row(&format!("l{k}"), 10.0)).unwrap();
                    s.record_log(id, "info", "line").unwrap();
                    s.record_metric(id, "m", k as f64, "").unwrap();
                }
                s.finish_run(id, "completed", None).unwrap();
                id
            })
        })
        .collect();
    let ids: Vec<i64> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    let s = Store::open(&path).unwrap();
    s.integrity_check().unwrap();
    for id in ids {
        let d = s.run(id).unwrap();
        assert_eq!(d.summary.status, "completed");
        assert_eq!(d.requests.len(), 60);
        let seqs: Vec<i64> = d.requests.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
        assert_eq!(d.metrics.len(), 60);
        assert_eq!(s.logs(id).unwrap().len(), 60);
    }
}

#[test]
fn values_that_are_not_finite_are_kept_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("r.db")).unwrap();
    let id = s.create_run(&new_run("p")).unwrap();
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5] {
        s.record_metric(id, "v", v, "").unwrap();
    }
    let got: Vec<f64> = s.metrics(id).unwrap().iter().map(|m| m.value).collect();
    assert!(got[0].is_nan());
    assert_eq!(&got[1..], &[f64::INFINITY, f64::NEG_INFINITY, -0.5]);
    let json = store::export_json(&s.run(id).unwrap());
    assert!(json.contains(r#""value": "NaN""#), "{json}");
    assert!(json.contains(r#""value": "-inf""#), "{json}");
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    let m: store::Metric = serde_json::from_value(back["metrics"][2].clone()).unwrap();
    assert_eq!(m.value, f64::NEG_INFINITY);
}

#[test]
fn a_plugin_cannot_make_a_run_store_more_than_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut s = Store::open(&path).unwrap();
    let limits = StorageLimits {
        run_bytes: 1 << 20,
        text_bytes: 4096,
        name_bytes: 32,
        table_bytes: 16 << 10,
    };
    s.set_limits(limits);
    let id = s.create_run(&new_run("p")).unwrap();
    s.record_metric(id, "kept", 1.0, "").unwrap();
    let line = "x".repeat(64 << 10);
    for _ in 0..1000 {
        s.record_log(id, "info", &line).unwrap();
    }
    s.record_request(id, &row(&"label".repeat(1000), 10.0))
        .unwrap();
    s.finish_run(id, "failed", Some(&"e".repeat(1 << 20)))
        .unwrap();
    let d = s.run(id).unwrap();
    // What was recorded before the budget ran out is intact.
    assert_eq!(d.metrics[0].name, "kept");
    let logs = s.logs(id).unwrap();
    assert!(logs.len() < 300, "{} log lines", logs.len());
    assert!(logs.iter().all(|l| l.message.len() < 4200));
    assert!(logs[0].message.ends_with("bytes cut]"));
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("storage budget of 1 MiB ran out"))
    );
    assert!(d.requests[0].row.label.len() < 64);
    assert!(d.summary.error.unwrap().len() < 4200);
    // Requests are the run's results: they are stored even past the budget.
    assert_eq!(d.requests.len(), 1);
    let stored: i64 = s
        .connection()
        .query_row("SELECT stored_bytes FROM runs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(stored as u64 <= limits.run_bytes);
    let on_disk = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(dir.path().join("r.db-wal")).map_or(0, |m| m.len());
    assert!(on_disk < 8 << 20, "{on_disk} bytes on disk");

    // A table over its cap keeps the rows that fit, and says so.
    let id = s.create_run(&new_run("t")).unwrap();
    let rows: Vec<Vec<String>> = (0..1000).map(|i| vec![format!("{i:0>100}")]).collect();
    s.record_table(id, "big", &["c".into()], &rows).unwrap();
    let d = s.run(id).unwrap();
    assert!(d.tables[0].rows.len() < 200 && !d.tables[0].rows.is_empty());
    assert!(d.notes.iter().any(|n| n.contains("rows were not stored")));
}
