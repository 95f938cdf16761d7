//! `host run`: one plugin run against the engine, recorded as it happens.

pub mod convert;
pub mod endpoint;
mod local;
mod machine;
pub mod plugins;
mod record;
mod services;
mod terminal;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use engine::Engine;
use runtime::params::{display_value, parse_set, resolve_params};
use runtime::{EngineService, ImageSets, PluginRuntime, RunLimits, RunStatus};
use serde_json::json;
use serving::BatchLimits;
use store::{NewRun, StorageLimits, Store};

use endpoint::{Endpoint, EndpointEngine, ServerInfo};
use local::LocalEngine;
pub use machine::device_name;
use record::{Recorder, Shared};
use services::run_services;
use terminal::Terminal;

use crate::printable::{printable, printable_line};
use crate::settings::Settings;

/// What produced a run: a plugin, or the host's own API.
pub struct Origin {
    pub name: String,
    pub version: String,
    pub blake3: String,
    pub wit: String,
}

/// A run of `origin` with `params` on the model `minfo`, on `device`.
pub fn new_run(
    origin: Origin,
    params: serde_json::Value,
    minfo: &engine::ModelInfo,
    device: &str,
) -> Result<NewRun> {
    Ok(NewRun {
        plugin_name: origin.name,
        plugin_version: origin.version,
        plugin_blake3: origin.blake3,
        plugin_wit: origin.wit,
        params,
        model_name: minfo.name.clone(),
        model_path: minfo.path.clone(),
        model_config_hash: minfo.config_hash.clone(),
        model_quantization: minfo.quantization.clone(),
        model_synthetic: minfo.synthetic,
        model: serde_json::to_value(minfo)?,
        host_version: env!("CARGO_PKG_VERSION").into(),
        host_commit: crate::version::COMMIT.into(),
        mlx_version: mlx::version(),
        backend: mlx::runtime_backend(),
        device: device.to_string(),
        machine: machine::machine(),
        endpoint: None,
    })
}

/// A run of `origin` with `params` measuring the server `endpoint`.
fn new_endpoint_run(
    origin: Origin,
    params: serde_json::Value,
    endpoint: &Endpoint,
    server: &ServerInfo,
) -> NewRun {
    NewRun {
        plugin_name: origin.name,
        plugin_version: origin.version,
        plugin_blake3: origin.blake3,
        plugin_wit: origin.wit,
        params,
        model_name: endpoint.model.clone(),
        model_path: String::new(),
        model_config_hash: String::new(),
        model_quantization: String::new(),
        model_synthetic: false,
        model: json!({"name": endpoint.model, "served_by": endpoint.base}),
        host_version: env!("CARGO_PKG_VERSION").into(),
        host_commit: crate::version::COMMIT.into(),
        mlx_version: String::new(),
        backend: "endpoint".into(),
        device: if server.server.is_empty() {
            endpoint.base.clone()
        } else {
            server.server.clone()
        },
        machine: machine::machine(),
        endpoint: Some(json!({
            "url": endpoint.base,
            "model": endpoint.model,
            "server": server.server,
            "models": server.models,
        })),
    }
}

/// A server to measure instead of the host's engine.
pub struct EndpointRequest {
    pub url: String,
    pub model: Option<String>,
    /// The API key, read from the environment variable the user named.
    pub api_key: Option<String>,
    /// How long to wait for the server's next bytes.
    pub read_timeout: Duration,
}

pub struct RunRequest {
    pub plugin: String,
    pub model: crate::cli::ModelArgs,
    pub images: Vec<String>,
    pub sets: Vec<String>,
    pub timeout: Duration,
    pub memory_mb: usize,
    pub store_mb: u64,
    pub db: PathBuf,
    pub quiet: bool,
    /// Measure this server rather than load a model.
    pub endpoint: Option<EndpointRequest>,
    /// How the host's engine batches requests a plugin submits together.
    pub batch: BatchLimits,
}

pub struct RunResult {
    pub status: RunStatus,
    pub verdict: Option<bool>,
}

