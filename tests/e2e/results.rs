//! `host results`: list, show, export and compare stored runs.

use crate::common::{db, open, probe, run};

#[test]
fn list_show_export_and_compare() {
    let db = db("results");
    let d = db.to_str().unwrap();
    for _ in 0..2 {
        let r = run(&[
            "run",
            "--plugin",
            "resolution_sweep.wasm",
            "--db",
            d,
            "--set",
            "resolutions=224x224,256x256",
            "--set",
            "repeats=3",
            "--set",
            "max_tokens=6",
            "--set",
            "check_image=false",
            "-q",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = run(&[
        "run",
        "--plugin",
        &probe(),
        "--db",
        d,
        "--set",
        "mode=error",
        "-q",
    ]);
    assert_eq!(r.code, 1);

    let list = run(&["results", "list", "--db", d]);
    assert_eq!(list.code, 0);
    let lines: Vec<&str> = list.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{}", list.stdout);
    assert!(
        lines[0].contains("failed") && lines[0].contains("probe"),
        "{}",
        lines[0]
    );
    let filtered = run(&["results", "list", "--db", d, "--plugin", "resolution_sweep"]);
    assert_eq!(filtered.stdout.lines().count(), 3);

    let show = run(&["results", "show", "latest", "--db", d]);
    assert!(show.stdout.contains("status: failed"), "{}", show.stdout);
    let md = run(&["results", "export", "1", "--format", "md", "--db", d]);
    assert!(
        md.stdout
            .contains("| Resolution | Pixels | Time | Tokens | Speed |")
            && md.stdout.contains("| 224x224 | 50K |"),
        "{}",
        md.stdout
    );
    let csv = run(&["results", "export", "1", "--format", "csv", "--db", d]);
    let rows: Vec<&str> = csv.stdout.lines().collect();
    assert!(rows[0].starts_with("run_id,seq,label,warmup"));
    // A line per stored request: 2 resolutions × (1 warm-up + 3 measured).
    let stored = open(&db).requests(1).unwrap().len();
    assert_eq!(stored, 2 * 4);
    assert_eq!(rows.len(), 1 + stored);
    let json = run(&["results", "export", "1", "--format", "json", "--db", d]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["summary"]["plugin_name"], "resolution_sweep");
    assert_eq!(v["requests"].as_array().unwrap().len(), stored);
    let bad = run(&["results", "export", "1", "--format", "xml", "--db", d]);
    assert_eq!(bad.code, 1);
    let missing = run(&["results", "show", "99", "--db", d]);
    assert!(missing.stderr.contains("no run 99"), "{}", missing.stderr);

    let cmp = run(&["results", "compare", "1", "2", "--db", d]);
    assert_eq!(cmp.code, 0, "{}", cmp.stderr);
    assert!(
        cmp.stdout.contains("run 1 (base)") && cmp.stdout.contains("speed_tok_s"),
        "{}",
        cmp.stdout
    );
    assert!(cmp.stdout.contains("noise"), "{}", cmp.stdout);
    let store = open(&db);
    store.integrity_check().unwrap();
}
