//! Recording a run: its creation, each request as it completes, what the
//! plugin records, its end; and marking runs a crashed host left `running`.
//! Every write that reads first takes the write lock at its start, so that
//! processes sharing the database wait for each other instead of failing.

use std::time::{Duration, Instant};

use rusqlite::{Transaction, TransactionBehavior, params};

use crate::budget::{cut, fit_rows};
use crate::liveness::{self, Owner};
use crate::time::{self, now_rfc3339};
use crate::{Error, NewRun, RequestRow, Result, STATUSES, Store};

/// A run of another machine is considered abandoned when its heartbeat is
/// this old (its runner beats every few seconds, whatever the plugin does).
const STALE_HEARTBEAT_MS: i64 = 120_000;

/// How long a write waits for other processes before giving up.
const WRITE_PATIENCE: Duration = Duration::from_secs(60);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// A metric's value as stored: SQLite keeps NaN as NULL, so the values
/// that are not finite are stored as their names.
fn metric_value(v: f64) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    if v.is_nan() {
        Value::Text("NaN".into())
    } else if v.is_infinite() {
        Value::Text(if v > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        Value::Real(v)
    }
}

impl Store {
    /// Runs `f` in a transaction that holds the write lock from its start
    /// (a transaction that reads and then writes would otherwise fail at
    /// once when another process wrote in between), retried while other
    /// processes keep the database busy.
    pub(crate) fn write<T>(
        &self,
        mut f: impl FnMut(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + WRITE_PATIENCE;
        loop {
            let attempt = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
                .and_then(|tx| {
                    let v = f(&tx)?;
                    tx.commit()?;
                    Ok(v)
                });
            match attempt {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                r => return r.map_err(|e| self.err(e)),
            }
        }
    }

    /// Marks `running` runs whose host process is gone as `interrupted`
    /// (for a run of another machine: whose heartbeat stopped). Returns how
    /// many.
    pub fn recover_interrupted(&self) -> Result<usize> {
        let me = liveness::hostname();
        let now = time::now_unix_ms();
        let running: Vec<(i64, String, i64, Option<String>, i64)> = self.rows(
            "SELECT id, hostname, pid, pid_start, heartbeat_ms FROM runs WHERE status = 'running'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let mut n = 0;
        for (id, host, pid, start, heartbeat) in running {
            let gone = match liveness::owner(&host, pid, start.as_deref(), &me) {
                Owner::Alive => false,
                Owner::Gone => true,
                Owner::Unknown => now - heartbeat > STALE_HEARTBEAT_MS,
            };
            if gone {
                n += self.write(|tx| {
                    tx.execute(
                        "UPDATE runs SET status = 'interrupted', ended_at = ?1,
                         error = coalesce(error, 'the host stopped before the run finished')
                         WHERE id = ?2 AND status = 'running'",
                        params![now_rfc3339(), id],
                    )
                })?;
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
                 heartbeat_ms, pid_start, endpoint_json)
                 VALUES ('running', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
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
                    liveness::hostname(),
                    std::process::id() as i64,
                    time::now_unix_ms(),
                    liveness::own_start(),
                    run.endpoint.as_ref().map(|e| e.to_string()),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
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
        let after_first = r.tokens_after_first();
        let decode = (after_first >= 1 && r.decode_ms > 0.0)
            .then(|| after_first as f64 / (r.decode_ms / 1e3));
        let chunks = (!r.chunk_tokens.is_empty())
            .then(|| serde_json::to_string(&r.chunk_tokens).unwrap_or_default());
        let first = r.images.first();
        let label = cut(&r.label, self.limits.name_bytes);
        let images = serde_json::to_string(&r.images).unwrap_or_default();
        let times = serde_json::to_string(&r.token_times_ms).unwrap_or_default();
        self.write(|tx| {
            let seq: i64 = tx.query_row(
                "SELECT coalesce(max(seq), 0) + 1 FROM requests WHERE run_id = ?1",
                [run],
                |x| x.get(0),
            )?;
            tx.execute(
                "INSERT INTO requests (run_id, seq, label, warmup, started_at, images_json, image_width, image_height,
                 image_pixels, max_tokens, ignore_eos, sampling_json, prompt_tokens, image_tokens, text_tokens,
                 output_tokens, finish_reason, preprocess_ms, vision_ms, prefill_ms, ttft_ms, decode_ms, total_ms,
                 speed_tok_s, decode_tok_s, itl_p50_ms, itl_p90_ms, itl_p99_ms, token_times_json, cache_prefix,
                 cache_reused_tokens, vision_hits, vision_misses, vision_skipped, peak_memory_bytes, output_preview,
                 remote, error, error_kind, chunk_tokens_json, sent_at_ms, late_ms, queued_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
                 ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43)",
                params![
                    run,
                    seq,
                    label,
                    r.warmup,
                    r.started_at,
                    images,
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
                    times,
                    r.cache_prefix,
                    r.cache_reused_tokens,
                    r.vision_hits,
                    r.vision_misses,
                    r.vision_skipped,
                    r.peak_memory_bytes as i64,
                    r.output_preview,
                    r.remote,
                    r.error.as_deref().map(|e| cut(e, 4096)),
                    r.error_kind,
                    chunks,
                    r.sent_at_ms,
                    r.late_ms,
                    r.queued_ms,
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE runs SET heartbeat_ms = ?1 WHERE id = ?2",
                params![time::now_unix_ms(), run],
            )?;
            Ok(id)
        })
    }

    /// Takes `bytes` from the run's storage budget inside `tx`; false when
    /// the budget cannot cover them (the first time, a note says so).
    fn charge(&self, tx: &Transaction, run: i64, bytes: usize) -> rusqlite::Result<bool> {
        let (stored, dropped): (i64, i64) = tx.query_row(
            "SELECT stored_bytes, dropped_writes FROM runs WHERE id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if stored as u64 + bytes as u64 <= self.limits.run_bytes {
            tx.execute(
                "UPDATE runs SET stored_bytes = stored_bytes + ?1, heartbeat_ms = ?2 WHERE id = ?3",
                params![bytes as i64, time::now_unix_ms(), run],
            )?;
            return Ok(true);
        }
        tx.execute(
            "UPDATE runs SET dropped_writes = dropped_writes + 1 WHERE id = ?1",
            [run],
        )?;
        if dropped == 0 {
            tx.execute(
                "INSERT INTO notes (run_id, text) VALUES (?1, ?2)",
                params![
                    run,
                    format!(
                        "The run's storage budget of {} MiB ran out: the plugin's later logs, notes, \
                         tables and metrics were not stored.",
                        self.limits.run_bytes >> 20
                    )
                ],
            )?;
        }
        Ok(false)
    }

    /// Stores the values sampled `t_ms` after the run started, one per
    /// series. Not charged to the plugin's storage budget: the host samples
    /// at a bounded rate (`telemetry`).
    pub fn record_samples(&self, run: i64, t_ms: f64, values: &[(String, f64)]) -> Result<()> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO samples (run_id, t_ms, name, value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (name, value) in values {
                if value.is_finite() {
                    insert.execute(params![run, t_ms, cut(name, 64), value])?;
                }
            }
            Ok(())
        })
    }

    pub fn record_metric(&self, run: i64, name: &str, value: f64, unit: &str) -> Result<()> {
        let name = cut(name, self.limits.name_bytes);
        let unit = cut(unit, self.limits.name_bytes);
        self.write(|tx| {
            if self.charge(tx, run, name.len() + unit.len() + 8)? {
                tx.execute(
                    "INSERT INTO metrics (run_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)",
                    params![run, name, metric_value(value), unit],
                )?;
            }
            Ok(())
        })
    }

    /// Stores a table; cells are cut to the text limit, and rows past the
    /// table limit are left out, with a note.
    pub fn record_table(
        &self,
        run: i64,
        name: &str,
        columns: &[String],
        rows: &[Vec<String>],
    ) -> Result<()> {
        let l = self.limits;
        let name = cut(name, l.name_bytes);
        let columns: Vec<String> = columns.iter().map(|c| cut(c, l.name_bytes)).collect();
        let (rows, left_out) = fit_rows(rows, l.text_bytes, l.table_bytes);
        let columns_json = serde_json::to_string(&columns).unwrap_or_default();
        let rows_json = serde_json::to_string(&rows).unwrap_or_default();
        let note = (left_out > 0).then(|| {
            format!(
                "Table {name}: {left_out} of {} rows were not stored (a table may hold {} MiB of text).",
                rows.len() + left_out,
                l.table_bytes >> 20
            )
        });
        self.write(|tx| {
            let bytes = name.len() + columns_json.len() + rows_json.len();
            if self.charge(tx, run, bytes)? {
                tx.execute(
                    "INSERT INTO result_tables (run_id, name, columns_json, rows_json) VALUES (?1, ?2, ?3, ?4)",
                    params![run, name, columns_json, rows_json],
                )?;
                if let Some(note) = &note {
                    tx.execute(
                        "INSERT INTO notes (run_id, text) VALUES (?1, ?2)",
                        params![run, note],
                    )?;
                }
            }
            Ok(())
        })
    }

    pub fn record_note(&self, run: i64, text: &str) -> Result<()> {
        let text = cut(text, self.limits.text_bytes);
        self.write(|tx| {
            if self.charge(tx, run, text.len())? {
                tx.execute(
                    "INSERT INTO notes (run_id, text) VALUES (?1, ?2)",
                    params![run, text],
                )?;
            }
            Ok(())
        })
    }

    pub fn record_log(&self, run: i64, level: &str, message: &str) -> Result<()> {
        let level = cut(level, self.limits.name_bytes);
        let message = cut(message, self.limits.text_bytes);
        self.write(|tx| {
            if self.charge(tx, run, level.len() + message.len())? {
                tx.execute(
                    "INSERT INTO logs (run_id, at, level, message) VALUES (?1, ?2, ?3, ?4)",
                    params![run, now_rfc3339(), level, message],
                )?;
            }
            Ok(())
        })
    }

    pub fn set_verdict(&self, run: i64, passed: bool, summary: &str) -> Result<()> {
        let summary = cut(summary, self.limits.text_bytes);
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET verdict_passed = ?1, verdict_summary = ?2 WHERE id = ?3",
                params![passed, summary, run],
            )
        })
        .map(|_| ())
    }

    /// Ends a run with `status` (one of [`STATUSES`], not `running`).
    pub fn finish_run(&self, run: i64, status: &str, error: Option<&str>) -> Result<()> {
        if !STATUSES.contains(&status) || status == "running" {
            return Err(Error::Other {
                path: self.path.clone(),
                message: format!("{status:?} is not a final run status"),
            });
        }
        let error = error.map(|e| cut(e, self.limits.text_bytes));
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET status = ?1, ended_at = ?2, error = ?3, heartbeat_ms = ?4 WHERE id = ?5",
                params![status, now_rfc3339(), error, time::now_unix_ms(), run],
            )
        })
        .map(|_| ())
    }

    /// Tells other processes that the run's owner is alive (read where its
    /// process cannot be checked: a run of another machine).
    pub fn heartbeat(&self, run: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET heartbeat_ms = ?1 WHERE id = ?2",
                params![time::now_unix_ms(), run],
            )
        })
        .map(|_| ())
    }
}
