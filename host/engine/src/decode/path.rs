//! How greedy decoding steps run: on MLX's graph, or launched by the step
//! runner with or without CUDA graphs and programmatic dependent launch, and
//! with which attention.

use crate::kernels::attention::ClusterLayout;

/// How greedy decoding steps run on the fused path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodePath {
    /// Built as MLX operations and custom kernels, evaluated by MLX.
    Mlx,
    /// Launched by the step runner (CUDA only; MLX's graph elsewhere).
    Steps {
        /// Replay each step as a CUDA graph while its launches stay the same.
        graph: bool,
        /// Let each launch start while the previous one drains.
        pdl: bool,
        attention: StepAttention,
    },
}

/// How the step runner computes a step's attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepAttention {
    /// Split in parts per key/value head, joined through global memory.
    Split,
    /// A thread-block cluster per key/value head in this layout where its
    /// caches fit, else split.
    Cluster(ClusterLayout),
    /// Clusters of 16 with late values while their rows fit (two a
    /// key/value head for long caches), then of 8, then split
    /// ([`crate::kernels::attention::auto_cluster`]).
    Auto,
}

impl Default for DecodePath {
    /// The step runner as CUDA graphs with programmatic dependent launch and
    /// the attention chosen by the caches' size.
    fn default() -> Self {
        DecodePath::Steps {
            graph: true,
            pdl: true,
            attention: StepAttention::Auto,
        }
    }
}

/// The names [`DecodePath::parse`] takes, in short.
pub const PATH_NAMES: &str = "mlx, or steps with -graph, -nopdl, -splits, -cN, -cNv, -cNqS, -cNvqS: steps-graph, steps-graph-c16v, ...";

impl DecodePath {
    /// `mlx`, or `steps` with any of `-graph` (replayed as CUDA graphs),
    /// `-nopdl` (launches in strict order), `-splits` (the split attention),
    /// `-cN` (the attention in clusters of N blocks; sized by the caches
    /// without), `-cNv` (the same with the values brought in after the
    /// scores), `-cNqS` and `-cNvqS` (S clusters a key/value head, each for
    /// its share of the query heads).
    pub fn parse(name: &str) -> Result<DecodePath, String> {
        if name == "mlx" {
            return Ok(DecodePath::Mlx);
        }
        let unknown = |what: &str| format!("unknown decode path {name:?}{what} ({PATH_NAMES})");
        let rest = name
            .strip_prefix("steps")
            .filter(|r| r.is_empty() || r.starts_with('-'))
            .ok_or_else(|| unknown(""))?;
        let (mut graph, mut pdl, mut attention) = (false, true, StepAttention::Auto);
        for part in rest.split('-').skip(1) {
            let layout = part.strip_prefix('c').and_then(ClusterLayout::parse);
            match (part, layout) {
                ("graph", _) => graph = true,
                ("nopdl", _) => pdl = false,
                ("splits", _) => attention = StepAttention::Split,
                (_, Some(layout)) => attention = StepAttention::Cluster(layout),
                (other, _) => return Err(unknown(&format!(": {other:?}"))),
            }
        }
        Ok(DecodePath::Steps {
            graph,
            pdl,
            attention,
        })
    }
}

impl std::fmt::Display for DecodePath {
    /// The name [`DecodePath::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let DecodePath::Steps {
            graph,
            pdl,
            attention,
        } = self
        else {
            return write!(f, "mlx");
        };
        write!(f, "steps")?;
        if *graph {
            write!(f, "-graph")?;
        }
        if !pdl {
            write!(f, "-nopdl")?;
        }
        match attention {
            StepAttention::Split => write!(f, "-splits"),
            StepAttention::Cluster(c) => write!(f, "-c{c}"),
            StepAttention::Auto => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_by_name_and_print_back() {
        let c16v = ClusterLayout::parse("16v").unwrap();
        assert_eq!(DecodePath::parse("mlx"), Ok(DecodePath::Mlx));
        assert_eq!(
            DecodePath::parse("steps"),
            Ok(DecodePath::Steps {
                graph: false,
                pdl: true,
                attention: StepAttention::Auto
            })
        );
        assert_eq!(DecodePath::parse("steps-graph"), Ok(DecodePath::default()));
        assert_eq!(
            DecodePath::parse("steps-graph-nopdl-c16v"),
            Ok(DecodePath::Steps {
                graph: true,
                pdl: false,
                attention: StepAttention::Cluster(c16v)
            })
        );
        for name in [
            "mlx",
            "steps",
            "steps-graph",
            "steps-nopdl",
            "steps-graph-splits",
            "steps-graph-c16v",
            "steps-graph-c16vq2",
        ] {
            assert_eq!(DecodePath::parse(name).unwrap().to_string(), name);
        }
        for bad in [
            "",
            "gpu",
            "stepsx",
            "steps-",
            "steps-c",
            "steps-c3x",
            "steps-fast",
        ] {
            let err = DecodePath::parse(bad).unwrap_err();
            assert!(err.contains("unknown decode path"), "{bad}: {err}");
        }
    }
}
