//! `host plugins list` and `host plugins inspect`.

use anyhow::Result;
use runtime::PluginRuntime;
use runtime::bindings::wit_types::ParamKind;

use crate::cli::PluginsCommand;
use crate::runner::plugins;
use crate::settings::Paths;

pub fn run(paths: &Paths, cmd: PluginsCommand) -> Result<()> {
    let rt = PluginRuntime::new(Some(paths.plugin_cache_dir()))?;
    match cmd {
        PluginsCommand::List => {
            println!(
                "{:<26} {:<8} {:<10} description",
                "plugin", "version", "where"
            );
            for (name, bytes, place) in plugins::all(paths) {
                match rt
                    .load(&name, &bytes)
                    .and_then(|p| rt.describe(&p, runtime::Services::unavailable()))
                {
                    Ok(info) => println!(
                        "{name:<26} {:<8} {place:<10} {}",
                        info.version, info.description
                    ),
                    Err(e) => println!("{name:<26} {:<8} {place:<10} unusable: {e}", "?"),
                }
            }
            println!("\nUser plugins go in {}", paths.plugins_dir().display());
        }
        PluginsCommand::Inspect { plugin, json } => {
            let (name, bytes) = plugins::find(paths, &plugin)?;
            let p = rt.load(&name, &bytes)?;
            let info = rt.describe(&p, runtime::Services::unavailable())?;
            let meta = p.meta();
            if json {
                let params: Vec<serde_json::Value> = info
                    .params
                    .iter()
                    .map(|s| serde_json::json!({"name": s.name, "kind": kind(s.kind), "default": s.default_value, "help": s.help}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "name": info.name, "version": info.version, "description": info.description,
                        "file": meta.name, "blake3": meta.blake3, "bytes": meta.bytes, "wit": meta.wit,
                        "imports": meta.imports, "params": params,
                    }))?
                );
                return Ok(());
            }
            println!("{} {}: {}", info.name, info.version, info.description);
            println!(
                "file     {} ({} bytes, blake3 {})",
                meta.name, meta.bytes, meta.blake3
            );
            println!(
                "built for {} (this host: {}@{})",
                meta.wit,
                runtime::WIT_PACKAGE,
                runtime::WIT_VERSION
            );
            println!("imports  {}", meta.imports.join(", "));
            println!("\nparameters (host run --set NAME=VALUE):");
            for s in &info.params {
                println!(
                    "  {:<16} {:<8} default {:<24} {}",
                    s.name,
                    kind(s.kind),
                    format!("{:?}", s.default_value),
                    s.help
                );
            }
        }
    }
    Ok(())
}

fn kind(k: ParamKind) -> &'static str {
    match k {
        ParamKind::Boolean => "bool",
        ParamKind::Integer => "int",
        ParamKind::Float => "float",
        ParamKind::Text => "text",
    }
}
