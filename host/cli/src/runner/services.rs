//! The runner's side of a plugin run for the interfaces beside the engine:
//! what the plugin records goes to the store; progress shows on the
//! terminal. (The engine is a backend of its own: `local`, `endpoint`.)

use std::sync::Arc;

use runtime::bindings::wit_progress::Level;
use runtime::{EngineService, ProgressService, ResultsService, ServiceError, Services};

use super::record::{Shared, lock};

/// The services of one run, all over the same shared state, with `engine`
/// as its backend.
pub fn run_services(shared: &Arc<Shared>, run_id: i64, engine: Box<dyn EngineService>) -> Services {
    let of = || RunServices {
        shared: shared.clone(),
        run_id,
    };
    Services {
        engine,
        results: Box::new(of()),
        progress: Box::new(of()),
    }
}

struct RunServices {
    shared: Arc<Shared>,
    run_id: i64,
}

impl RunServices {
    fn store_err(e: store::Error) -> ServiceError {
        ServiceError::fatal(format!("cannot record the result: {e}"))
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
