//! Reading runs back: lists with filters, facets, and a run in full.

use rusqlite::OptionalExtension;
use serde_json::Value;

use crate::{
    Error, Facets, LogLine, Metric, RequestRow, Result, ResultTable, RunDetail, RunFilter,
    RunSummary, Sample, Store, StoredRequest,
};

/// The columns [`run_summary`] reads, of `runs r`.
const RUN_SUMMARY_COLUMNS: &str =
    "r.id, r.status, r.started_at, r.ended_at, r.error, r.verdict_passed, r.plugin_name,
     r.plugin_version, r.model_name, r.model_quantization, r.model_synthetic, r.backend, r.device,
     r.host_version, (SELECT count(*) FROM requests q WHERE q.run_id = r.id),
     json_extract(r.endpoint_json, '$.url')";

/// A run's summary from a row of [`RUN_SUMMARY_COLUMNS`].
fn run_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: r.get(0)?,
        status: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        error: r.get(4)?,
        verdict_passed: r.get(5)?,
        plugin_name: r.get(6)?,
        plugin_version: r.get(7)?,
        model_name: r.get(8)?,
        model_quantization: r.get(9)?,
        model_synthetic: r.get(10)?,
        backend: r.get(11)?,
        device: r.get(12)?,
        host_version: r.get(13)?,
        requests: r.get(14)?,
        endpoint: r.get(15)?,
    })
}

impl Store {
    /// ` AND …` clauses and their arguments for a filter.
    fn filter_sql(f: &RunFilter) -> (String, Vec<String>) {
        let mut sql = String::new();
        let mut args: Vec<String> = vec![];
        let mut add = |clause: &str, v: &Option<String>| {
            if let Some(v) = v {
                args.push(v.clone());
                sql.push_str(&format!(" AND {clause} ?{}", args.len()));
            }
        };
        add("r.plugin_name =", &f.plugin);
        add("r.model_name =", &f.model);
        add("r.device =", &f.device);
        add("r.status =", &f.status);
        add("r.started_at >=", &f.since);
        add("r.started_at <", &f.until);
        (sql, args)
    }

    pub fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunSummary>> {
        let (clauses, args) = Self::filter_sql(f);
        let sql = format!(
            "SELECT {RUN_SUMMARY_COLUMNS} FROM runs r WHERE 1 = 1{clauses}
             ORDER BY r.id DESC LIMIT {} OFFSET {}",
            f.limit.unwrap_or(1000).min(10_000),
            f.offset.unwrap_or(0)
        );
        self.rows(&sql, rusqlite::params_from_iter(args.iter()), run_summary)
    }

    /// Runs matching `f`, ignoring its limit and offset.
    pub fn count_matching(&self, f: &RunFilter) -> Result<i64> {
        let (clauses, args) = Self::filter_sql(f);
        self.conn
            .query_row(
                &format!("SELECT count(*) FROM runs r WHERE 1 = 1{clauses}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The distinct plugins, models, devices and statuses present.
    pub fn facets(&self) -> Result<Facets> {
        let distinct = |col: &str| -> Result<Vec<String>> {
            self.rows(
                &format!("SELECT DISTINCT {col} FROM runs ORDER BY 1"),
                [],
                |r| r.get(0),
            )
        };
        Ok(Facets {
            plugins: distinct("plugin_name")?,
            models: distinct("model_name")?,
            devices: distinct("device")?,
            statuses: distinct("status")?,
        })
    }

    /// The number of runs stored.
    pub fn count_runs(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The most recent run's id, if any.
    pub fn latest_run(&self) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT max(id) FROM runs", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    pub fn run(&self, id: i64) -> Result<RunDetail> {
        let summary = self.list_runs_by_id(id)?.ok_or(Error::NoSuchRun(id))?;
        let parse = |s: String| serde_json::from_str::<Value>(&s).unwrap_or(Value::Null);
        let (verdict_summary, plugin_blake3, plugin_wit, params, model, model_path, model_config_hash, host_commit, mlx_version, machine) = self
            .conn
            .query_row(
                "SELECT verdict_summary, plugin_blake3, plugin_wit, params_json, model_json, model_path,
                 model_config_hash, host_commit, mlx_version, machine_json FROM runs WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, String>(9)?,
                    ))
                },
            )
            .map_err(|e| self.err(e))?;
        let mut run = RunDetail {
            summary,
            verdict_summary,
            plugin_blake3,
            plugin_wit,
            params: parse(params),
            model: parse(model),
            model_path,
            model_config_hash,
            host_commit,
            mlx_version,
            machine: parse(machine),
            requests: self.requests(id)?,
            metrics: self.metrics(id)?,
            tables: self.tables(id)?,
            notes: self.notes(id)?,
            samples: self.samples(id)?,
            logs: self.logs(id)?,
            resolution_table: None,
        };
        run.resolution_table = crate::report::resolution_table(&run);
        Ok(run)
    }

