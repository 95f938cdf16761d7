//! `host run`.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::RunArgs;
use serving::BatchLimits;

use crate::runner::{self, EndpointRequest, RunRequest};
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
    if !(args.read_timeout.is_finite() && args.read_timeout > 0.0) {
        bail!("--read-timeout must be a positive number of seconds");
    }
    let endpoint = match &args.endpoint {
        Some(url) => {
            let api_key = match &args.api_key_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("--api-key-env {var}: the environment has no {var}")
                })?),
                None => None,
            };
            Some(EndpointRequest {
                url: url.clone(),
                model: args.endpoint_model.clone(),
                api_key,
                read_timeout: Duration::from_secs_f64(args.read_timeout),
            })
        }
        None => None,
    };
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
            endpoint,
            batch: BatchLimits {
                max_batch: args.max_batch as usize,
                prefill_chunk: args.prefill_chunk as usize,
                // A run's plugin may have this many requests pending.
                queue: runtime::MAX_PENDING,
            },
        },
    )?;
    Ok(runner::exit_code(&result))
}
