//! `lab decode`: greedy decoding paths compared in one process, on the same
//! model and requests, interleaved request by request so that a drifting
//! machine affects them alike.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use engine::image::{Pattern, synth_image};
use engine::{DecodePath, Engine, EngineOptions, GenerateRequest, GenerateResponse};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model directory (`host model synth --arch qwen3-vl-8b --quant 4 --out DIR`
    /// makes one)
    #[arg(long)]
    pub model: PathBuf,
    /// Image sizes, WIDTHxHEIGHT, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "224x224,1024x1024,1920x1080"
    )]
    pub resolutions: Vec<String>,
    /// Output tokens per request (end-of-sequence ignored)
    #[arg(long, default_value_t = 100)]
    pub tokens: usize,
    /// Measured requests per path and resolution, after one warm-up
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Paths, comma-separated: mlx, or steps with any of -graph (CUDA graphs),
    /// -nopdl (no programmatic dependent launch), -splits (the split
    /// attention, not the cluster one), -cN (clusters of N blocks; sized by
    /// the caches without), -cNv (the same, values after the scores), -cNqS
    /// (S clusters a key/value head): e.g. steps-graph, steps-graph-splits,
    /// steps-graph-c16v
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mlx,steps,steps-nopdl,steps-graph"
    )]
    pub paths: Vec<String>,
}

/// A warning when the options' decoding path is not the default: the
/// variables that choose it do not apply here, where each path runs as
/// `--paths` names it (a measurement that set one would otherwise compare
/// the default with itself).
fn ignored_path(options: &EngineOptions) -> Option<String> {
    (options.tuning.decode != DecodePath::default()).then(|| {
        format!(
            "warning: the decoding variables ask for {}, but `lab decode` runs the paths of \
             --paths as they are named and ignores them",
            options.tuning.decode
        )
    })
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once('x')
        .with_context(|| format!("resolution {s:?} is not WIDTHxHEIGHT"))?;
    Ok((
        w.parse().with_context(|| format!("width in {s:?}"))?,
        h.parse().with_context(|| format!("height in {s:?}"))?,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    vlmbench_report::percentile(&v, 0.5)
}

/// How many leading tokens two responses share.
fn common_prefix(a: &GenerateResponse, b: &GenerateResponse) -> usize {
    a.token_ids
        .iter()
        .zip(&b.token_ids)
        .take_while(|(x, y)| x == y)
        .count()
}

pub fn run(args: Args, opts: EngineOptions) -> Result<()> {
    let paths = args
        .paths
        .iter()
        .map(|p| Ok((p.as_str(), DecodePath::parse(p).map_err(|e| anyhow!(e))?)))
        .collect::<Result<Vec<_>>>()?;
    let sizes = args
        .resolutions
        .iter()
        .map(|s| parse_size(s))
        .collect::<Result<Vec<_>>>()?;
    if paths.is_empty() || sizes.is_empty() || args.tokens < 2 {
        bail!("need at least one path, one resolution and 2 tokens");
    }
    if let Some(warning) = ignored_path(&opts) {
        eprintln!("{warning}");
    }
    let dir = &args.model;
    let mut engine = Engine::load(dir, opts)
        .with_context(|| format!("loading the model in {}", dir.display()))?;
    println!(
        "{}: {} tokens, 1 warm-up + {} measured requests per path and resolution",
        engine.info().name,
        args.tokens,
        args.repeats
    );
    if !mlx::cuda::available() {
        println!("note: no CUDA here, so every steps path runs on MLX's graph");
    }
    println!(
        "\n| resolution | path | decode tok/s | ITL p50 ms | TTFT ms | tokens as {} |",
        paths[0].0
    );
    println!("|---|---|---|---|---|---|");
    for &(w, h) in &sizes {
        let img = Arc::new(synth_image(w, h, Pattern::Noise, 7)?);
        let mut req = GenerateRequest::simple("Describe this image.", vec![img], args.tokens);
        req.ignore_eos = true;
        // Per path: decode tok/s, ITL p50 and TTFT of each measured request.
        let mut stats: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); paths.len()];
        let mut first: Vec<Option<GenerateResponse>> = vec![None; paths.len()];
        for round in 0..=args.repeats {
            for (i, (name, path)) in paths.iter().enumerate() {
                engine.set_decode_path(*path);
                let resp = engine
                    .generate(&req, &mut |_| {})
                    .with_context(|| format!("{w}x{h} on {name}"))?;
                if round == 0 {
                    first[i] = Some(resp);
                    continue;
                }
                let t = &resp.timings;
                stats[i].0.push(t.decode_tok_s().unwrap_or(f64::NAN));
                stats[i].1.push(median(t.inter_token_s()) * 1e3);
                stats[i].2.push(t.ttft_s * 1e3);
            }
        }
        let reference = first[0].as_ref().expect("warm-up ran");
        // A digest of the tokens, to compare builds run in separate processes
        // (`DefaultHasher::new` has fixed keys).
        let mut digest = std::hash::DefaultHasher::new();
        reference.token_ids.hash(&mut digest);
        eprintln!(
            "{w}x{h}: {}'s tokens digest {:016x}",
            paths[0].0,
            digest.finish()
        );
        for (i, (name, _)) in paths.iter().enumerate() {
            let resp = first[i].as_ref().expect("warm-up ran");
            let (d, itl, ttft) = &stats[i];
            println!(
                "| {w}x{h} | {name} | {:.1} | {:.2} | {:.1} | {}/{} |",
                median(d.clone()),
                median(itl.clone()),
                median(ttft.clone()),
                common_prefix(reference, resp),
                reference.token_ids.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoding_path_from_the_variables_is_named_as_ignored() {
        let mut opts = EngineOptions::default();
        assert_eq!(ignored_path(&opts), None);
        opts.tuning.decode = DecodePath::parse("steps-graph-nopdl").unwrap();
        let warning = ignored_path(&opts).unwrap();
        assert!(warning.contains("steps-graph-nopdl") && warning.contains("--paths"));
    }

    #[test]
    fn sizes_parse_or_say_why_not() {
        assert_eq!(parse_size("1920x1080").unwrap(), (1920, 1080));
        assert!(parse_size("1920").is_err());
        assert!(parse_size("axb").is_err());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