    fn list_runs_by_id(&self, id: i64) -> Result<Option<RunSummary>> {
        self.conn
            .query_row(
                &format!("SELECT {RUN_SUMMARY_COLUMNS} FROM runs r WHERE r.id = ?1"),
                [id],
                run_summary,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn requests(&self, run: i64) -> Result<Vec<StoredRequest>> {
        self.rows(
            "SELECT id, seq, label, warmup, started_at, images_json, max_tokens, ignore_eos, sampling_json,
             prompt_tokens, image_tokens, text_tokens, output_tokens, finish_reason, preprocess_ms, vision_ms,
             prefill_ms, ttft_ms, decode_ms, total_ms, token_times_json, cache_prefix, cache_reused_tokens,
             vision_hits, vision_misses, vision_skipped, peak_memory_bytes, output_preview, speed_tok_s,
             decode_tok_s, itl_p50_ms, itl_p90_ms, itl_p99_ms, remote, error, error_kind, chunk_tokens_json,
             sent_at_ms, late_ms, queued_ms
             FROM requests WHERE run_id = ?1 ORDER BY seq",
            [run],
            |r| {
                let images: String = r.get(5)?;
                let sampling: String = r.get(8)?;
                let times: String = r.get(20)?;
                let chunks: Option<String> = r.get(36)?;
                Ok(StoredRequest {
                    id: r.get(0)?,
                    seq: r.get(1)?,
                    row: RequestRow {
                        label: r.get(2)?,
                        warmup: r.get(3)?,
                        started_at: r.get(4)?,
                        images: serde_json::from_str(&images).unwrap_or_default(),
                        max_tokens: r.get(6)?,
                        ignore_eos: r.get(7)?,
                        sampling: serde_json::from_str(&sampling).unwrap_or(Value::Null),
                        prompt_tokens: r.get(9)?,
                        image_tokens: r.get(10)?,
                        text_tokens: r.get(11)?,
                        output_tokens: r.get(12)?,
                        finish_reason: r.get(13)?,
                        preprocess_ms: r.get(14)?,
                        vision_ms: r.get(15)?,
                        prefill_ms: r.get(16)?,
                        ttft_ms: r.get(17)?,
                        decode_ms: r.get(18)?,
                        total_ms: r.get(19)?,
                        token_times_ms: serde_json::from_str(&times).unwrap_or_default(),
                        cache_prefix: r.get(21)?,
                        cache_reused_tokens: r.get(22)?,
                        vision_hits: r.get(23)?,
                        vision_misses: r.get(24)?,
                        vision_skipped: r.get(25)?,
                        peak_memory_bytes: r.get::<_, i64>(26)? as u64,
                        output_preview: r.get(27)?,
                        remote: r.get(33)?,
                        error: r.get(34)?,
                        error_kind: r.get(35)?,
                        chunk_tokens: chunks
                            .and_then(|c| serde_json::from_str(&c).ok())
                            .unwrap_or_default(),
                        sent_at_ms: r.get(37)?,
                        late_ms: r.get(38)?,
                        queued_ms: r.get(39)?,
                    },
                    speed_tok_s: r.get(28)?,
                    decode_tok_s: r.get(29)?,
                    itl_p50_ms: r.get(30)?,
                    itl_p90_ms: r.get(31)?,
                    itl_p99_ms: r.get(32)?,
                })
            },
        )
    }

    pub fn samples(&self, run: i64) -> Result<Vec<Sample>> {
        self.rows(
            "SELECT t_ms, name, value FROM samples WHERE run_id = ?1 ORDER BY t_ms, id",
            [run],
            |r| {
                Ok(Sample {
                    t_ms: r.get(0)?,
                    name: r.get(1)?,
                    value: r.get(2)?,
                })
            },
        )
    }

    pub fn metrics(&self, run: i64) -> Result<Vec<Metric>> {
        self.rows(
            "SELECT name, value, unit FROM metrics WHERE run_id = ?1 ORDER BY id",
            [run],
            |r| {
                Ok(Metric {
                    name: r.get(0)?,
                    value: stored_metric(r.get_ref(1)?),
                    unit: r.get(2)?,
                })
            },
        )
    }

    pub fn tables(&self, run: i64) -> Result<Vec<ResultTable>> {
        self.rows(
            "SELECT name, columns_json, rows_json FROM result_tables WHERE run_id = ?1 ORDER BY id",
            [run],
            |r| {
                let (c, rows): (String, String) = (r.get(1)?, r.get(2)?);
                Ok(ResultTable {
                    name: r.get(0)?,
                    columns: serde_json::from_str(&c).unwrap_or_default(),
                    rows: serde_json::from_str(&rows).unwrap_or_default(),
                })
            },
        )
    }

    pub fn notes(&self, run: i64) -> Result<Vec<String>> {
        self.rows(
            "SELECT text FROM notes WHERE run_id = ?1 ORDER BY id",
            [run],
            |r| r.get(0),
        )
    }

    pub fn logs(&self, run: i64) -> Result<Vec<LogLine>> {
        self.rows(
            "SELECT at, level, message FROM logs WHERE run_id = ?1 ORDER BY id",
            [run],
            |r| {
                Ok(LogLine {
                    at: r.get(0)?,
                    level: r.get(1)?,
                    message: r.get(2)?,
                })
            },
        )
    }
}

/// A metric's value as [`crate::writes`] stored it: a number, or the name
/// of a value that is not finite.
fn stored_metric(v: rusqlite::types::ValueRef<'_>) -> f64 {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Real(f) => f,
        ValueRef::Integer(i) => i as f64,
        ValueRef::Text(t) => match t {
            b"inf" => f64::INFINITY,
            b"-inf" => f64::NEG_INFINITY,
            _ => f64::NAN,
        },
        ValueRef::Null | ValueRef::Blob(_) => f64::NAN,
    }
}
