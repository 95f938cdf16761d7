//! `host serve`: the page in `web/` (embedded at build time, so the binary
//! needs nothing beside it) and a read-only JSON API over the results store.
//!
//! - `GET /api/runs?plugin=&model=&device=&status=&since=&until=&limit=&offset=`
//! - `GET /api/facets`: the plugins, models and devices present (for filters)
//! - `GET /api/runs/{id}`: one run with every request
//! - `GET /api/runs/{id}/export?format=md|csv|json`
//! - `GET /api/compare?ids=1,2,3`
//! - `GET /api/health`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use store::{RunFilter, Store};

/// The static files, embedded. Only these paths are served: nothing on disk
/// is reachable through a URL.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/app.js"),
    ),
    (
        "/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/charts.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/style.css"),
    ),
];

/// Longest accepted request target (path and query).
pub const MAX_URI: usize = 4096;
/// Most runs in one comparison.
pub const MAX_COMPARE: usize = 12;

#[derive(Clone)]
struct AppState {
    db: Arc<PathBuf>,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// Runs a store query on a blocking thread with its own read-only connection.
async fn with_store<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Store) -> store::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let db = state.db.clone();
    let r = tokio::task::spawn_blocking(move || {
        let s = Store::open_read_only(&db)?;
        f(&s)
    })
    .await
    .map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query failed: {e}"),
        )
    })?;
    r.map_err(|e| match e {
        store::Error::NoSuchRun(id) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        other => error(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    })
}

#[derive(Deserialize)]
struct RunsQuery {
    plugin: Option<String>,
    model: Option<String>,
    device: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

async fn runs(State(st): State<AppState>, Query(q): Query<RunsQuery>) -> Response {
    let filter = RunFilter {
        plugin: nonempty(q.plugin),
        model: nonempty(q.model),
        device: nonempty(q.device),
        status: nonempty(q.status),
        since: nonempty(q.since),
        until: nonempty(q.until),
        limit: Some(q.limit.unwrap_or(200).clamp(1, 1000)),
        offset: q.offset,
    };
    match with_store(&st, move |s| {
        Ok((s.list_runs(&filter)?, s.count_matching(&filter)?))
    })
    .await
    {
        Ok((runs, total)) => Json(json!({"runs": runs, "total": total})).into_response(),
        Err(r) => r,
    }
}

async fn facets(State(st): State<AppState>) -> Response {
    match with_store(&st, |s| s.facets()).await {
        Ok(f) => Json(f).into_response(),
        Err(r) => r,
    }
}

async fn run(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "the run id must be a number");
    };
    match with_store(&st, move |s| s.run(id)).await {
        Ok(d) => Json(d).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

async fn export(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "the run id must be a number");
    };
    let format = q.format.unwrap_or_else(|| "md".into());
    let (mime, ext) = match format.as_str() {
        "md" => ("text/markdown; charset=utf-8", "md"),
        "csv" => ("text/csv; charset=utf-8", "csv"),
        "json" => ("application/json", "json"),
        _ => return error(StatusCode::BAD_REQUEST, "format must be md, csv or json"),
    };
    match with_store(&st, move |s| s.run(id)).await {
        Ok(d) => {
            let body = match ext {
                "md" => store::export_markdown(&d),
                "csv" => store::export_csv(&d),
                _ => store::export_json(&d),
            };
            let disposition = format!("attachment; filename=\"run-{id}.{ext}\"");
            (
                [
                    (header::CONTENT_TYPE, mime.to_string()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct CompareQuery {
    ids: Option<String>,
}

async fn compare(State(st): State<AppState>, Query(q): Query<CompareQuery>) -> Response {
    let ids: Result<Vec<i64>, _> = q
        .ids
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect();
    let ids = match ids {
        Ok(ids) if (2..=MAX_COMPARE).contains(&ids.len()) => ids,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("ids must list 2 to {MAX_COMPARE} run ids, e.g. ids=3,4"),
            );
        }
    };
    match with_store(&st, move |s| {
        ids.iter()
            .map(|&i| s.run(i))
            .collect::<store::Result<Vec<_>>>()
    })
    .await
    {
        Ok(runs) => {
            let cmp = store::compare_runs(&runs);
            let summaries: Vec<_> = runs.iter().map(|r| &r.summary).collect();
            Json(json!({"runs": summaries, "comparison": cmp, "markdown": cmp.to_markdown(),
                        "requests": runs.iter().map(|r| json!({"id": r.summary.id, "requests": r.requests})).collect::<Vec<_>>()}))
            .into_response()
        }
        Err(r) => r,
    }
}

async fn asset(req: Request) -> Response {
    let path = req.uri().path();
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, mime, body)) => {
            let mut r = (*body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("no page at {}", path.chars().take(200).collect::<String>()),
        ),
    }
}

/// Rejects oversized targets before routing, and adds safety headers.
async fn guard(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("request target of {len} bytes; the limit is {MAX_URI}"),
        );
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
        ),
    );
    r
}

pub fn router(db: PathBuf) -> Router {
    Router::new()
        .route("/api/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/api/runs", get(runs))
        .route("/api/facets", get(facets))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/export", get(export))
        .route("/api/compare", get(compare))
        .fallback(asset)
        .layer(middleware::from_fn(guard))
        .with_state(AppState { db: Arc::new(db) })
}

/// Serves until Ctrl-C, with `api`'s routes beside the page's when given.
/// `on_ready` gets the bound address (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    db: PathBuf,
    api: Option<Router>,
    on_ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    // Create the database (and its schema) up front so reads never race it.
    Store::open(&db).map_err(|e| std::io::Error::other(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?);
        let app = match api {
            Some(api) => router(db).merge(api),
            None => router(db),
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}
