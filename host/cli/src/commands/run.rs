//! `host run`.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::RunArgs;
use crate::runner::{self, RunRequest};
use crate::settings::Settings;

pub fn run(settings: &Settings, args: RunArgs) -> Result<i32> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    if args.memory_mb < 16 {
        bail!("--memory-mb must be at least 16");
    }
    if args.store_mb < 1 {
        bail!("--store-mb must be at least 1");
    }
    let result = runner::run(
        settings,
        RunRequest {
            plugin: args.plugin,
            model: args.model,
            images: args.images,
            sets: args.sets,
            timeout: Duration::from_secs_f64(args.timeout),
            memory_mb: args.memory_mb,
            store_mb: args.store_mb,
            db: args.db.path(&settings.paths),
            quiet: args.quiet,
        },
    )?;
    Ok(runner::exit_code(&result))
}
