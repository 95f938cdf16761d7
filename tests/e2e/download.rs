//! `host model download` against a local stand-in for the Hugging Face Hub
//! (the endpoints hf-hub uses: repository info, and file resolution with
//! ranges), then `--model ORG/NAME` resolved from the cache it filled.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::common::{home, host};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Clone)]
struct Hub {
    repo: String,
    files: Arc<BTreeMap<String, Vec<u8>>>,
}

async fn info(
    State(hub): State<Hub>,
    Path((org, name, _rev)): Path<(String, String, String)>,
) -> Response {
    if format!("{org}/{name}") != hub.repo {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    }
    let siblings: Vec<_> = hub
        .files
        .keys()
        .map(|f| serde_json::json!({"rfilename": f}))
        .collect();
    axum::Json(serde_json::json!({"sha": COMMIT, "siblings": siblings})).into_response()
}

async fn resolve(
    State(hub): State<Hub>,
    Path((org, name, _rev, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(body) = hub
        .files
        .get(&file)
        .filter(|_| format!("{org}/{name}") == hub.repo)
    else {
        return (StatusCode::NOT_FOUND, "Entry not found").into_response();
    };
    let start: usize = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some("bytes=0-0") => 1.min(body.len()),
        _ => body.len(),
    };
    let etag = format!("\"{}\"", blake3::hash(body).to_hex());
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::ETAG, etag),
            (
                header::HeaderName::from_static("x-repo-commit"),
                COMMIT.to_string(),
            ),
            (
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{}", end.saturating_sub(1), body.len()),
            ),
        ],
        body[start.min(end)..end].to_vec(),
    )
        .into_response()
}

#[test]
fn download_from_a_stand_in_hub_then_run_from_the_cache() {
    // The model the stand-in serves: a synthetic tiny one, plus a file the engine does not need.
    let src = home().join("hub-src");
    let _ = std::fs::remove_dir_all(&src);
    let out = host()
        .args([
            "model",
            "synth",
            "--arch",
            "qwen3-vl-tiny",
            "--out",
            src.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut files: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.insert("README.md".into(), b"not needed".to_vec());
    let hub = Hub {
        repo: "test-org/tiny-vl".into(),
        files: Arc::new(files),
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/api/models/{org}/{name}/revision/{rev}", get(info))
        .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
        .with_state(hub);
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let cache = home().join("hf-download-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let endpoint = format!("http://{addr}");
    let with_cache = |cache: &PathBuf, args: &[&str]| {
        host()
            .env("HF_HUB_CACHE", cache)
            .env("HF_ENDPOINT", &endpoint)
            .args(args)
            .output()
            .unwrap()
    };
    let dl = with_cache(
        &cache,
        &[
            "model",
            "download",
            "test-org/tiny-vl",
            "--endpoint",
            &endpoint,
        ],
    );
    let stderr = String::from_utf8_lossy(&dl.stderr);
    assert!(dl.status.success(), "{stderr}");
    let dir = PathBuf::from(String::from_utf8_lossy(&dl.stdout).trim());
    assert!(
        dir.starts_with(&cache) && dir.ends_with(format!("snapshots/{COMMIT}")),
        "{}",
        dir.display()
    );
    assert!(dir.join("model.safetensors").exists() && !dir.join("README.md").exists());
    assert_eq!(
        std::fs::read(dir.join("config.json")).unwrap(),
        std::fs::read(src.join("config.json")).unwrap()
    );

    // The id now resolves from the cache, with no network.
    let generate = [
        "generate",
        "--model",
        "test-org/tiny-vl",
        "--prompt",
        "hi",
        "--max-tokens",
        "3",
        "--ignore-eos",
    ];
    let generated = with_cache(&cache, &generate);
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );

    // In an empty cache the same id needs --download (from HF_ENDPOINT).
    let fresh = home().join("hf-download-cache-2");
    let _ = std::fs::remove_dir_all(&fresh);
    let refused = with_cache(&fresh, &generate);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("--download"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let fetched = with_cache(&fresh, &[&generate[..], &["--download"]].concat());
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );

    // An id the hub does not have: a clear error naming it.
    let missing = with_cache(
        &cache,
        &[
            "model",
            "download",
            "test-org/nothing",
            "--endpoint",
            &endpoint,
        ],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("test-org/nothing"));
    drop(rt);
}
