//! Versioned migrations. Each entry upgrades the schema by one version, inside
//! a transaction; `PRAGMA user_version` records where a database stands.

pub const MIGRATIONS: &[&str] = &[
    // 1: runs, requests, and what plugins record.
    r#"
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        error TEXT,
        verdict_passed INTEGER,
        verdict_summary TEXT,
        plugin_name TEXT NOT NULL,
        plugin_version TEXT NOT NULL,
        plugin_blake3 TEXT NOT NULL,
        plugin_wit TEXT NOT NULL,
        params_json TEXT NOT NULL,
        model_name TEXT NOT NULL,
        model_path TEXT NOT NULL,
        model_config_hash TEXT NOT NULL,
        model_quantization TEXT NOT NULL,
        model_synthetic INTEGER NOT NULL,
        model_json TEXT NOT NULL,
        host_version TEXT NOT NULL,
        host_commit TEXT NOT NULL,
        mlx_version TEXT NOT NULL,
        backend TEXT NOT NULL,
        device TEXT NOT NULL,
        machine_json TEXT NOT NULL,
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL
    );
    CREATE INDEX runs_started ON runs(started_at);
    CREATE INDEX runs_plugin ON runs(plugin_name);
    CREATE INDEX runs_status ON runs(status);

    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        label TEXT NOT NULL,
        warmup INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        images_json TEXT NOT NULL,
        image_width INTEGER,
        image_height INTEGER,
        image_pixels INTEGER,
        max_tokens INTEGER NOT NULL,
        ignore_eos INTEGER NOT NULL,
        sampling_json TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        image_tokens INTEGER NOT NULL,
        text_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        finish_reason TEXT NOT NULL,
        preprocess_ms REAL NOT NULL,
        vision_ms REAL NOT NULL,
        prefill_ms REAL NOT NULL,
        ttft_ms REAL NOT NULL,
        decode_ms REAL NOT NULL,
        total_ms REAL NOT NULL,
        speed_tok_s REAL NOT NULL,
        decode_tok_s REAL,
        itl_p50_ms REAL,
        itl_p90_ms REAL,
        itl_p99_ms REAL,
        token_times_json TEXT NOT NULL,
        cache_prefix TEXT NOT NULL,
        cache_reused_tokens INTEGER NOT NULL,
        vision_hits INTEGER NOT NULL,
        vision_misses INTEGER NOT NULL,
        vision_skipped INTEGER NOT NULL,
        peak_memory_bytes INTEGER NOT NULL,
        output_preview TEXT NOT NULL
    );
    CREATE INDEX requests_run ON requests(run_id, seq);

    CREATE TABLE metrics (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL
    );
    CREATE INDEX metrics_run ON metrics(run_id);

    CREATE TABLE result_tables (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        columns_json TEXT NOT NULL,
        rows_json TEXT NOT NULL
    );
    CREATE INDEX result_tables_run ON result_tables(run_id);

    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        text TEXT NOT NULL
    );
    CREATE INDEX notes_run ON notes(run_id);

    CREATE TABLE logs (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX logs_run ON logs(run_id);
    "#,
    // 2: the owner's start time (a pid alone can be reused), and what each
    // run's plugin has stored against its budget.
    r#"
    ALTER TABLE runs ADD COLUMN pid_start TEXT;
    ALTER TABLE runs ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN dropped_writes INTEGER NOT NULL DEFAULT 0;
    "#,
    // 3: requests sent to a server (what it could not report is unknown),
    // requests that failed (with their kind), tokens that arrived in chunks,
    // when each request was sent on the run clock and how late against its
    // schedule; and the server a run measured.
    r#"
    ALTER TABLE requests ADD COLUMN remote INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN error TEXT;
    ALTER TABLE requests ADD COLUMN error_kind TEXT;
    ALTER TABLE requests ADD COLUMN chunk_tokens_json TEXT;
    ALTER TABLE requests ADD COLUMN sent_at_ms REAL;
    ALTER TABLE requests ADD COLUMN late_ms REAL;
    ALTER TABLE requests ADD COLUMN queued_ms REAL;
    ALTER TABLE runs ADD COLUMN endpoint_json TEXT;
    "#,
    // 4: what the host sampled while a run ran (its memory, the backend's,
    // and the GPUs'), one row per series and time.
    r#"
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        t_ms REAL NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX samples_run ON samples(run_id, t_ms);
    "#,
];
