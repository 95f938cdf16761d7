//! `host`: the command line of the VLM benchmark platform.

mod cli;
mod commands;
mod model_download;
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
    engine::kernels::set_header_dir(paths::kernel_header_dir());
    let result = match cli.command {
        cli::Command::Doctor => commands::doctor::run().map(|_| 0),
        cli::Command::Generate(args) => commands::generate::run(args).map(|_| 0),
        cli::Command::Model(cmd) => commands::model::run(cmd).map(|_| 0),
        cli::Command::Run(args) => commands::run::run(args),
        cli::Command::Plugins(cmd) => commands::plugins::run(cmd).map(|_| 0),
        cli::Command::Results(cmd) => commands::results::run(cmd).map(|_| 0),
        cli::Command::Bench(cli::BenchCommand::Kernels) => commands::bench::kernels().map(|_| 0),
        cli::Command::Bench(cli::BenchCommand::Decode(args)) => {
            commands::bench_decode::run(args).map(|_| 0)
        }
        cli::Command::Serve { addr, db } => {
            let path = db.path();
            server::serve(addr, path.clone(), |bound| {
                println!(
                    "serving {} at http://{bound}/ (Ctrl-C to stop)",
                    path.display()
                );
            })
            .map(|_| 0)
            .map_err(|e| anyhow::anyhow!("cannot serve on {addr}: {e}"))
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
