//! `host serve`: the results page and its JSON API, and with `--model` the
//! OpenAI-compatible API on the engine, its requests recorded as one run.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::Router;
use engine::Engine;
use serde_json::json;
use serving::{BatchLimits, ImageSources, Recorder, ServeOptions, Worker};
use store::Store;

use crate::cli::{ModelArgs, ServeArgs};
use crate::model_resolve;
use crate::runner::{Origin, convert, device_name, new_run};
use crate::settings::Settings;

pub fn run(settings: &Settings, args: ServeArgs) -> Result<()> {
    let db = args.db.path(&settings.paths);
    let (api, run_id) = match &args.model {
        Some(model) => {
            let (router, run_id) = api(settings, &args, model)?;
            (Some(router), Some(run_id))
        }
        None => (None, None),
    };
    let with_api = api.is_some();
    let addr = args.addr;
    let served = server::serve(addr, db.clone(), api, |bound| {
        let mut text = format!(
            "serving {} at http://{bound}/ (Ctrl-C to stop)\n",
            db.display()
        );
        if with_api {
            text +=
                &format!("OpenAI-compatible API at http://{bound}/v1 (chat/completions, models)\n");
        }
        // Written whole, and a closed stdout does not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    })
    .map_err(|e| anyhow::anyhow!("cannot serve on {addr}: {e}"));
    if let Some(id) = run_id {
        let status = if served.is_ok() {
            "completed"
        } else {
            "failed"
        };
        let error = served.as_ref().err().map(|e| e.to_string());
        Store::open(&db)?.finish_run(id, status, error.as_deref())?;
    }
    served
}

/// A run for the API's requests in `db`, and how each is recorded there.
fn recorder(
    db: &std::path::Path,
    params: serde_json::Value,
    minfo: &engine::ModelInfo,
) -> Result<(Recorder, i64)> {
    let mut store = Store::open(db)?;
    let origin = Origin {
        name: "openai-api".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        blake3: String::new(),
        wit: String::new(),
    };
    let run_id = store.create_run(&new_run(origin, params, minfo, &device_name())?)?;
    let record: Recorder = Box::new(move |req, resp, waited_s| {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let start_ms = now_ms - ((resp.timings.total_s + waited_s) * 1e3) as i64;
        let row = convert::engine_request_row(
            "api",
            &req.images,
            req,
            resp,
            store::format_unix_ms(start_ms),
        );
        if let Err(e) = store.record_request(run_id, &row) {
            eprintln!("warning: request not recorded: {e}");
        }
    });
    Ok((record, run_id))
}

/// The API's routes: the model loaded, a run opened for its requests.
fn api(settings: &Settings, args: &ServeArgs, model: &str) -> Result<(Router, i64)> {
    let model_args = ModelArgs {
        model: Some(model.to_string()),
        no_cache: args.no_cache,
        download: false,
        request_mb: args.request_mb,
    };
    let dir = model_resolve::resolve_args(settings, &model_args, false)?;
    let mut sources = ImageSources {
        fetch: !args.no_fetch,
        max_bytes: (args.max_body_mb as u64) << 20,
        ..ImageSources::default()
    };
    for d in &args.images {
        sources
            .grant(d)
            .with_context(|| format!("--images {}", d.display()))?;
    }
    let db = args.db.path(&settings.paths);
    let opts = settings.engine_options(&model_args);
    let limits = BatchLimits {
        max_batch: args.max_batch as usize,
        prefill_chunk: args.prefill_chunk as usize,
        queue: args.queue,
    };
    let params = json!({
        "addr": args.addr.to_string(),
        "queue": args.queue,
        "max_batch": args.max_batch,
        "prefill_chunk": args.prefill_chunk,
    });
    eprintln!("loading model {}", dir.display());
    let load = move || -> Result<(Engine, Recorder, (String, i64)), String> {
        let engine = Engine::load(&dir, opts)
            .map_err(|e| format!("loading the model in {}: {e}", dir.display()))?;
        let minfo = engine.info().clone();
        let (record, run_id) = recorder(&db, params, &minfo).map_err(|e| format!("{e:#}"))?;
        Ok((engine, record, (minfo.name, run_id)))
    };
    let (worker, (model_id, run_id)) = Worker::start(load, limits).map_err(anyhow::Error::msg)?;
    eprintln!(
        "recording requests as run {run_id} in {}",
        args.db.path(&settings.paths).display()
    );
    let opts = ServeOptions {
        model_id,
        sources,
        max_body_bytes: args.max_body_mb << 20,
    };
    Ok((serving::router(worker, opts), run_id))
}
