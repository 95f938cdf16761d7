//! `host`: the command line of the VLM benchmark platform.

mod cli;
mod commands;
mod model_resolve;
mod paths;
mod version;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = mlx::check_runtime_version() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let result = match cli.command {
        cli::Command::Doctor => commands::doctor::run(),
        cli::Command::Generate(args) => commands::generate::run(args),
        cli::Command::Model(cmd) => commands::model::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
