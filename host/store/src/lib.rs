//! The results store. One SQLite file (WAL mode) holds every run, every
//! request with its raw timings, and what plugins recorded; each write is a
//! transaction, so a crash never leaves half a row. A run that a crash left
//! `running` is marked `interrupted` the next time the store is opened.
//!
//! `types` holds what the store reads and writes, `writes` how a run is
//! recorded, `queries` how runs are read back, `report` how they are shown;
//! `budget` caps what a plugin can make a run store, `liveness` tells a
//! running run from one whose process died.

mod budget;
mod liveness;
mod queries;
mod report;
mod schema;
mod time;
mod types;
mod writes;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use budget::StorageLimits;
pub use report::{
    ComparedFigure, Comparison, compare_runs, export_csv, export_json, export_markdown,
    resolution_table, resolution_tables,
};
pub use time::{format_unix_ms, now_rfc3339};
pub use types::{
    Error, Facets, ImageDesc, LogLine, Metric, NewRun, RequestRow, Result, ResultTable, RunDetail,
    RunFilter, RunSummary, STATUSES, Sample, StoredRequest,
};
pub use vlmbench_report::markdown_table;

pub struct Store {
    conn: Connection,
    path: PathBuf,
    limits: StorageLimits,
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
            limits: StorageLimits::default(),
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
            limits: StorageLimits::default(),
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

    /// Sets the caps on what each run's plugin can make this store keep.
    pub fn set_limits(&mut self, limits: StorageLimits) {
        self.limits = limits;
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
