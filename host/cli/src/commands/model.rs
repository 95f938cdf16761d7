//! `host model synth` and `host model resolve`.

use anyhow::{Context, Result, bail};
use engine::synth::{Arch, Layout, Quant, SynthOptions, synthesize};

use crate::cli::{ModelCommand, SynthArgs};
use crate::model_resolve;
use crate::settings::Settings;

pub fn run(settings: &Settings, cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Synth(args) => synth(args),
        ModelCommand::Download {
            id,
            revision,
            endpoint,
        } => {
            let cache = &settings.hf_cache;
            let dir = crate::model_download::download(cache, &id, &revision, endpoint.as_deref())?;
            println!("{}", dir.display());
            Ok(())
        }
        ModelCommand::Resolve { model } => {
            let dir = model_resolve::resolve_args(settings, &model, false)?;
            println!("{}", dir.display());
            Ok(())
        }
    }
}

fn synth(args: SynthArgs) -> Result<()> {
    let arch = Arch::parse(&args.arch).with_context(|| {
        format!("unknown --arch {:?}; use one of qwen3-vl-tiny, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b, qwen3-vl-32b", args.arch)
    })?;
    let quant = Quant::parse(&args.quant).with_context(|| {
        format!(
            "unknown --quant {:?}; {}",
            args.quant,
            crate::model_resolve::QUANT_HELP
        )
    })?;
    let mut opts = SynthOptions::new(arch, quant, args.seed);
    opts.shard_bytes = args.shard_mb.max(1) << 20;
    opts.layout = match args.layout.as_deref() {
        None => None,
        Some("hf") => Some(Layout::HuggingFace),
        Some("mlx") => Some(Layout::Mlx),
        Some(other) => bail!("unknown --layout {other:?}; use hf or mlx"),
    };
    eprintln!(
        "writing {} ({} weights, {:?} layout, seed {}) to {}",
        arch.name(),
        quant.name(),
        opts.layout(),
        args.seed,
        args.out.display()
    );
    let summary = synthesize(&opts, &args.out, &mut |msg, frac| {
        eprintln!("  {msg} ({:.0}%)", frac * 100.0)
    })?;
    println!(
        "{}: {} parameters, {:.2} GB in {} file(s), {:.1} s",
        summary.dir.display(),
        summary.parameters,
        summary.bytes as f64 / 1e9,
        summary.files.len(),
        summary.seconds
    );
    Ok(())
}
