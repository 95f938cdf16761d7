//! Loading, inspecting and running plugins under the sandbox policy: no
//! filesystem, network or environment; a memory limit; a deadline enforced by
//! epoch interruption for wasm code, by cancelling the engine for host work,
//! and by dropping the call when the plugin waits in WASI (sleep, poll).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use imaging::DecodeLimits;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings::wit_types::{ParamSpec, ParamValue, PluginInfo};
use crate::bindings::{WIT_PACKAGE, WIT_VERSION, WIT_VERSIONS, v0_1, v0_2};
use crate::budget::RunBudget;
use crate::host::HostState;
use crate::image_sets::ImageSets;
use crate::pending::PendingSet;
use crate::services::Services;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot set up the plugin runtime: {0}")]
    Setup(String),
    #[error(
        "{name}: not a WebAssembly component ({reason}); build plugins with `cargo build --target wasm32-wasip2`"
    )]
    NotAComponent { name: String, reason: String },
    #[error(
        "{name} was built for {found}, but this host implements {WIT_PACKAGE}@{WIT_VERSION} \
         (plugins built against {WIT_PACKAGE} 0.1.0 or 0.2.0 run here); rebuild it with a matching SDK"
    )]
    UnsupportedWit { name: String, found: String },
    #[error("{name} imports {import}, which this host does not provide")]
    UnknownImport { name: String, import: String },
    #[error("{name}: {message}")]
    Instantiate { name: String, message: String },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    /// The plugin returned an error, trapped, panicked or hit a limit.
    Failed(String),
    /// The deadline passed.
    TimedOut(Duration),
    /// Stopped from outside (Ctrl-C).
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    /// What the plugin wrote to stderr (panic messages land here).
    pub stderr: String,
    pub elapsed: Duration,
}

/// Limits of one run.
#[derive(Clone)]
pub struct RunLimits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// Shared with the engine: set, it stops wasm code and engine work.
    pub cancel: Arc<AtomicBool>,
    pub image_sets: ImageSets,
    pub decode_limits: DecodeLimits,
}

impl RunLimits {
    pub fn new(cancel: Arc<AtomicBool>) -> RunLimits {
        RunLimits {
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(3600),
            cancel,
            image_sets: ImageSets::default(),
            decode_limits: DecodeLimits::default(),
        }
    }
}

/// What `host plugins inspect` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginMeta {
    pub name: String,
    pub blake3: String,
    pub bytes: usize,
    /// `vlmbench:workload@x.y.z` as imported by the plugin.
    pub wit: String,
    /// Every interface the plugin imports.
    pub imports: Vec<String>,
}

/// A plugin ready to instantiate, in the world of its WIT version.
#[derive(Clone)]
enum Pre {
    V0_1(v0_1::WorkloadPre<HostState>),
    V0_2(v0_2::WorkloadPre<HostState>),
}

/// One compiled plugin, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    pub meta: PluginMeta,
    pre: Pre,
}

/// The process-wide engine, linkers and compiled-plugin cache.
pub struct PluginRuntime {
    engine: Engine,
    /// One linker per WIT minor version served.
    linker_0_1: Linker<HostState>,
    linker_0_2: Linker<HostState>,
    compiled: Mutex<HashMap<blake3::Hash, Component>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::SeqCst);
    }
}

/// Epoch ticks: 10 ms apart.
const TICK: Duration = Duration::from_millis(10);

