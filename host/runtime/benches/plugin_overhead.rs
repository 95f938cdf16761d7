//! Benchmark (not a test): the cost of one host call from a plugin, and
//! plugin start-up with and without the compile cache.
//!
//! `cargo bench -p runtime --bench plugin_overhead`
//!
//! The plugin is the real `probe` component; its `calls` mode loops over
//! `engine::cache-stats` (a call that does almost nothing on the host side),
//! so the time per call is the round trip across the component boundary.

use std::sync::Arc;
use std::time::Instant;

use runtime::bindings::wit_engine as w;
use runtime::bindings::wit_types::ParamValue;
use runtime::{
    CancelFn, Completion, EngineService, PluginRuntime, RunLimits, RunStatus, ServiceError,
    Services, Submission,
};

/// Counts cache-stats calls; nothing else is used.
struct Counter {
    calls: u64,
}

impl EngineService for Counter {
    fn model_info(&mut self) -> w::ModelInfo {
        unreachable!("not used by the benchmark")
    }
    fn submit(&mut self, _: Submission, _: Completion) -> Result<CancelFn, ServiceError> {
        Err(ServiceError::rejected("no engine in this benchmark"))
    }
    fn cache_stats(&mut self) -> Option<w::CacheCounters> {
        self.calls += 1;
        Some(w::CacheCounters {
            prefix_lookups: self.calls,
            ..runtime::no_cache_counters()
        })
    }
    fn cache_clear(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn cache_configure(
        &mut self,
        _: Option<bool>,
        _: Option<u64>,
        _: Option<u64>,
    ) -> Result<(), String> {
        Ok(())
    }
}

fn counting() -> Services {
    Services {
        engine: Box::new(Counter { calls: 0 }),
        ..Services::unavailable()
    }
}

fn params(count: i64) -> Vec<(String, ParamValue)> {
    vec![
        ("mode".into(), ParamValue::Text("calls".into())),
        ("count".into(), ParamValue::Integer(count)),
        ("ratio".into(), ParamValue::Float(0.5)),
        ("flag".into(), ParamValue::Boolean(false)),
    ]
}

fn main() {
    let wasm = std::fs::read(plugins_built::test_plugin("probe")).expect("probe plugin");
    let cache = tempfile::tempdir().unwrap();

    // Start-up: compile without any cache; with wasmtime's on-disk cache
    // (a new runtime, as a new process would be); and from the in-process map.
    let t = Instant::now();
    let rt0 = PluginRuntime::new(None).unwrap();
    rt0.load("probe.wasm", &wasm).unwrap();
    let cold = t.elapsed();
    let rt1 = PluginRuntime::new(Some(cache.path().to_path_buf())).unwrap();
    rt1.load("probe.wasm", &wasm).unwrap(); // fills the disk cache
    drop(rt1);
    let t = Instant::now();
    let rt2 = PluginRuntime::new(Some(cache.path().to_path_buf())).unwrap();
    let plugin = rt2.load("probe.wasm", &wasm).unwrap();
    let disk = t.elapsed();
    let t = Instant::now();
    rt2.load("probe.wasm", &wasm).unwrap();
    let memory = t.elapsed();

    // Instantiate + run with no calls: the fixed cost of a run.
    let limits = RunLimits::new(Arc::default());
    let t = Instant::now();
    let n0 = 20;
    for _ in 0..n0 {
        let out = rt2.run(&plugin, &params(0), counting(), &limits);
        assert_eq!(out.status, RunStatus::Completed);
    }
    let per_run = t.elapsed() / n0;

    // Host call round trips: the difference between many calls and none.
    let n: i64 = 2_000_000;
    let t = Instant::now();
    let out = rt2.run(&plugin, &params(n), counting(), &limits);
    assert_eq!(out.status, RunStatus::Completed, "{:?}", out.status);
    let total = t.elapsed();
    let per_call_ns = (total.as_nanos() as f64 - per_run.as_nanos() as f64) / n as f64;

    println!("plugin start-up (probe.wasm, {} KB)", wasm.len() / 1024);
    println!("| step | time |");
    println!("|---|---|");
    println!("| compile, no cache | {:.1} ms |", cold.as_secs_f64() * 1e3);
    println!(
        "| load from wasmtime's disk cache (new runtime) | {:.1} ms |",
        disk.as_secs_f64() * 1e3
    );
    println!(
        "| load again in the same process | {:.3} ms |",
        memory.as_secs_f64() * 1e3
    );
    println!(
        "| instantiate + run with no host calls | {:.2} ms |",
        per_run.as_secs_f64() * 1e3
    );
    println!(
        "\nhost call round trip (engine::cache-stats, {n} calls): {per_call_ns:.0} ns per call (target ≤ 2000 ns)"
    );
}
