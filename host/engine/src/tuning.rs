//! How the engine runs, beside what it computes: the decoding path, our GPU
//! kernels and their launch shapes, timelines and profiling, staging memory.
//! Resolved once at the edge (the command line reads the variables of
//! [`VARIABLES`], `docs/tuning.md`) and handed down in
//! [`crate::EngineOptions`]; nothing inside the engine reads the environment.

use std::path::PathBuf;

use crate::decode::DecodePath;
use crate::decode::StepAttention;
use crate::kernels::attention::ClusterLayout;
use crate::kernels::launch::{self, LaunchTuning};

/// The engine's settings beside the model and the caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// Our GPU kernels where the backend has them (CUDA), after their check.
    pub kernels: bool,
    /// Single-token steps through the fused kernels (4-bit models).
    pub fused_decode: bool,
    /// How greedy steps run on the fused path.
    pub decode: DecodePath,
    /// Launch shapes of the 4-bit products other than the defaults.
    pub launch: LaunchTuning,
    /// Where each request's last decoding step is written as a timeline.
    pub timeline_dir: Option<PathBuf>,
    /// Print where the host's time goes per decoding step.
    pub profile_decode: bool,
    /// Print the preprocessing stage's parts.
    pub profile_preprocess: bool,
    /// Images staged in page-locked memory the GPU reads in place (CUDA).
    pub pinned_staging: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            kernels: true,
            fused_decode: true,
            decode: DecodePath::default(),
            launch: LaunchTuning::default(),
            timeline_dir: None,
            profile_decode: false,
            profile_preprocess: false,
            pinned_staging: true,
        }
    }
}

/// Every variable [`Tuning::from_vars`] reads, with what it does. A variable
/// "set" is set to anything, the empty string included.
pub const VARIABLES: [(&str, &str); 15] = [
    (
        "VLM_BENCH_NO_KERNELS",
        "set: MLX's operations only, none of our GPU kernels",
    ),
    (
        "VLM_BENCH_NO_FUSED_DECODE",
        "set: decoding steps without the fused kernels",
    ),
    (
        "VLM_BENCH_NO_STEP_RUNNER",
        "set: greedy steps on MLX's graph, not the step runner",
    ),
    (
        "VLM_BENCH_STEP_GRAPH",
        "0: each step's launches issued by the host, no CUDA graph",
    ),
    (
        "VLM_BENCH_NO_PDL",
        "set: launches in strict order, no programmatic dependent launch",
    ),
    (
        "VLM_BENCH_SPLIT_ATTENTION",
        "set: the split attention, never the cluster one",
    ),
    (
        "VLM_BENCH_ATTN_CLUSTER",
        "N, Nv, NqS or NvqS: the cluster attention always in this layout",
    ),
    (
        "VLM_BENCH_SHARED_CARVEOUT",
        "P (0-100): q/k/v and the cluster attention prefer P% of L1 as shared memory",
    ),
    (
        "VLM_BENCH_QMV_SHAPES",
        "KxN=WxU[xM],...: the K-wide, N-row 4-bit product in blocks of W warps, U k-tiles at once (M blocks an SM)",
    ),
    (
        "VLM_BENCH_QMV_GRID",
        "KxN=G,...: that product as G persistent blocks (0: a block a row group)",
    ),
    (
        "VLM_BENCH_QMV_SMEM",
        "KxN=B,...: at least B bytes of shared memory a block of that product",
    ),
    (
        "VLM_BENCH_TIMELINE",
        "DIR: each request's last decoding step as DIR/timeline-N.csv",
    ),
    (
        "VLM_BENCH_PROFILE_DECODE",
        "set: the host's time per decoding step, after each request",
    ),
    (
        "VLM_BENCH_PROFILE_PREPROCESS",
        "set: the preprocessing stage's parts, per request",
    ),
    (
        "VLM_BENCH_NO_PINNED_STAGING",
        "set: images staged through MLX's copy, not page-locked memory",
    ),
];