/// Ctrl-C: the first press stops the run cleanly (everything recorded so far
/// stays), the second exits at once.
fn install_ctrl_c(cancel: engine::CancelToken) {
    let presses = std::sync::atomic::AtomicUsize::new(0);
    let _ = ctrlc::set_handler(move || {
        if presses.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            eprintln!("\nstopping the run (press Ctrl-C again to quit at once)…");
            cancel.cancel();
        } else {
            std::process::exit(130);
        }
    });
}

/// A run's backend, started, with the run's row created.
struct Started {
    run_id: i64,
    engine: Box<dyn EngineService>,
    /// The run's stop flag: Ctrl-C sets it, and the deadline's watchdog.
    stop: Arc<AtomicBool>,
    /// What to sample while the run runs.
    sources: Vec<telemetry::Source>,
    /// A server's metrics before the run, and where to read them after.
    scrape: Option<(Option<String>, endpoint::ServerMetrics)>,
}

/// Connects to the server `e`, creates the run, and readies requests to it.
fn start_endpoint(
    e: &EndpointRequest,
    shared: &Arc<Shared>,
    origin: Origin,
    params: serde_json::Value,
    info: &runtime::bindings::wit_types::PluginInfo,
) -> Result<Started> {
    record::lock(&shared.terminal).line(&format!("asking {} what it serves", e.url));
    let (endpoint, server) = Endpoint::connect(
        &e.url,
        e.model.as_deref(),
        e.api_key.clone(),
        e.read_timeout,
    )?;
    let run_id = record::lock(&shared.store)
        .create_run(&new_endpoint_run(origin, params, &endpoint, &server))?;
    let says = if server.server.is_empty() {
        String::new()
    } else {
        format!(" ({})", server.server)
    };
    record::lock(&shared.terminal).line(&format!(
        "run {run_id}: {} {} against {} at {}{says}",
        info.name, info.version, endpoint.model, endpoint.base
    ));
    let metrics = endpoint::ServerMetrics::new(&endpoint.base, e.read_timeout);
    let before = metrics.scrape();
    let cancel = engine::CancelToken::new();
    install_ctrl_c(cancel.clone());
    let recorder = Recorder {
        shared: shared.clone(),
        run_id,
    };
    Ok(Started {
        run_id,
        engine: Box::new(EndpointEngine::new(endpoint, &server, recorder)),
        stop: cancel.flag(),
        sources: telemetry::host_sources(),
        scrape: Some((before, metrics)),
    })
}

/// Loads the model on the engine's thread, creates the run, and readies
/// requests to the engine.
fn start_local(
    settings: &Settings,
    req: &RunRequest,
    shared: &Arc<Shared>,
    origin: Origin,
    params: serde_json::Value,
    info: &runtime::bindings::wit_types::PluginInfo,
) -> Result<Started> {
    let model_dir = crate::model_resolve::resolve_args(settings, &req.model, req.quiet)?;
    record::lock(&shared.terminal).line(&format!("loading model {}", model_dir.display()));
    let opts = settings.engine_options(&req.model);
    let load = move || {
        Engine::load(&model_dir, opts)
            .map_err(|e| format!("loading the model in {}: {e:#}", model_dir.display()))
    };
    let (mut local, minfo, cancel) = LocalEngine::start(load, req.batch, &shared.device)?;
    let run_id = record::lock(&shared.store).create_run(&new_run(
        origin,
        params,
        &minfo,
        &shared.device,
    )?)?;
    local.record_into(Recorder {
        shared: shared.clone(),
        run_id,
    })?;
    let synthetic = if minfo.synthetic {
        ", synthetic weights"
    } else {
        ""
    };
    record::lock(&shared.terminal).line(&format!(
        "run {run_id}: {} {} on {} ({}{synthetic}), {} {}",
        info.name,
        info.version,
        minfo.name,
        minfo.quantization,
        mlx::runtime_backend(),
        shared.device
    ));
    cancel.reset();
    install_ctrl_c(cancel.clone());
    let mut sources = telemetry::host_sources();
    sources.push(local.memory_source());
    Ok(Started {
        run_id,
        engine: Box::new(local),
        stop: cancel.flag(),
        sources,
        scrape: None,
    })
}

