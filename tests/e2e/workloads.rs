//! The three built-in plugins, end to end on the default model.

use engine::image::{Encoding, Pattern, encode_image, synth_image};

use crate::common::{db, home, open, run};

#[test]
fn resolution_sweep_quick() {
    let db = db("sweep");
    let r = run(&[
        "run",
        "--plugin",
        "resolution_sweep.wasm",
        "--db",
        db.to_str().unwrap(),
        "--set",
        "quick=true",
        "--set",
        "repeats=2",
        "--set",
        "max_tokens=12",
        "--set",
        "warmup=1",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The vllm-mlx image benchmark's tables, printed.
    for needle in [
        "| Resolution | Pixels | Time | Tokens | Speed |",
        "| 224x224 | 50K |",
        "| 1024x1024 | 1.0M |",
        "Aggregate Tok/s",
        "**Summary:** Average",
    ] {
        assert!(
            r.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            r.stdout
        );
    }
    let s = open(&db);
    let d = s.run(s.latest_run().unwrap().unwrap()).unwrap();
    assert_eq!(d.summary.status, "completed");
    assert_eq!(
        d.summary.verdict_passed,
        Some(true),
        "{:?}",
        d.verdict_summary
    );
    assert!(d.summary.model_synthetic);
    // Each resolution: 1 warm-up and 2 measured requests, as asked; whatever
    // else the plugin sends (its image check) is flagged, never measured.
    let labels = ["224x224", "448x448", "768x768", "1024x1024"];
    for l in labels {
        let of = |warmup| {
            let same = |q: &&store::StoredRequest| q.row.label == l && q.row.warmup == warmup;
            d.requests.iter().filter(same).count()
        };
        assert_eq!((of(true), of(false)), (1, 2), "{l}");
    }
    let measured: Vec<_> = d.requests.iter().filter(|q| !q.row.warmup).collect();
    assert!(
        measured
            .iter()
            .all(|q| labels.contains(&q.row.label.as_str()))
    );
    assert!(
        measured
            .iter()
            .all(|q| q.row.output_tokens == 12 && q.row.cache_prefix == "disabled")
    );
    let tokens: Vec<u32> = labels
        .iter()
        .map(|l| {
            measured
                .iter()
                .find(|q| q.row.label == *l)
                .unwrap()
                .row
                .image_tokens
        })
        .collect();
    assert_eq!(
        tokens,
        vec![64, 196, 576, 1024],
        "image tokens per resolution (docs/qwen3-vl.md §4.8)"
    );
    assert!(
        d.metrics
            .iter()
            .any(|m| m.name == "aggregate_tok_s" && m.value > 0.0)
    );
    for t in [
        "Results",
        "Aggregate",
        "Stages (means over repeats)",
        "Repeat statistics",
    ] {
        assert!(d.tables.iter().any(|x| x.name == t), "no table {t}");
    }
}

#[test]
fn cache_verification_passes_on_the_real_model() {
    let db = db("cache");
    let r = run(&[
        "run",
        "--plugin",
        "cache_verification.wasm",
        "--db",
        db.to_str().unwrap(),
        "--set",
        "resolutions=224,336",
        "--set",
        "max_tokens=6",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let s = open(&db);
    let d = s.run(s.latest_run().unwrap().unwrap()).unwrap();
    assert_eq!(
        d.summary.verdict_passed,
        Some(true),
        "{:?}",
        d.verdict_summary
    );
    let t = d
        .tables
        .iter()
        .find(|t| t.name == "Prefix cache verification")
        .unwrap();
    // Every test, and for test 3 a first and a cached request per size.
    for id in [
        "1a", "1b", "1c", "1d", "2a", "2b", "2c", "4a", "4b", "5a", "5b",
    ] {
        assert!(t.rows.iter().any(|r| r[0] == id), "no step {id}");
    }
    for id in ["3.1a", "3.1b", "3.2a", "3.2b"] {
        assert!(t.rows.iter().any(|r| r[0] == id), "no step {id}");
    }
    let status = t.columns.iter().position(|c| c == "Status").unwrap();
    assert!(t.rows.iter().all(|row| row[status] == "✓"), "{:?}", t.rows);
    // f32 on the CPU: logits within 1e-4 and tokens equal on every step.
    let agree = t
        .columns
        .iter()
        .position(|c| c == "Output vs uncached")
        .unwrap();
    assert!(
        t.rows.iter().all(|row| row[agree].starts_with("yes")),
        "{:?}",
        t.rows
    );
    let row = |id: &str| t.rows.iter().find(|r| r[0] == id).unwrap().clone();
    assert_eq!(
        row("4b")[3],
        "MISS",
        "same-size different image must not hit"
    );
    assert_eq!(row("5b")[3], "HIT", "re-encoded identical pixels must hit");
    // The counters cover the steps, not the warm-up's own hits.
    let metric = |n: &str| d.metrics.iter().find(|m| m.name == n).unwrap().value;
    let hits = t.rows.iter().filter(|r| r[3] == "HIT").count();
    assert_eq!(metric("prefix_exact_hits"), hits as f64);
    assert!(
        d.requests
            .iter()
            .any(|r| r.row.warmup && r.row.label == "warm-up new prompt"),
        "the warm-up runs a new-prompt partial hit"
    );
}

#[test]
fn image_set_over_a_folder_and_a_manifest() {
    let dir = home().join("photos");
    std::fs::create_dir_all(dir.join("more")).unwrap();
    let img = |w, h, seed| synth_image(w, h, Pattern::Gradient, seed).unwrap();
    std::fs::write(
        dir.join("a.png"),
        encode_image(&img(300, 200, 1), Encoding::Png).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("b.jpg"),
        encode_image(&img(256, 256, 2), Encoding::Jpeg(90)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("more/c.webp"),
        encode_image(&img(200, 320, 3), Encoding::WebP).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tasks.jsonl"),
        "{\"image\": \"a.png\", \"prompt\": \"What is this?\", \"expected_regex\": \".*\"}\n\
         {\"image\": \"more/c.webp\", \"expected\": \"certainly not this text\"}\n",
    )
    .unwrap();
    let photos = format!("photos={}", dir.display());

    let db1 = db("set_folder");
    let r = run(&[
        "run",
        "--plugin",
        "image_set.wasm",
        "--db",
        db1.to_str().unwrap(),
        "--images",
        &photos,
        "--set",
        "max_tokens=8",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = open(&db1);
    let d = s.run(s.latest_run().unwrap().unwrap()).unwrap();
    let per = d.tables.iter().find(|t| t.name == "Per image").unwrap();
    let names: Vec<&str> = per.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, vec!["a.png", "b.jpg", "more/c.webp"]);
    assert_eq!(per.rows[0][1], "300x200");
    // Repeats measure the same work: the caches are off unless asked for.
    assert!(
        d.requests.iter().all(|r| r.row.cache_prefix == "disabled"),
        "{:?}",
        d.requests
            .iter()
            .map(|r| &r.row.cache_prefix)
            .collect::<Vec<_>>()
    );

    let db2 = db("set_manifest");
    let r = run(&[
        "run",
        "--plugin",
        "image_set.wasm",
        "--db",
        db2.to_str().unwrap(),
        "--images",
        &photos,
        "--set",
        "manifest=tasks.jsonl",
        "--set",
        "max_tokens=8",
    ]);
    // One expectation holds, one cannot: the verdict fails (exit code 2).
    assert_eq!(r.code, 2, "{}", r.stderr);
    let s = open(&db2);
    let d = s.run(s.latest_run().unwrap().unwrap()).unwrap();
    assert_eq!(d.summary.verdict_passed, Some(false));
    assert_eq!(
        d.verdict_summary.as_deref(),
        Some("1 of 2 answers as expected")
    );
    let checks = d.tables.iter().find(|t| t.name == "Answer checks").unwrap();
    assert_eq!(checks.rows[0][3], "✓");
    assert_eq!(checks.rows[1][3], "✗");

    let none = run(&[
        "run",
        "--plugin",
        "image_set.wasm",
        "--db",
        db("set_none").to_str().unwrap(),
    ]);
    assert_eq!(none.code, 1);
    assert!(none.stderr.contains("--images"), "{}", none.stderr);
}
