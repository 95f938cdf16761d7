//! Reports over stored runs: the resolution table (`vlmbench_report`, one
//! formatter for the page, the exports and the plugins), CSV and JSON
//! exports, and comparisons of runs that say whether a difference is larger
//! than the runs' own noise.

use serde::Serialize;
use vlmbench_report::{Measured, ResolutionTable, markdown_table};

use crate::{ResultTable, RunDetail, StoredRequest};

/// Non-warm-up requests grouped by label, in order of first appearance.
fn by_label(requests: &[StoredRequest]) -> Vec<(String, Vec<&StoredRequest>)> {
    let mut groups: Vec<(String, Vec<&StoredRequest>)> = vec![];
    for r in requests.iter().filter(|r| r.row.counts()) {
        match groups.iter_mut().find(|(l, _)| *l == r.row.label) {
            Some((_, v)) => v.push(r),
            None => groups.push((r.row.label.clone(), vec![r])),
        }
    }
    groups
}

/// A run's measured requests as the resolution table reads them.
fn measured(run: &RunDetail) -> Vec<Measured> {
    run.requests
        .iter()
        .filter(|r| r.row.counts())
        .map(|r| Measured {
            label: r.row.label.clone(),
            pixels: r
                .row
                .images
                .first()
                .map_or(0, |i| i.width as u64 * i.height as u64),
            seconds: r.row.total_ms / 1e3,
            output_tokens: r.row.output_tokens as u64,
        })
        .collect()
}

/// The vllm-mlx image benchmark's table of a run's measured requests
/// (Resolution, Pixels, Time, Tokens, Speed; labels that are not sizes make
/// a Request column), as a table the page and exports show.
pub fn resolution_table(run: &RunDetail) -> Option<ResultTable> {
    let t = ResolutionTable::of(measured(run))?;
    Some(ResultTable {
        name: "Results".into(),
        columns: t.columns(),
        rows: t.cells(),
    })
}

/// The resolution table, its summary and the aggregate, as markdown.
pub fn resolution_tables(run: &RunDetail) -> String {
    match ResolutionTable::of(measured(run)) {
        Some(t) => t.to_markdown(),
        None => "No measured requests (warm-ups are not counted).\n".into(),
    }
}

/// The whole run as markdown: identity, the resolution table, then what the
/// plugin recorded.
pub fn export_markdown(run: &RunDetail) -> String {
    let s = &run.summary;
    let mut out = format!("# Run {}: {} {}\n\n", s.id, s.plugin_name, s.plugin_version);
    out.push_str(&format!(
        "- status: {}{}\n- started: {}{}\n- model: {}\n- engine: {}, host {} ({})\n- params: {}\n",
        s.status,
        s.error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        s.started_at,
        s.ended_at
            .as_ref()
            .map(|e| format!(", ended {e}"))
            .unwrap_or_default(),
        s.model_text(),
        if s.endpoint.is_some() {
            s.engine_text()
        } else {
            format!("MLX {} on {} ({})", run.mlx_version, s.backend, s.device)
        },
        s.host_version,
        run.host_commit,
        run.params
    ));
    if let Some(passed) = s.verdict_passed {
        out.push_str(&format!(
            "- verdict: {} {}\n",
            if passed { "PASS" } else { "FAIL" },
            run.verdict_summary.clone().unwrap_or_default()
        ));
    }
    out.push_str("\n## Results\n\n");
    out.push_str(&resolution_tables(run));
    for t in &run.tables {
        out.push_str(&format!(
            "\n## {}\n\n{}",
            t.name,
            markdown_table(&t.columns, &t.rows)
        ));
    }
    if !run.metrics.is_empty() {
        out.push_str("\n## Metrics\n\n| Metric | Value | Unit |\n|---|---|---|\n");
        for m in &run.metrics {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                m.name,
                fmt_num(m.value),
                m.unit
            ));
        }
    }
    if !run.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for n in &run.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV line per request, every measured column.