pub fn run(settings: &Settings, req: RunRequest) -> Result<RunResult> {
    let term = Terminal::new(req.quiet);
    // The plugin first: a wrong name or --set fails before the model loads.
    let (plugin_name, wasm) = plugins::find(&settings.paths, &req.plugin)?;
    let rt = PluginRuntime::new(Some(settings.paths.plugin_cache_dir()))?;
    let plugin = rt.load(&plugin_name, &wasm)?;
    let info = rt.describe(&plugin, runtime::Services::unavailable())?;
    let sets: Vec<(String, String)> = req
        .sets
        .iter()
        .map(|s| parse_set(s))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let params = resolve_params(&info.params, &sets).map_err(anyhow::Error::msg)?;
    let image_sets = ImageSets::parse(&req.images).map_err(anyhow::Error::msg)?;

    let mut store = Store::open(&req.db)?;
    store.set_limits(StorageLimits {
        run_bytes: req.store_mb << 20,
        ..StorageLimits::default()
    });
    let params_json = serde_json::Value::Object(
        params
            .iter()
            .map(|(k, v)| (k.clone(), json!(display_value(v))))
            .collect(),
    );
    let origin = Origin {
        name: info.name.clone(),
        version: info.version.clone(),
        blake3: plugin.meta.blake3.clone(),
        wit: plugin.meta.wit.clone(),
    };
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        terminal: Mutex::new(term),
        device: device_name(),
    });
    let lock_store = || record::lock(&shared.store);
    let lock_term = || record::lock(&shared.terminal);
    let started = match &req.endpoint {
        Some(e) => start_endpoint(e, &shared, origin, params_json, &info)?,
        None => start_local(settings, &req, &shared, origin, params_json, &info)?,
    };
    let Started {
        run_id,
        engine: backend,
        stop,
        sources,
        scrape,
    } = started;
    let limits = RunLimits {
        memory_bytes: req.memory_mb << 20,
        timeout: req.timeout,
        cancel: stop,
        image_sets,
        decode_limits: engine::image::DecodeLimits::default(),
    };
    let outcome = {
        let _beat = Heartbeat::start(shared.clone(), run_id);
        let _sampler = telemetry::Sampler::start(sources, sample_sink(&shared, run_id));
        rt.run(
            &plugin,
            &params,
            run_services(&shared, run_id, backend),
            &limits,
        )
    };
    record_energy(&lock_store(), run_id);
    if let Some((before, metrics)) = scrape {
        let after = metrics.scrape();
        if let Some(table) = endpoint::metrics_table(before.as_deref(), after.as_deref()) {
            let _ = lock_store().record_table(run_id, &table.0, &table.1, &table.2);
        }
    }
    let (status, error) = match &outcome.status {
        RunStatus::Completed => ("completed", None),
        RunStatus::Failed(m) => ("failed", Some(m.clone())),
        RunStatus::TimedOut(d) => (
            "timed_out",
            Some(format!(
                "the run passed its deadline of {:.0} s",
                d.as_secs_f64()
            )),
        ),
        RunStatus::Cancelled => ("cancelled", Some("stopped by the user".to_string())),
    };
    if !outcome.stderr.trim().is_empty() {
        let _ = lock_store().record_log(run_id, "stderr", outcome.stderr.trim());
    }
    lock_store().finish_run(run_id, status, error.as_deref())?;
    lock_term().finish();
    let detail = lock_store().run(run_id)?;
    if !req.quiet {
        print_summary(&detail);
        eprintln!();
    }
    // Always said, even with --quiet: how the run ended and why.
    eprintln!(
        "run {run_id} {status} in {:.1} s{}",
        outcome.elapsed.as_secs_f64(),
        error
            .map(|e| format!(": {}", printable_line(&e, 2048)))
            .unwrap_or_default()
    );
    if !req.quiet {
        let db = req.db.display();
        eprintln!(
            "stored in {db}: `host results show {run_id} --db {db}`, or `host serve --db {db}` and open http://127.0.0.1:8370/#/run/{run_id}"
        );
    }
    Ok(RunResult {
        status: outcome.status,
        verdict: detail.summary.verdict_passed,
    })
}

