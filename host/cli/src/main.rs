//! `host`: the command line of the VLM benchmark platform.

mod cli;
mod commands;
mod model_resolve;
mod paths;
mod runner;
mod version;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = mlx::check_runtime_version() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let result = match cli.command {
        cli::Command::Doctor => commands::doctor::run().map(|_| 0),
        cli::Command::Generate(args) => commands::generate::run(args).map(|_| 0),
        cli::Command::Model(cmd) => commands::model::run(cmd).map(|_| 0),
        cli::Command::Run(args) => commands::run::run(args),
        cli::Command::Plugins(cmd) => commands::plugins::run(cmd).map(|_| 0),
        cli::Command::Results(cmd) => commands::results::run(cmd).map(|_| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