impl Tuning {
    /// The settings the variables of [`VARIABLES`] ask for, read with `get`
    /// (the environment, at the edge); a value that does not parse is an
    /// error naming the variable and what it takes.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Tuning, String> {
        let set = |name: &str| get(name).is_some();
        let parsed = |name: &str, parse: &dyn Fn(&str) -> bool| -> Result<(), String> {
            match get(name) {
                Some(v) if !parse(&v) => Err(format!(
                    "{name}={v:?} is not a setting it takes: {}",
                    describe(name)
                )),
                _ => Ok(()),
            }
        };
        let layout = get("VLM_BENCH_ATTN_CLUSTER").map(|v| ClusterLayout::parse(&v));
        parsed("VLM_BENCH_ATTN_CLUSTER", &|v| {
            ClusterLayout::parse(v).is_some()
        })?;
        let decode = if set("VLM_BENCH_NO_STEP_RUNNER") {
            DecodePath::Mlx
        } else {
            DecodePath::Steps {
                graph: get("VLM_BENCH_STEP_GRAPH").is_none_or(|v| v != "0"),
                pdl: !set("VLM_BENCH_NO_PDL"),
                attention: match (set("VLM_BENCH_SPLIT_ATTENTION"), layout.flatten()) {
                    (true, _) => StepAttention::Split,
                    (false, Some(c)) => StepAttention::Cluster(c),
                    (false, None) => StepAttention::Auto,
                },
            }
        };
        let carveout = |v: &str| v.trim().parse::<u8>().ok().filter(|&p| p <= 100);
        parsed("VLM_BENCH_SHARED_CARVEOUT", &|v| carveout(v).is_some())?;
        let knob = |name: &str| -> Result<String, String> { Ok(get(name).unwrap_or_default()) };
        let bad = |name: &'static str| {
            move |entry: String| {
                format!(
                    "{name}: {entry:?} is not an entry it takes: {}",
                    describe(name)
                )
            }
        };
        let launch = LaunchTuning {
            shapes: launch::parse_shapes(&knob("VLM_BENCH_QMV_SHAPES")?)
                .map_err(bad("VLM_BENCH_QMV_SHAPES"))?,
            grids: launch::parse_counts(&knob("VLM_BENCH_QMV_GRID")?)
                .map_err(bad("VLM_BENCH_QMV_GRID"))?,
            shared: launch::parse_shared(&knob("VLM_BENCH_QMV_SMEM")?)
                .map_err(bad("VLM_BENCH_QMV_SMEM"))?,
            carveout: get("VLM_BENCH_SHARED_CARVEOUT").and_then(|v| carveout(&v)),
            sms: 0,
        };
        Ok(Tuning {
            kernels: !set("VLM_BENCH_NO_KERNELS"),
            fused_decode: !set("VLM_BENCH_NO_FUSED_DECODE"),
            decode,
            launch,
            timeline_dir: get("VLM_BENCH_TIMELINE")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            profile_decode: set("VLM_BENCH_PROFILE_DECODE"),
            profile_preprocess: set("VLM_BENCH_PROFILE_PREPROCESS"),
            pinned_staging: !set("VLM_BENCH_NO_PINNED_STAGING"),
        })
    }

    /// The effective settings, a line each, as `host doctor` prints them.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let on = |b: bool| if b { "on" } else { "off" }.to_string();
        let entries = |v: Vec<String>| {
            if v.is_empty() {
                "defaults".to_string()
            } else {
                v.join(",")
            }
        };
        let l = &self.launch;
        vec![
            ("custom kernels", on(self.kernels)),
            ("fused decode", on(self.fused_decode)),
            ("decode path", self.decode.to_string()),
            (
                "launch shapes",
                entries(
                    l.shapes
                        .iter()
                        .map(|((k, n), (w, u, m))| format!("{k}x{n}={w}x{u}x{m}"))
                        .collect(),
                ),
            ),
            (
                "persistent grids",
                entries(
                    l.grids
                        .iter()
                        .map(|((k, n), g)| format!("{k}x{n}={g}"))
                        .collect(),
                ),
            ),
            (
                "shared holds",
                entries(
                    l.shared
                        .iter()
                        .map(|((k, n), b)| format!("{k}x{n}={b}"))
                        .collect(),
                ),
            ),
            (
                "carveout",
                l.carveout.map_or("driver's".into(), |p| format!("{p}%")),
            ),
            (
                "timeline",
                self.timeline_dir
                    .as_ref()
                    .map_or("off".into(), |d| d.display().to_string()),
            ),
            ("profile decode", on(self.profile_decode)),
            ("profile preprocess", on(self.profile_preprocess)),
            ("pinned staging", on(self.pinned_staging)),
        ]
    }
}