/// Where the run's telemetry goes: its samples in the store.
fn sample_sink(shared: &Arc<Shared>, run_id: i64) -> telemetry::Sink {
    let shared = shared.clone();
    Box::new(move |t_ms, reading| {
        let _ = record::lock(&shared.store).record_samples(run_id, t_ms, &reading);
    })
}

/// The GPUs' energy over the run, from their sampled power, in total and
/// per output token of the measured requests: metrics of the run. Nothing
/// where no power was sampled.
fn record_energy(store: &Store, run_id: i64) {
    let Ok(detail) = store.run(run_id) else {
        return;
    };
    let mut by_gpu: std::collections::BTreeMap<&str, Vec<(f64, f64)>> = Default::default();
    for s in detail
        .samples
        .iter()
        .filter(|s| s.name.ends_with(".power_w"))
    {
        by_gpu.entry(&s.name).or_default().push((s.t_ms, s.value));
    }
    if by_gpu.is_empty() {
        return;
    }
    let joules: f64 = by_gpu.values().map(|p| telemetry::energy_joules(p)).sum();
    let tokens: u64 = detail
        .requests
        .iter()
        .filter(|r| r.row.counts())
        .map(|r| r.row.output_tokens as u64)
        .sum();
    let _ = store.record_metric(run_id, "gpu_energy_j", joules, "J");
    if tokens > 0 {
        let _ = store.record_metric(
            run_id,
            "gpu_energy_per_output_token_j",
            joules / tokens as f64,
            "J/token",
        );
    }
}

/// Beats the run's heartbeat every few seconds until dropped, whatever the
/// plugin does: other machines sharing the database read it to tell a live
/// run from a dead one.
struct Heartbeat {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    const EVERY: Duration = Duration::from_secs(5);

    fn start(shared: Arc<Shared>, run_id: i64) -> Heartbeat {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= Heartbeat::EVERY {
                    let store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = store.heartbeat(run_id);
                    last = std::time::Instant::now();
                }
            }
        });
        Heartbeat {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The run's results on standard output, plugin text escaped.
fn print_summary(d: &store::RunDetail) {
    let mut out = String::new();
    if d.summary.model_synthetic {
        out += &format!(
            "Model {} has synthetic (random) weights: outputs are meaningless, timings are real.\n\n",
            d.summary.model_name
        );
    }
    if d.tables.is_empty() && d.requests.iter().any(|r| !r.row.warmup) {
        out += &format!("{}\n", store::resolution_tables(d));
    }
    for t in &d.tables {
        out += &format!("### {}\n\n", t.name);
        out += &format!("{}\n", store::markdown_table(&t.columns, &t.rows));
    }
    for n in &d.notes {
        out += &format!("{n}\n\n");
    }
    if let Some(p) = d.summary.verdict_passed {
        out += &format!(
            "Verdict: {} {}\n",
            if p { "PASS" } else { "FAIL" },
            d.verdict_summary.clone().unwrap_or_default()
        );
    }
    print!("{}", printable(&out));
}

/// Exit code for a finished run: 0 done (and passed), 1 failed, 2 verdict
/// failed, 124 timed out, 130 cancelled.
pub fn exit_code(r: &RunResult) -> i32 {
    match (&r.status, r.verdict) {
        (RunStatus::Completed, Some(false)) => 2,
        (RunStatus::Completed, _) => 0,
        (RunStatus::Failed(_), _) => 1,
        (RunStatus::TimedOut(_), _) => 124,
        (RunStatus::Cancelled, _) => 130,
    }
}
