//! `vlmbench:workload/progress`: log lines and progress, truncated, best
//! effort.

use wasmtime::Result;

use super::{HostState, truncate};
use crate::bindings::wit_progress;

impl wit_progress::Host for HostState {
    fn log(&mut self, level: wit_progress::Level, message: String) -> Result<()> {
        self.services
            .progress
            .log(level, truncate(message, 64 * 1024));
        Ok(())
    }

    fn report(&mut self, done: u32, total: u32, step: String) -> Result<()> {
        self.services
            .progress
            .progress(done, total, truncate(step, 256));
        Ok(())
    }
}
