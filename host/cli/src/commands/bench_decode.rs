//! `host bench decode`: greedy decoding paths compared in one process, on the
//! same model and requests, interleaved request by request so that a drifting
//! machine affects them alike. Numbers for `bench/gpu/NOTES.md`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use engine::image::{Pattern, synth_image};
use engine::{
    ClusterLayout, DecodePath, Engine, EngineOptions, GenerateRequest, GenerateResponse,
    StepAttention,
};

use crate::cli::BenchDecodeArgs;
use crate::model_resolve;

/// The paths' names in short, for errors and warnings.
const KNOWN: &str = "mlx, or steps with -graph, -nopdl, -splits, -cN, -cNv, -cNqS, -cNvqS: steps-graph, steps-graph-c16v, ...";

/// `mlx`, or `steps` with any of `-graph` (replayed as CUDA graphs),
/// `-nopdl` (launches in strict order), `-splits` (the split attention),
/// `-cN` (the attention in clusters of N blocks; sized by the caches without),
/// `-cNv` (the same with the values brought in after the scores), `-cNqS`
/// and `-cNvqS` (S clusters a key/value head, each for its share of the query
/// heads).
fn parse_path(name: &str) -> Result<DecodePath> {
    if name == "mlx" {
        return Ok(DecodePath::Mlx);
    }
    let rest = name
        .strip_prefix("steps")
        .filter(|r| r.is_empty() || r.starts_with('-'))
        .with_context(|| format!("unknown decode path {name:?} ({KNOWN})"))?;
    let (mut graph, mut pdl, mut attention) = (false, true, StepAttention::Auto);
    for part in rest.split('-').skip(1) {
        let layout = part.strip_prefix('c').and_then(ClusterLayout::parse);
        match (part, layout) {
            ("graph", _) => graph = true,
            ("nopdl", _) => pdl = false,
            ("splits", _) => attention = StepAttention::Split,
            (_, Some(layout)) => attention = StepAttention::Cluster(layout),
            (other, _) => bail!("unknown decode path {name:?}: {other:?} ({KNOWN})"),
        }
    }
    Ok(DecodePath::Steps {
        graph,
        pdl,
        attention,
    })
}

/// Warnings for the variables of [`DecodePath::ENV_VARS`] that `is_set`
/// says are set: they choose how the engine's own decoding runs, and this
/// command runs the paths it is given instead (a measurement that set one
/// would otherwise compare the default with itself).
fn ignored_env(is_set: impl Fn(&str) -> bool) -> Vec<String> {
    DecodePath::ENV_VARS
        .iter()
        .filter(|v| is_set(v))
        .map(|v| {
            format!(
                "warning: {v} is set, but `host bench decode` runs the paths of --paths as they are \
                 named and ignores it ({KNOWN})"
            )
        })
        .collect()
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
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How many leading tokens two responses share.
fn common_prefix(a: &GenerateResponse, b: &GenerateResponse) -> usize {
    a.token_ids
        .iter()
        .zip(&b.token_ids)
        .take_while(|(x, y)| x == y)
        .count()
}

pub fn run(args: BenchDecodeArgs) -> Result<()> {
    let paths = args
        .paths
        .iter()
        .map(|p| Ok((p.as_str(), parse_path(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let sizes = args
        .resolutions
        .iter()
        .map(|s| parse_size(s))
        .collect::<Result<Vec<_>>>()?;
    if paths.is_empty() || sizes.is_empty() || args.tokens < 2 {
        bail!("need at least one path, one resolution and 2 tokens");
    }
    for warning in ignored_env(|v| std::env::var_os(v).is_some()) {
        eprintln!("{warning}");
    }
    let dir = model_resolve::resolve_args(&args.model, false)?;
    let opts = EngineOptions {
        cache_enabled: false,
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&dir, opts)
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
    fn decode_path_variables_are_named_as_ignored() {
        assert!(ignored_env(|_| false).is_empty());
        let set = ["VLM_BENCH_ATTN_CLUSTER", "VLM_BENCH_NO_PDL"];
        let warnings = ignored_env(|v| set.contains(&v));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        for v in set {
            let w = warnings.iter().find(|w| w.contains(v)).expect(v);
            assert!(w.starts_with("warning: ") && w.contains("--paths"), "{w}");
        }
    }

    #[test]
    fn paths_and_sizes_parse_or_say_why_not() {
        assert_eq!(parse_path("mlx").unwrap(), DecodePath::Mlx);
        assert_eq!(
            parse_path("steps-graph").unwrap(),
            DecodePath::Steps {
                graph: true,
                pdl: true,
                attention: StepAttention::Auto
            }
        );
        assert_eq!(
            parse_path("steps-graph-nopdl-splits").unwrap(),
            DecodePath::Steps {
                graph: true,
                pdl: false,
                attention: StepAttention::Split
            }
        );
        assert_eq!(
            parse_path("steps-graph-c16").unwrap(),
            DecodePath::Steps {
                graph: true,
                pdl: true,
                attention: StepAttention::Cluster(ClusterLayout::of(16))
            }
        );
        assert_eq!(
            parse_path("steps-c8v").unwrap(),
            DecodePath::Steps {
                graph: false,
                pdl: true,
                attention: StepAttention::Cluster(ClusterLayout {
                    blocks: 8,
                    late_values: true,
                    query_splits: 1
                })
            }
        );
        assert_eq!(
            parse_path("steps-graph-c16vq2").unwrap(),
            DecodePath::Steps {
                graph: true,
                pdl: true,
                attention: StepAttention::Cluster(ClusterLayout {
                    blocks: 16,
                    late_values: true,
                    query_splits: 2
                })
            }
        );
        // Without late values: stop 30's 16q2 at 1920x1080, as a path.
        assert_eq!(
            parse_path("steps-graph-c16q2").unwrap(),
            DecodePath::Steps {
                graph: true,
                pdl: true,
                attention: StepAttention::Cluster(ClusterLayout {
                    blocks: 16,
                    late_values: false,
                    query_splits: 2
                })
            }
        );
        assert!(parse_path("steps-c8w").is_err());
        assert!(parse_path("steps-c0").is_err());
        assert!(parse_path("stepsgraph").is_err());
        assert!(
            parse_path("steps-graph-fast")
                .unwrap_err()
                .to_string()
                .contains("\"fast\"")
        );
        assert!(
            parse_path("fast")
                .unwrap_err()
                .to_string()
                .contains("unknown decode path")
        );
        assert_eq!(parse_size("1920x1080").unwrap(), (1920, 1080));
        assert!(parse_size("1920").is_err());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
