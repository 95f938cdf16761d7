//! Recording a run: its creation, each request as it completes, what the
//! plugin records, its end; and marking runs a crashed host left `running`.

use std::path::Path;

use rusqlite::params;

use crate::time::{self, now_rfc3339};
use crate::{Error, NewRun, RequestRow, Result, STATUSES, Store};

/// A run is considered abandoned when its heartbeat is this old.
const STALE_HEARTBEAT_MS: i64 = 120_000;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether a process of this host is gone (`None` when we cannot tell).
fn process_gone(pid: i64) -> Option<bool> {
    let proc = Path::new("/proc");
    proc.is_dir().then(|| !proc.join(pid.to_string()).exists())
}

impl Store {
    /// Marks `running` runs whose host process is gone (or silent for two
    /// minutes) as `interrupted`. Returns how many.
    pub fn recover_interrupted(&self) -> Result<usize> {
        let me = hostname();
        let now = time::now_unix_ms();
        let running: Vec<(i64, String, i64, i64)> = self.rows(
            "SELECT id, hostname, pid, heartbeat_ms FROM runs WHERE status = 'running'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let mut n = 0;
        for (id, host, pid, heartbeat) in running {
            let gone =
                (host == me && pid != std::process::id() as i64 && process_gone(pid) == Some(true))
                    || now - heartbeat > STALE_HEARTBEAT_MS;
            if gone {
                n += self
                    .conn
                    .execute(
                        "UPDATE runs SET status = 'interrupted', ended_at = ?1,
                         error = coalesce(error, 'the host stopped before the run finished') WHERE id = ?2 AND status = 'running'",
                        params![now_rfc3339(), id],
                    )
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(n)
    }

    pub fn create_run(&self, run: &NewRun) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (status, started_at, plugin_name, plugin_version, plugin_blake3, plugin_wit,
                 params_json, model_name, model_path, model_config_hash, model_quantization, model_synthetic,
                 model_json, host_version, host_commit, mlx_version, backend, device, machine_json, hostname, pid,
                 heartbeat_ms)
                 VALUES ('running', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                params![
                    now_rfc3339(),
                    run.plugin_name,
                    run.plugin_version,
                    run.plugin_blake3,
                    run.plugin_wit,
                    run.params.to_string(),
                    run.model_name,
                    run.model_path,
                    run.model_config_hash,
                    run.model_quantization,
                    run.model_synthetic,
                    run.model.to_string(),
                    run.host_version,
                    run.host_commit,
                    run.mlx_version,
                    run.backend,
                    run.device,
                    run.machine.to_string(),
                    hostname(),
                    std::process::id() as i64,
                    time::now_unix_ms(),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    fn touch(&self, run: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET heartbeat_ms = ?1 WHERE id = ?2",
                params![time::now_unix_ms(), run],
            )
            .map_err(|e| self.err(e))
            .map(|_| ())
    }

    /// Stores one request; returns its id.
    pub fn record_request(&mut self, run: i64, r: &RequestRow) -> Result<i64> {
        let mut itl: Vec<f64> = r.token_times_ms.windows(2).map(|w| w[1] - w[0]).collect();
        itl.sort_by(|a, b| a.total_cmp(b));
        let pct = |q| (!itl.is_empty()).then(|| vlmbench_report::percentile(&itl, q));
        let speed = if r.total_ms > 0.0 {
            r.output_tokens as f64 / (r.total_ms / 1e3)
        } else {
            0.0
        };
        let decode = (r.token_times_ms.len() >= 2 && r.decode_ms > 0.0)
            .then(|| (r.token_times_ms.len() - 1) as f64 / (r.decode_ms / 1e3));
        let first = r.images.first();
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| Error::Sqlite {
            path: path.clone(),
            source: e,
        })?;
        let seq: i64 = tx
            .query_row(
                "SELECT coalesce(max(seq), 0) + 1 FROM requests WHERE run_id = ?1",
                [run],
                |x| x.get(0),
            )
            .map_err(|e| Error::Sqlite {
                path: path.clone(),
                source: e,
            })?;
        tx.execute(
            "INSERT INTO requests (run_id, seq, label, warmup, started_at, images_json, image_width, image_height,
             image_pixels, max_tokens, ignore_eos, sampling_json, prompt_tokens, image_tokens, text_tokens,
             output_tokens, finish_reason, preprocess_ms, vision_ms, prefill_ms, ttft_ms, decode_ms, total_ms,
             speed_tok_s, decode_tok_s, itl_p50_ms, itl_p90_ms, itl_p99_ms, token_times_json, cache_prefix,
             cache_reused_tokens, vision_hits, vision_misses, vision_skipped, peak_memory_bytes, output_preview)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
             ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36)",
            params![
                run,
                seq,
                r.label,
                r.warmup,
                r.started_at,
                serde_json::to_string(&r.images).unwrap_or_default(),
                first.map(|i| i.width),
                first.map(|i| i.height),
                first.map(|i| i.width as i64 * i.height as i64),
                r.max_tokens,
                r.ignore_eos,
                r.sampling.to_string(),
                r.prompt_tokens,
                r.image_tokens,
                r.text_tokens,
                r.output_tokens,
                r.finish_reason,
                r.preprocess_ms,
                r.vision_ms,
                r.prefill_ms,
                r.ttft_ms,
                r.decode_ms,
                r.total_ms,
                speed,
                decode,
                pct(0.5),
                pct(0.9),
                pct(0.99),
                serde_json::to_string(&r.token_times_ms).unwrap_or_default(),
                r.cache_prefix,
                r.cache_reused_tokens,
                r.vision_hits,
                r.vision_misses,
                r.vision_skipped,
                r.peak_memory_bytes as i64,
                r.output_preview,
            ],
        )
        .map_err(|e| Error::Sqlite { path: path.clone(), source: e })?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE runs SET heartbeat_ms = ?1 WHERE id = ?2",
            params![time::now_unix_ms(), run],
        )
        .map_err(|e| Error::Sqlite {
            path: path.clone(),
            source: e,
        })?;
        tx.commit().map_err(|e| Error::Sqlite { path, source: e })?;
        Ok(id)
    }