pub fn export_csv(run: &RunDetail) -> String {
    let cols = [
        "run_id",
        "seq",
        "label",
        "warmup",
        "started_at",
        "image_width",
        "image_height",
        "prompt_tokens",
        "image_tokens",
        "text_tokens",
        "output_tokens",
        "finish_reason",
        "preprocess_ms",
        "vision_ms",
        "prefill_ms",
        "ttft_ms",
        "decode_ms",
        "total_ms",
        "speed_tok_s",
        "decode_tok_s",
        "itl_p50_ms",
        "itl_p90_ms",
        "itl_p99_ms",
        "cache_prefix",
        "cache_reused_tokens",
        "vision_hits",
        "vision_misses",
        "peak_memory_bytes",
        "output_preview",
        "remote",
        "sent_at_ms",
        "late_ms",
        "error_kind",
        "error",
    ];
    let mut out = cols.join(",") + "\n";
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    for q in &run.requests {
        let r = &q.row;
        let img = r.images.first();
        let cells = [
            run.summary.id.to_string(),
            q.seq.to_string(),
            csv_cell(&r.label),
            r.warmup.to_string(),
            r.started_at.clone(),
            img.map(|i| i.width.to_string()).unwrap_or_default(),
            img.map(|i| i.height.to_string()).unwrap_or_default(),
            r.prompt_tokens.to_string(),
            r.image_tokens.to_string(),
            r.text_tokens.to_string(),
            r.output_tokens.to_string(),
            r.finish_reason.clone(),
            format!("{:.4}", r.preprocess_ms),
            format!("{:.4}", r.vision_ms),
            format!("{:.4}", r.prefill_ms),
            format!("{:.4}", r.ttft_ms),
            format!("{:.4}", r.decode_ms),
            format!("{:.4}", r.total_ms),
            format!("{:.4}", q.speed_tok_s),
            opt(q.decode_tok_s),
            opt(q.itl_p50_ms),
            opt(q.itl_p90_ms),
            opt(q.itl_p99_ms),
            r.cache_prefix.clone(),
            r.cache_reused_tokens.to_string(),
            r.vision_hits.to_string(),
            r.vision_misses.to_string(),
            r.peak_memory_bytes.to_string(),
            csv_cell(&r.output_preview),
            r.remote.to_string(),
            opt(r.sent_at_ms),
            opt(r.late_ms),
            r.error_kind.clone().unwrap_or_default(),
            csv_cell(r.error.as_deref().unwrap_or_default()),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

pub fn export_json(run: &RunDetail) -> String {
    serde_json::to_string_pretty(run).expect("run details serialise")
}

/// One figure of one label across runs.
#[derive(Debug, Clone, Serialize)]
pub struct ComparedFigure {
    pub label: String,
    pub figure: String,
    /// Per run: (mean, sample standard deviation, n).
    pub values: Vec<Option<(f64, f64, usize)>>,
    /// Each run's mean over the first run's.
    pub ratios: Vec<Option<f64>>,
    /// Per run after the first: is its difference from the first larger than
    /// the noise (|Δ| > 2·√(s₁²/n₁ + s₂²/n₂))? `None` without repeats.
    pub significant: Vec<Option<bool>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub runs: Vec<i64>,
    pub figures: Vec<ComparedFigure>,
}

fn stats(v: &[f64]) -> Option<(f64, f64, usize)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let m = v.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some((m, sd, n))
}

/// Compares runs label by label on Speed, TTFT and decode speed; the first
/// run is the baseline.
pub fn compare_runs(runs: &[RunDetail]) -> Comparison {
    type Extract = fn(&StoredRequest) -> Option<f64>;
    let figures: [(&str, Extract); 4] = [
        ("speed_tok_s", |r| Some(r.speed_tok_s)),
        ("ttft_ms", |r| Some(r.row.ttft_ms)),
        ("decode_tok_s", |r| r.decode_tok_s),
        ("total_ms", |r| Some(r.row.total_ms)),
    ];
    let mut labels: Vec<String> = vec![];
    for run in runs {
        for (l, _) in by_label(&run.requests) {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
    }
    let mut out = vec![];
    for label in &labels {
        for (name, f) in figures {
            let values: Vec<Option<(f64, f64, usize)>> = runs
                .iter()
                .map(|run| {
                    let v: Vec<f64> = run
                        .requests
                        .iter()
                        .filter(|r| r.row.counts() && &r.row.label == label)
                        .filter_map(f)
                        .collect();
                    stats(&v)
                })
                .collect();
            let base = values[0];
            let ratios = values.iter().map(|v| match (base, *v) {
                (Some((b, _, _)), Some((m, _, _))) if b != 0.0 => Some(m / b),
                _ => None,
            });
            let significant = values.iter().map(|v| match (base, *v) {
                (Some((b, sb, nb)), Some((m, sm, nm))) if nb > 1 && nm > 1 => {
                    let se = (sb * sb / nb as f64 + sm * sm / nm as f64).sqrt();
                    Some((m - b).abs() > 2.0 * se)
                }
                _ => None,
            });
            out.push(ComparedFigure {
                label: label.clone(),
                figure: name.to_string(),
                values: values.clone(),
                ratios: ratios.collect(),
                significant: significant.collect(),
            });
        }
    }
    Comparison {
        runs: runs.iter().map(|r| r.summary.id).collect(),
        figures: out,
    }
}

impl Comparison {
    /// A markdown table: one row per (label, figure), a column per run.
    pub fn to_markdown(&self) -> String {
        let mut cols = vec!["Label".to_string(), "Figure".to_string()];
        for (i, id) in self.runs.iter().enumerate() {
            cols.push(if i == 0 {
                format!("run {id} (base)")
            } else {
                format!("run {id}")
            });
        }
        let mut rows = vec![];
        for f in &self.figures {
            let mut row = vec![f.label.clone(), f.figure.clone()];
            for (i, v) in f.values.iter().enumerate() {
                let cell = match v {
                    None => "–".to_string(),
                    Some((m, sd, n)) => {
                        let mut c = if *n > 1 {
                            format!("{m:.2} ± {sd:.2} (n={n})")
                        } else {
                            format!("{m:.2}")
                        };
                        if i > 0 {
                            if let Some(r) = f.ratios[i] {
                                c.push_str(&format!(", ×{r:.2}"));
                            }
                            c.push_str(match f.significant[i] {
                                Some(true) => ", beyond noise",
                                Some(false) => ", within noise",
                                None => ", noise unknown",
                            });
                        }
                        c
                    }
                };
                row.push(cell);
            }
            rows.push(row);
        }
        markdown_table(&cols, &rows)
    }
}
