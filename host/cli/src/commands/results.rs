//! `host results list|show|export|compare`.

use anyhow::{Context, Result, bail};
use store::{RunFilter, Store};

use crate::cli::ResultsCommand;
use crate::printable::{for_stdout, printable};
use crate::settings::Paths;

fn run_id(store: &Store, spec: &str) -> Result<i64> {
    if spec == "latest" {
        return store.latest_run()?.context("the database has no runs yet");
    }
    spec.parse::<i64>()
        .with_context(|| format!("{spec:?} is not a run id (a number, or `latest`)"))
}

pub fn run(paths: &Paths, cmd: ResultsCommand) -> Result<()> {
    match cmd {
        ResultsCommand::List {
            db,
            plugin,
            model,
            device,
            limit,
        } => {
            let store = Store::open(&db.path(paths))?;
            let runs = store.list_runs(&RunFilter {
                plugin,
                model,
                device,
                limit: Some(limit),
                ..Default::default()
            })?;
            if runs.is_empty() {
                println!("no runs in {}", store.path().display());
                return Ok(());
            }
            println!(
                "{:>5}  {:<20} {:<11} {:<20} {:<26} {:<10} {:>5}",
                "run", "started", "status", "plugin", "model", "device", "reqs"
            );
            for r in runs {
                let model = format!(
                    "{}{}",
                    r.model_name,
                    if r.model_synthetic { " (synth)" } else { "" }
                );
                let status = match r.verdict_passed {
                    Some(true) => format!("{} ✓", r.status),
                    Some(false) => format!("{} ✗", r.status),
                    None => r.status.clone(),
                };
                let line = format!(
                    "{:>5}  {:<20} {:<11} {:<20} {:<26} {:<10} {:>5}",
                    r.id,
                    &r.started_at[..19.min(r.started_at.len())],
                    status,
                    r.plugin_name,
                    model,
                    r.device.chars().take(10).collect::<String>(),
                    r.requests
                );
                println!("{}", printable(&line));
            }
        }
        ResultsCommand::Show { run, db } => {
            let store = Store::open(&db.path(paths))?;
            let id = run_id(&store, &run)?;
            print!("{}", printable(&store::export_markdown(&store.run(id)?)));
        }
        ResultsCommand::Export { run, format, db } => {
            let store = Store::open(&db.path(paths))?;
            let detail = store.run(run_id(&store, &run)?)?;
            match format.as_str() {
                "md" | "markdown" => print!("{}", for_stdout(&store::export_markdown(&detail))),
                "csv" => print!("{}", for_stdout(&store::export_csv(&detail))),
                "json" => println!("{}", store::export_json(&detail)),
                other => bail!("unknown --format {other:?}; use md, csv or json"),
            }
        }
        ResultsCommand::Compare { runs, db } => {
            let store = Store::open(&db.path(paths))?;
            let details = runs
                .iter()
                .map(|r| store.run(run_id(&store, r)?).map_err(anyhow::Error::from))
                .collect::<Result<Vec<_>>>()?;
            for d in &details {
                let s = &d.summary;
                let line = format!(
                    "run {}: {} {} on {}, {}, {}",
                    s.id,
                    s.plugin_name,
                    s.plugin_version,
                    s.model_text(),
                    s.engine_text(),
                    s.started_at
                );
                println!("{}", printable(&line));
            }
            println!();
            print!(
                "{}",
                printable(&store::compare_runs(&details).to_markdown())
            );
        }
    }
    Ok(())
}
