//! The runner's side of a plugin run, one service per WIT interface: every
//! engine call goes through here and is recorded in the store as it
//! completes; what the plugin records goes to the store; progress shows on
//! the terminal.

use std::sync::{Arc, Mutex};

use engine::Engine;
use runtime::bindings::wit_engine as w;
use runtime::bindings::wit_progress::Level;
use runtime::{EngineService, ProgressService, ResultsService, ServiceError, Services};
use store::Store;

use super::convert;
use super::terminal::Terminal;

/// Shared by the runner and the plugin's store (which needs `'static`).
pub struct Shared {
    pub engine: Mutex<Engine>,
    pub store: Mutex<Store>,
    pub terminal: Mutex<Terminal>,
    pub device: String,
}

/// The services of one run, all over the same shared state.
pub fn run_services(shared: &Arc<Shared>, run_id: i64) -> Services {
    let of = || RunServices {
        shared: shared.clone(),
        run_id,
    };
    Services {
        engine: Box::new(of()),
        results: Box::new(of()),
        progress: Box::new(of()),
    }
}

struct RunServices {
    shared: Arc<Shared>,
    run_id: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock must not hide the results recorded so far.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunServices {
    fn store_err(e: store::Error) -> ServiceError {
        ServiceError::fatal(format!("cannot record the result: {e}"))
    }
}

impl EngineService for RunServices {
    fn model_info(&mut self) -> w::ModelInfo {
        let engine = lock(&self.shared.engine);
        convert::model_info(engine.info(), &self.shared.device)
    }

    fn generate(
        &mut self,
        images: Vec<Arc<engine::image::RgbImage>>,
        request: w::GenerateRequest,
    ) -> Result<w::GenerateResponse, ServiceError> {
        let req = convert::request(&request, &images).map_err(ServiceError::rejected)?;
        let started_at = store::now_rfc3339();
        let result = lock(&self.shared.engine).generate(&req, &mut |_| {});
        let resp = match result {
            Ok(r) => r,
            Err(engine::Error::Cancelled) => {
                return Err(ServiceError::fatal("the run was stopped"));
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = lock(&self.shared.store).record_log(
                    self.run_id,
                    "error",
                    &format!("generate failed: {msg}"),
                );
                return Err(ServiceError::rejected(msg));
            }
        };
        let row = convert::request_row(&request, &images, &req, &resp, started_at);
        let id = lock(&self.shared.store)
            .record_request(self.run_id, &row)
            .map_err(Self::store_err)?;
        Ok(convert::response(id as u64, &row, resp))
    }

    fn cache_stats(&mut self) -> w::CacheCounters {
        convert::cache_counters(&lock(&self.shared.engine).cache_stats())
    }

    fn cache_clear(&mut self) {
        lock(&self.shared.engine).clear_cache();
    }

    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix_bytes: Option<u64>,
        vision_bytes: Option<u64>,
    ) {
        let mut e = lock(&self.shared.engine);
        if let Some(on) = enabled {
            e.set_cache_enabled(on);
        }
        e.set_cache_budget(
            prefix_bytes.map(|b| b as usize),
            vision_bytes.map(|b| b as usize),
        );
    }
}

impl ResultsService for RunServices {
    fn metric(&mut self, name: String, value: f64, unit: String) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .record_metric(self.run_id, &name, value, &unit)
            .map_err(Self::store_err)
    }

    fn table(
        &mut self,
        name: String,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .record_table(self.run_id, &name, &columns, &rows)
            .map_err(Self::store_err)
    }

    fn note(&mut self, text: String) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .record_note(self.run_id, &text)
            .map_err(Self::store_err)
    }

    fn verdict(&mut self, passed: bool, summary: String) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .set_verdict(self.run_id, passed, &summary)
            .map_err(Self::store_err)
    }
}

impl ProgressService for RunServices {
    fn log(&mut self, level: Level, message: String) {
        let name = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let _ = lock(&self.shared.store).record_log(self.run_id, name, &message);
        if level != Level::Debug {
            lock(&self.shared.terminal).line(&format!("[{name}] {message}"));
        }
    }

    fn progress(&mut self, done: u32, total: u32, step: String) {
        lock(&self.shared.terminal).progress(done, total, &step);
    }
}