    pub fn record_metric(&self, run: i64, name: &str, value: f64, unit: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO metrics (run_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)",
                params![run, name, value, unit],
            )
            .map_err(|e| self.err(e))?;
        self.touch(run)
    }

    pub fn record_table(
        &self,
        run: i64,
        name: &str,
        columns: &[String],
        rows: &[Vec<String>],
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO result_tables (run_id, name, columns_json, rows_json) VALUES (?1, ?2, ?3, ?4)",
                params![run, name, serde_json::to_string(columns).unwrap_or_default(), serde_json::to_string(rows).unwrap_or_default()],
            )
            .map_err(|e| self.err(e))?;
        self.touch(run)
    }

    pub fn record_note(&self, run: i64, text: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO notes (run_id, text) VALUES (?1, ?2)",
                params![run, text],
            )
            .map_err(|e| self.err(e))?;
        self.touch(run)
    }

    pub fn record_log(&self, run: i64, level: &str, message: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO logs (run_id, at, level, message) VALUES (?1, ?2, ?3, ?4)",
                params![run, now_rfc3339(), level, message],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn set_verdict(&self, run: i64, passed: bool, summary: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET verdict_passed = ?1, verdict_summary = ?2 WHERE id = ?3",
                params![passed, summary, run],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Ends a run with `status` (one of [`STATUSES`], not `running`).
    pub fn finish_run(&self, run: i64, status: &str, error: Option<&str>) -> Result<()> {
        if !STATUSES.contains(&status) || status == "running" {
            return Err(Error::Other {
                path: self.path.clone(),
                message: format!("{status:?} is not a final run status"),
            });
        }
        self.conn
            .execute(
                "UPDATE runs SET status = ?1, ended_at = ?2, error = ?3, heartbeat_ms = ?4 WHERE id = ?5",
                params![status, now_rfc3339(), error, time::now_unix_ms(), run],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Keeps a long silent run from looking abandoned.
    pub fn heartbeat(&self, run: i64) -> Result<()> {
        self.touch(run)
    }
}