impl PluginRuntime {
    /// `cache_dir`: where compiled plugins persist between runs (wasmtime's
    /// cache keys them by the wasm's hash and the engine settings).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginRuntime, RuntimeError> {
        let setup = |e: wasmtime::Error| RuntimeError::Setup(format!("{e:#}"));
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Host calls run on the plugin's fiber: the engine's work needs more
        // stack than wasmtime's default 2 MiB.
        config.async_stack_size(16 << 20);
        if let Some(dir) = cache_dir {
            std::fs::create_dir_all(&dir).map_err(|e| {
                RuntimeError::Setup(format!("cannot create {}: {e}", dir.display()))
            })?;
            let mut cc = wasmtime::CacheConfig::new();
            cc.with_directory(dir);
            config.cache(Some(wasmtime::Cache::new(cc).map_err(setup)?));
        }
        let engine = Engine::new(&config).map_err(setup)?;
        let mut linker_0_1: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_0_1).map_err(setup)?;
        v0_1::Workload::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker_0_1, |s| s)
            .map_err(setup)?;
        let mut linker_0_2: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_0_2).map_err(setup)?;
        v0_2::Workload::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker_0_2, |s| s)
            .map_err(setup)?;
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::SeqCst) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Setup(format!("cannot start the epoch ticker: {e}")))?;
        Ok(PluginRuntime {
            engine,
            linker_0_1,
            linker_0_2,
            compiled: Mutex::new(HashMap::new()),
            ticker_stop: stop,
        })
    }

    /// Compiles (or finds compiled) and checks a plugin. `name` is used in messages.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<Plugin, RuntimeError> {
        let hash = blake3::hash(wasm);
        let component = {
            let cached = self
                .compiled
                .lock()
                .expect("compile cache lock")
                .get(&hash)
                .cloned();
            match cached {
                Some(c) => c,
                None => {
                    if !wasm.starts_with(b"\0asm") {
                        return Err(RuntimeError::NotAComponent {
                            name: name.into(),
                            reason: "no wasm header".into(),
                        });
                    }
                    let c = Component::new(&self.engine, wasm).map_err(|e| {
                        RuntimeError::NotAComponent {
                            name: name.into(),
                            reason: format!("{e:#}"),
                        }
                    })?;
                    self.compiled
                        .lock()
                        .expect("compile cache lock")
                        .insert(hash, c.clone());
                    c
                }
            }
        };
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let (wit, minor) = check_imports(name, &imports)?;
        let failed = |e: wasmtime::Error| RuntimeError::Instantiate {
            name: name.into(),
            message: format!("{e:#}"),
        };
        let pre = if minor == 1 {
            let pre = self
                .linker_0_1
                .instantiate_pre(&component)
                .map_err(failed)?;
            Pre::V0_1(v0_1::WorkloadPre::new(pre).map_err(failed)?)
        } else {
            let pre = self
                .linker_0_2
                .instantiate_pre(&component)
                .map_err(failed)?;
            Pre::V0_2(v0_2::WorkloadPre::new(pre).map_err(failed)?)
        };
        // Exports must be there too (describe and run).
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        for needed in ["describe", "run"] {
            if !exports.iter().any(|e| e == needed) {
                return Err(RuntimeError::Instantiate {
                    name: name.into(),
                    message: format!("it does not export `{needed}`"),
                });
            }
        }
        Ok(Plugin {
            meta: PluginMeta {
                name: name.into(),
                blake3: hash.to_hex().to_string(),
                bytes: wasm.len(),
                wit,
                imports,
            },
            pre,
        })
    }

    fn store(
        &self,
        services: Services,
        limits: &RunLimits,
    ) -> (Store<HostState>, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(64 * 1024);
        // Deny by default: no env, no args, no preopened dirs, no network.
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .stdout(MemoryOutputPipe::new(64 * 1024))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            budget: RunBudget::new(limits.memory_bytes),
            services,
            sets: limits.image_sets.clone(),
            decode_limits: limits.decode_limits,
            live_images: 0,
            held_images: HashMap::new(),
            pending: PendingSet::default(),
            stop: limits.cancel.clone(),
            started: Instant::now(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.budget);
        (store, stderr)
    }

    /// Calls the plugin's `describe` in a store of its own.
    pub fn describe(
        &self,
        plugin: &Plugin,
        services: Services,
    ) -> Result<PluginInfo, RuntimeError> {
        let limits = RunLimits {
            timeout: Duration::from_secs(10),
            ..RunLimits::new(Arc::default())
        };
        let (mut store, stderr) = self.store(services, &limits);
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        let call = async {
            match &plugin.pre {
                Pre::V0_1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    Ok(info_of_0_1(instance.call_describe(&mut store).await?))
                }
                Pre::V0_2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance.call_describe(&mut store).await
                }
            }
        };
        let result = until(deadline, &Arc::default(), call).unwrap_or_else(|| {
            Err(wasmtime::Error::msg(format!(
                "it did not return within {} s",
                limits.timeout.as_secs()
            )))
        });
        result.map_err(|e| RuntimeError::Instantiate {
            name: plugin.meta.name.clone(),
            message: format!(
                "describe failed: {}",
                explain_trap(&e, &stderr, store.data().budget.ran_out())
            ),
        })
    }

    /// Runs the plugin with `params`. Every outcome, including traps, comes
    /// back as a `RunOutcome`; the host keeps running.
    pub fn run(
        &self,
        plugin: &Plugin,
        params: &[(String, ParamValue)],
        services: Services,
        limits: &RunLimits,
    ) -> RunOutcome {
        let start = Instant::now();
        let deadline = start + limits.timeout;
        let (mut store, stderr) = self.store(services, limits);
        let cancel = limits.cancel.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(
                if cancel.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Continue(1)
                },
            )
        });
        // Epochs never interrupt host code: a watchdog cancels the engine
        // (checked between decode steps) when the deadline passes.
        let done = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let (done, timed_out, cancel) =
                (done.clone(), timed_out.clone(), limits.cancel.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if Instant::now() >= deadline {
                        timed_out.store(true, Ordering::SeqCst);
                        cancel.store(true, Ordering::SeqCst);
                        break;
                    }
                    std::thread::sleep(TICK);
                }
            })
        };
        let call = async {
            match &plugin.pre {
                Pre::V0_1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let params: Vec<_> = params
                        .iter()
                        .map(|(k, v)| (k.clone(), value_to_0_1(v)))
                        .collect();
                    instance.call_run(&mut store, &params).await
                }
                Pre::V0_2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance.call_run(&mut store, params).await
                }
            }
        };
        // `None`: dropped while waiting in WASI at the deadline or Ctrl-C.
        let result = until(deadline, &limits.cancel, call);
        done.store(true, Ordering::SeqCst);
        let _ = watchdog.join();
        let status = match result {
            None if Instant::now() >= deadline => RunStatus::TimedOut(limits.timeout),
            None => RunStatus::Cancelled,
            Some(result) => status_of(result, &timed_out, deadline, limits, &stderr, &store),
        };
        RunOutcome {
            status,
            stderr: pipe_text(&stderr),
            elapsed: start.elapsed(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Runs `call` on a thread-local executor until it finishes, or until
/// `deadline` passes or `cancel` is set while it waits (then `None`: the
/// call is dropped). Wasm code and host calls do not wait: the epoch
/// callback and the engine's cancel token stop those.
fn until<F: Future>(deadline: Instant, cancel: &Arc<AtomicBool>, call: F) -> Option<F::Output> {
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread executor starts");
    executor.block_on(async {
        let mut call = pin!(call);
        let mut tick = tokio::time::interval(TICK);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            if cancel.load(Ordering::SeqCst) || Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            // Woken again at the next tick to look at the clock and the flag.
            while tick.poll_tick(cx).is_ready() {}
            Poll::Pending
        })
        .await
    })
}