fn describe(name: &str) -> &'static str {
    VARIABLES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, what)| what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Tuning, String> {
        Tuning::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn no_variables_give_the_defaults() {
        assert_eq!(from(&[]), Ok(Tuning::default()));
    }

    #[test]
    fn each_variable_changes_its_setting() {
        let t = from(&[
            ("VLM_BENCH_NO_KERNELS", ""),
            ("VLM_BENCH_NO_FUSED_DECODE", "1"),
            ("VLM_BENCH_STEP_GRAPH", "0"),
            ("VLM_BENCH_NO_PDL", "1"),
            ("VLM_BENCH_ATTN_CLUSTER", "16vq2"),
            ("VLM_BENCH_SHARED_CARVEOUT", "50"),
            ("VLM_BENCH_QMV_SHAPES", "4096x6144=8x4x3"),
            ("VLM_BENCH_QMV_GRID", "4096x24576=384"),
            ("VLM_BENCH_QMV_SMEM", "4096x6144=120000"),
            ("VLM_BENCH_TIMELINE", "/tmp/tl"),
            ("VLM_BENCH_PROFILE_DECODE", "1"),
            ("VLM_BENCH_PROFILE_PREPROCESS", "1"),
            ("VLM_BENCH_NO_PINNED_STAGING", "1"),
        ])
        .unwrap();
        assert!(!t.kernels && !t.fused_decode && !t.pinned_staging);
        assert!(t.profile_decode && t.profile_preprocess);
        assert_eq!(t.decode.to_string(), "steps-nopdl-c16vq2");
        assert_eq!(t.launch.shape(4096, 6144), Some((8, 4, 3)));
        assert_eq!(t.launch.grid(4096, 24576), Some(384));
        assert_eq!(t.launch.shared_bytes(4096, 6144), Some(120_000));
        assert_eq!(t.launch.carveout, Some(50));
        assert_eq!(t.timeline_dir, Some(PathBuf::from("/tmp/tl")));
        // The split attention wins over a layout; no step runner over both.
        let split = from(&[
            ("VLM_BENCH_SPLIT_ATTENTION", ""),
            ("VLM_BENCH_ATTN_CLUSTER", "8"),
        ]);
        assert_eq!(split.unwrap().decode.to_string(), "steps-graph-splits");
        let mlx = from(&[("VLM_BENCH_NO_STEP_RUNNER", ""), ("VLM_BENCH_NO_PDL", "")]);
        assert_eq!(mlx.unwrap().decode, DecodePath::Mlx);
    }

    #[test]
    fn a_value_that_does_not_parse_names_its_variable() {
        for (name, value) in [
            ("VLM_BENCH_ATTN_CLUSTER", "big"),
            ("VLM_BENCH_SHARED_CARVEOUT", "150"),
            ("VLM_BENCH_QMV_SHAPES", "4096x4096=8"),
            ("VLM_BENCH_QMV_GRID", "4096=2"),
            ("VLM_BENCH_QMV_SMEM", "4096x6144=999999"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn the_tuning_document_names_every_variable() {
        let doc = include_str!("../../../docs/tuning.md");
        for (name, _) in VARIABLES {
            assert!(
                doc.contains(&format!("`{name}")),
                "docs/tuning.md lacks {name}"
            );
        }
    }

    #[test]
    fn every_setting_is_described_and_printed() {
        assert!(
            VARIABLES
                .iter()
                .all(|(n, what)| n.starts_with("VLM_BENCH_") && !what.is_empty())
        );
        let lines = Tuning::default().settings();
        assert!(
            lines
                .iter()
                .any(|(k, v)| *k == "decode path" && v == "steps-graph")
        );
        assert_eq!(lines.len(), 11);
    }
}
