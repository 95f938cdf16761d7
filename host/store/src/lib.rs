//! The results store. One SQLite file (WAL mode) holds every run, every
//! request with its raw timings, and what plugins recorded; each write is a
//! transaction, so a crash never leaves half a row. A run that a crash left
//! `running` is marked `interrupted` the next time the store is opened.

mod report;
mod schema;
mod time;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use report::{
    ComparedFigure, Comparison, compare_runs, export_csv, export_json, export_markdown, md_table,
    seed_tables,
};
pub use time::{format_unix_ms, now_rfc3339};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("results database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("results database {path}: {message}")]
    Other { path: PathBuf, message: String },
    #[error("no run {0} in the results database")]
    NoSuchRun(i64),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Another connection holds a lock SQLite would not wait for (it skips
    /// the busy handler where waiting could deadlock, and while a new
    /// database is switched to WAL).
    fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Sqlite {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            } if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// A run's status. `running` until the runner finishes it.
pub const STATUSES: [&str; 6] = [
    "running",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
    "interrupted",
];

/// What produced a run (written once, at its start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRun {
    pub plugin_name: String,
    pub plugin_version: String,
    pub plugin_blake3: String,
    pub plugin_wit: String,
    pub params: Value,
    pub model_name: String,
    pub model_path: String,
    pub model_config_hash: String,
    pub model_quantization: String,
    pub model_synthetic: bool,
    pub model: Value,
    pub host_version: String,
    pub host_commit: String,
    pub mlx_version: String,
    pub backend: String,
    pub device: String,
    pub machine: Value,
}

/// An image of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageDesc {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub blake3: String,
}

/// One generate call, as measured by the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestRow {
    pub label: String,
    pub warmup: bool,
    pub started_at: String,
    pub images: Vec<ImageDesc>,
    pub max_tokens: u32,
    pub ignore_eos: bool,
    pub sampling: Value,
    pub prompt_tokens: u32,
    pub image_tokens: u32,
    pub text_tokens: u32,
    pub output_tokens: u32,
    pub finish_reason: String,
    pub preprocess_ms: f64,
    pub vision_ms: f64,
    pub prefill_ms: f64,
    pub ttft_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
    /// When each token reached the host, since the request started.
    pub token_times_ms: Vec<f64>,
    pub cache_prefix: String,
    pub cache_reused_tokens: u32,
    pub vision_hits: u32,
    pub vision_misses: u32,
    pub vision_skipped: u32,
    pub peak_memory_bytes: u64,
    pub output_preview: String,
}

/// A stored request with its derived figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredRequest {
    pub id: i64,
    pub seq: i64,
    #[serde(flatten)]
    pub row: RequestRow,
    /// The seed's "Speed": output tokens over the whole request time.
    pub speed_tok_s: f64,
    /// Tokens after the first over the time they took.
    pub decode_tok_s: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p90_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub id: i64,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub verdict_passed: Option<bool>,
    pub plugin_name: String,
    pub plugin_version: String,
    pub model_name: String,
    pub model_quantization: String,
    pub model_synthetic: bool,
    pub backend: String,
    pub device: String,
    pub host_version: String,
    pub requests: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultTable {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub at: String,
    pub level: String,
    pub message: String,
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDetail {
    pub summary: RunSummary,
    pub verdict_summary: Option<String>,
    pub plugin_blake3: String,
    pub plugin_wit: String,
    pub params: Value,
    pub model: Value,
    pub model_path: String,
    pub model_config_hash: String,
    pub host_commit: String,
    pub mlx_version: String,
    pub machine: Value,
    pub requests: Vec<StoredRequest>,
    pub metrics: Vec<Metric>,
    pub tables: Vec<ResultTable>,
    pub notes: Vec<String>,
    pub logs: Vec<LogLine>,
}

/// The values present, for filter menus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Facets {
    pub plugins: Vec<String>,
    pub models: Vec<String>,
    pub devices: Vec<String>,
    pub statuses: Vec<String>,
}