/// How a run whose call returned ended.
fn status_of(
    result: wasmtime::Result<Result<(), String>>,
    timed_out: &AtomicBool,
    deadline: Instant,
    limits: &RunLimits,
    stderr: &MemoryOutputPipe,
    store: &Store<HostState>,
) -> RunStatus {
    // The epoch callback and the watchdog race to notice the deadline: an
    // interrupt after it is a timeout whichever won.
    let interrupted = |e: &wasmtime::Error| e.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
    match result {
        Ok(Ok(())) => RunStatus::Completed,
        Ok(Err(msg)) => RunStatus::Failed(format!("the plugin reported an error: {msg}")),
        Err(e)
            if timed_out.load(Ordering::SeqCst)
                || (interrupted(&e) && Instant::now() >= deadline) =>
        {
            RunStatus::TimedOut(limits.timeout)
        }
        Err(_) if limits.cancel.load(Ordering::SeqCst) => RunStatus::Cancelled,
        Err(e) => RunStatus::Failed(explain_trap(&e, stderr, store.data().budget.ran_out())),
    }
}

impl Plugin {
    /// Reads the plugin's metadata and checks it can be linked.
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }
}

fn pipe_text(p: &MemoryOutputPipe) -> String {
    String::from_utf8_lossy(&p.contents()).to_string()
}

/// A readable reason for a trap: what the plugin did (exited, panicked, ran
/// out of memory) or the root cause of the error, with the plugin function
/// it happened in, never wasmtime's backtrace header.
fn explain_trap(e: &wasmtime::Error, stderr: &MemoryOutputPipe, ran_out: Option<&str>) -> String {
    let err_out = pipe_text(stderr);
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!(
            "the plugin called exit({}) instead of returning from run",
            exit.0
        );
    }
    let cause = e.root_cause().to_string();
    // A refused growth makes an allocator fail; the trap that follows is
    // the budget's doing.
    let unreachable = e.downcast_ref::<Trap>() == Some(&Trap::UnreachableCodeReached);
    if let Some(why) = ran_out
        && (err_out.contains("memory allocation of") || unreachable || cause.contains("memory"))
    {
        return why.to_string();
    }
    if let Some(panic) = err_out.lines().position(|l| l.contains("panicked at")) {
        let msg: Vec<&str> = err_out.lines().skip(panic).take(3).collect();
        return format!("the plugin panicked: {}", msg.join(" ").trim());
    }
    if err_out.contains("memory allocation of") {
        return format!("the plugin ran out of memory: {}", err_out.trim());
    }
    let at = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| bt.frames().iter().find_map(|f| f.func_name()))
        .map(|f| format!(" (in {f})"))
        .unwrap_or_default();
    match e.downcast_ref::<Trap>() {
        Some(trap) => format!("the plugin trapped: {trap}{at}"),
        None => format!("the run stopped: {}{at}", host_error(&cause)),
    }
}

