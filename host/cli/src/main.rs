//! `host`: the command line of the VLM benchmark platform.

mod cli;
mod commands;
mod model_download;
mod model_resolve;
mod printable;
mod runner;
mod settings;
mod version;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = mlx::check_runtime_version() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let settings = match settings::Settings::read(|name| std::env::var_os(name)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    if let Some(dir) = &settings.cuda_toolkit {
        mlx::cuda::set_toolkit_dir(dir);
    }
    let s = &settings;
    let result = match cli.command {
        cli::Command::Doctor => commands::doctor::run(s).map(|_| 0),
        cli::Command::Generate(args) => commands::generate::run(s, args).map(|_| 0),
        cli::Command::Model(cmd) => commands::model::run(s, cmd).map(|_| 0),
        cli::Command::Run(args) => commands::run::run(s, args),
        cli::Command::Plugins(cmd) => commands::plugins::run(&s.paths, cmd).map(|_| 0),
        cli::Command::Results(cmd) => commands::results::run(&s.paths, cmd).map(|_| 0),
        cli::Command::Serve(args) => commands::serve::run(s, args).map(|_| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