/// Filters for listing runs (all optional, combined with AND).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunFilter {
    pub plugin: Option<String>,
    pub model: Option<String>,
    pub device: Option<String>,
    pub status: Option<String>,
    /// Runs started at or after this RFC 3339 prefix (e.g. `2026-11-26`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// A run is considered abandoned when its heartbeat is this old.
const STALE_HEARTBEAT_MS: i64 = 120_000;

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The columns [`run_summary`] reads, of `runs r`.
const RUN_SUMMARY_COLUMNS: &str =
    "r.id, r.status, r.started_at, r.ended_at, r.error, r.verdict_passed, r.plugin_name,
     r.plugin_version, r.model_name, r.model_quantization, r.model_synthetic, r.backend, r.device,
     r.host_version, (SELECT count(*) FROM requests q WHERE q.run_id = r.id)";

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
    })
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

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
    /// Opens (creating if needed) and migrates the database, and marks runs
    /// left `running` by a crashed host as `interrupted`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::Other {
                path: path.into(),
                message: format!("cannot create its folder: {e}"),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| Error::Sqlite {
            path: path.into(),
            source: e,
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        // Retried while another process sets the same new database up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match store.configure().and_then(|()| store.migrate()) {
                Err(e) if e.is_busy() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                result => break result?,
            }
        }
        store.recover_interrupted()?;
        Ok(store)
    }

    /// Opens an existing database for reading only (the web server).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            // A fresh install has no database yet: create an empty one.
            drop(Store::open(path)?);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::Sqlite {
            path: path.into(),
            source: e,
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            source: e,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every row `sql` selects with `params`, each made by `row`.
    fn rows<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params, row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    fn configure(&self) -> Result<()> {
        // The timeout first: switching a new database to WAL waits for locks.
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| self.err(e))?;
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(|e| self.err(e))
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Applies the migrations this database lacks, one per transaction. Each
    /// transaction takes the write lock before reading the version, so
    /// processes opening a new database at the same moment (`host run` and
    /// `host serve`) migrate it once between them.
    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let sqlite = |e| Error::Sqlite {
            path: path.clone(),
            source: e,
        };
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite)?;
            let current: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(sqlite)?;
            let current = current as usize;
            if current > schema::MIGRATIONS.len() {
                return Err(Error::Other {
                    path: path.clone(),
                    message: format!(
                        "schema version {current} is newer than this host knows ({}); use a newer host",
                        schema::MIGRATIONS.len()
                    ),
                });
            }
            let Some(sql) = schema::MIGRATIONS.get(current) else {
                return Ok(());
            };
            tx.execute_batch(sql).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", (current + 1) as i64)
                .map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
    }

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
                percentile(&itl, 0.5),
                percentile(&itl, 0.9),
                percentile(&itl, 0.99),
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
        Ok(RunDetail {
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
            logs: self.logs(id)?,
        })
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
             decode_tok_s, itl_p50_ms, itl_p90_ms, itl_p99_ms
             FROM requests WHERE run_id = ?1 ORDER BY seq",
            [run],
            |r| {
                let images: String = r.get(5)?;
                let sampling: String = r.get(8)?;
                let times: String = r.get(20)?;
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

    pub fn metrics(&self, run: i64) -> Result<Vec<Metric>> {
        self.rows(
            "SELECT name, value, unit FROM metrics WHERE run_id = ?1 ORDER BY id",
            [run],
            |r| {
                Ok(Metric {
                    name: r.get(0)?,
                    value: r.get(1)?,
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

    /// Runs the database's own consistency check; `Ok(())` when sound.
    pub fn integrity_check(&self) -> Result<()> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if r == "ok" {
            Ok(())
        } else {
            Err(Error::Other {
                path: self.path.clone(),
                message: format!("integrity check: {r}"),
            })
        }
    }

    /// Direct access for bulk tools (benchmarks seeding thousands of runs).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}