/// A host-side failure in the plugin's terms.
fn host_error(cause: &str) -> String {
    if cause.contains("unknown handle index") || cause.contains("resource not present") {
        format!("the plugin used an image handle that was dropped or never existed ({cause})")
    } else if cause.contains("utf-8") || cause.contains("utf8") {
        format!("the plugin passed text that is not valid UTF-8 ({cause})")
    } else {
        cause.to_string()
    }
}

/// Checks a plugin's imports: WASI, and our package at a version this host
/// implements. Returns the package version it was built against.
/// The WIT version a plugin's imports name, checked against the versions
/// this host serves: its description and its minor version.
fn check_imports(name: &str, imports: &[String]) -> Result<(String, u64), RuntimeError> {
    let served: Vec<(u64, u64, u64)> = WIT_VERSIONS
        .iter()
        .map(|v| semver_parts(v).expect("our WIT versions parse"))
        .collect();
    let mut found: Option<(String, u64)> = None;
    for import in imports {
        if import.starts_with("wasi:") {
            continue;
        }
        let Some(rest) = import.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            return Err(RuntimeError::UnknownImport {
                name: name.into(),
                import: import.clone(),
            });
        };
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
        let unsupported = || RuntimeError::UnsupportedWit {
            name: name.into(),
            found: format!("{WIT_PACKAGE}@{version}"),
        };
        let Some((major, minor, patch)) = semver_parts(version) else {
            return Err(unsupported());
        };
        // Patch releases only add: a host of 0.M.q serves plugins of 0.M.p, p <= q.
        if !served
            .iter()
            .any(|&(ma, mi, pa)| ma == major && mi == minor && patch <= pa)
        {
            return Err(unsupported());
        }
        match &found {
            Some((_, m)) if *m != minor => {
                return Err(RuntimeError::Instantiate {
                    name: name.into(),
                    message: format!(
                        "it imports {WIT_PACKAGE} at two versions ({} and {version}); build it against one",
                        found.as_ref().map(|f| f.0.as_str()).unwrap_or_default()
                    ),
                });
            }
            _ => found = Some((format!("{WIT_PACKAGE}@{version}"), minor)),
        }
    }
    let current = served.last().expect("a served version").1;
    Ok(found.unwrap_or_else(|| (format!("{WIT_PACKAGE} (no imports)"), current)))
}

/// A 0.1 plugin's description in the current types (the same fields).
fn info_of_0_1(i: v0_1::vlmbench::workload::types::PluginInfo) -> PluginInfo {
    use crate::bindings::wit_types::ParamKind as K2;
    use v0_1::vlmbench::workload::types::ParamKind as K1;
    PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        params: i
            .params
            .into_iter()
            .map(|p| ParamSpec {
                name: p.name,
                kind: match p.kind {
                    K1::Boolean => K2::Boolean,
                    K1::Integer => K2::Integer,
                    K1::Float => K2::Float,
                    K1::Text => K2::Text,
                },
                default_value: p.default_value,
                help: p.help,
            })
            .collect(),
    }
}

fn value_to_0_1(v: &ParamValue) -> v0_1::vlmbench::workload::types::ParamValue {
    use v0_1::vlmbench::workload::types::ParamValue as V1;
    match v {
        ParamValue::Boolean(b) => V1::Boolean(*b),
        ParamValue::Integer(i) => V1::Integer(*i),
        ParamValue::Float(f) => V1::Float(*f),
        ParamValue::Text(t) => V1::Text(t.clone()),
    }
}

fn semver_parts(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_versions_are_checked() {
        let ok = vec![
            "wasi:cli/stderr@0.2.6".to_string(),
            format!("{WIT_PACKAGE}/engine@0.1.0"),
        ];
        assert_eq!(
            check_imports("p", &ok).unwrap(),
            (format!("{WIT_PACKAGE}@0.1.0"), 1)
        );
        let current = vec![format!("{WIT_PACKAGE}/engine@0.2.0")];
        assert_eq!(check_imports("p", &current).unwrap().1, 2);
        for newer in ["0.2.1", "0.3.0", "1.0.0"] {
            let imports = vec![format!("{WIT_PACKAGE}/engine@{newer}")];
            let e = check_imports("p", &imports).unwrap_err().to_string();
            assert!(e.contains(newer) && e.contains(WIT_VERSION), "{e}");
        }
        let mixed = vec![
            format!("{WIT_PACKAGE}/engine@0.1.0"),
            format!("{WIT_PACKAGE}/images@0.2.0"),
        ];
        let e = check_imports("p", &mixed).unwrap_err().to_string();
        assert!(e.contains("two versions"), "{e}");
        let foreign = vec!["acme:spy/net@1.0.0".to_string()];
        assert!(matches!(
            check_imports("p", &foreign),
            Err(RuntimeError::UnknownImport { .. })
        ));
    }
}
