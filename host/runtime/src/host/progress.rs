//! `vlmbench:workload/progress`: log lines and progress, truncated, best
//! effort.

use wasmtime::Result;

use super::{HostState, truncate};
use crate::bindings::v0_1::vlmbench::workload::progress as progress_0_1;
use crate::bindings::wit_progress;

macro_rules! progress_host {
    ($m:ident) => {
        impl $m::Host for HostState {
            fn log(&mut self, level: $m::Level, message: String) -> Result<()> {
                let level = match level {
                    $m::Level::Debug => wit_progress::Level::Debug,
                    $m::Level::Info => wit_progress::Level::Info,
                    $m::Level::Warn => wit_progress::Level::Warn,
                    $m::Level::Error => wit_progress::Level::Error,
                };
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
    };
}

progress_host!(wit_progress);
progress_host!(progress_0_1);
