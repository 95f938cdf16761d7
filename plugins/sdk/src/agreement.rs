//! Whether two runs of the same request computed the same thing.
//!
//! Comparing greedy tokens alone is both too strict and too weak. Too strict:
//! on a GPU in bf16, two correct computations that differ only in summation
//! order (a batched prefill against one cached step) can flip a near-tie
//! between two tokens, after which the outputs diverge. Too weak: a model with
//! random weights often emits the same token whatever the image, so equal
//! tokens do not prove that the right image was attended to. The logits of
//! the first generated position depend on every prompt token's keys and
//! values, so they are the evidence: they must agree within the precision the
//! model computes in. Tokens are reported beside them.

/// How two outputs of one request compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agreement {
    /// First-position logits agree within the tolerance and the tokens are equal.
    Identical { logit_rel_diff: f64 },
    /// First-position logits agree within the tolerance, and the tokens
    /// diverge from `first_diff` on: a near-tie resolved differently by
    /// rounding, not a different computation.
    WithinPrecision {
        first_diff: usize,
        logit_rel_diff: f64,
    },
    /// First-position logits differ beyond the tolerance: the two runs did
    /// not compute the same function of the prompt.
    Different { logit_rel_diff: f64 },
}

impl Agreement {
    /// True unless the runs computed different things.
    pub fn agrees(&self) -> bool {
        !matches!(self, Agreement::Different { .. })
    }

    /// The relative L2 distance of the first-position logits.
    pub fn logit_rel_diff(&self) -> f64 {
        match *self {
            Agreement::Identical { logit_rel_diff }
            | Agreement::WithinPrecision { logit_rel_diff, .. }
            | Agreement::Different { logit_rel_diff, .. } => logit_rel_diff,
        }
    }

    /// A short cell for a table: `yes`, `≈ (tokens from #5)` or `NO`, with the distance.
    pub fn describe(&self) -> String {
        match *self {
            Agreement::Identical { logit_rel_diff } => format!("yes (Δ {logit_rel_diff:.1e})"),
            Agreement::WithinPrecision {
                first_diff,
                logit_rel_diff,
            } => format!("≈ (Δ {logit_rel_diff:.1e}; tokens differ from #{first_diff})"),
            Agreement::Different { logit_rel_diff, .. } => format!("NO (Δ {logit_rel_diff:.1e})"),
        }
    }
}

/// `‖a − b‖₂ / ‖b‖₂`; infinite when the lengths differ, either is empty or
/// holds a non-finite value.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::INFINITY;
    }
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        diff += (x - y) * (x - y);
        norm += y * y;
    }
    let r = (diff / norm).sqrt();
    if r.is_finite() { r } else { f64::INFINITY }
}

/// The relative logit distance two correct runs may show, given the dtype the
/// model computes in (`model-info.compute-dtype`) and the backend. f32 on the
/// CPU is exact up to summation order (observed ~1e-6); GPU matmuls in f32 may
/// use TF32 (10-bit mantissa); bf16 has an 8-bit mantissa (unit roundoff
/// 3.9e-3), accumulated over dozens of layers.
pub fn logit_tolerance(compute_dtype: &str, backend: &str) -> f64 {
    match (compute_dtype, backend) {
        ("f32" | "float32", "cpu") => 1e-4,
        ("f32" | "float32", _) => 1e-2,
        _ => 5e-2,
    }
}

/// The index of the first position where the token lists differ, if any
/// (a shorter list differs where it ends).
pub fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

/// Compares a run (`tokens`, `logits`) against a reference run of the same
/// request, with the relative logit tolerance `tol`.
pub fn compare(
    tokens: &[u32],
    logits: &[f32],
    ref_tokens: &[u32],
    ref_logits: &[f32],
    tol: f64,
) -> Agreement {
    let logit_rel_diff = relative_l2(logits, ref_logits);
    if logit_rel_diff > tol {
        return Agreement::Different { logit_rel_diff };
    }
    match first_difference(tokens, ref_tokens) {
        None => Agreement::Identical { logit_rel_diff },
        Some(first_diff) => Agreement::WithinPrecision {
            first_diff,
            logit_rel_diff,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_l2_measures_distance_against_the_reference() {
        assert_eq!(relative_l2(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        let r = relative_l2(&[3.0, 4.0], &[0.0, 5.0]);
        assert!((r - (9.0f64 + 1.0).sqrt() / 5.0).abs() < 1e-12, "{r}");
        assert_eq!(relative_l2(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        assert_eq!(relative_l2(&[], &[]), f64::INFINITY);
        assert_eq!(relative_l2(&[f32::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(relative_l2(&[1.0], &[0.0]), f64::INFINITY);
    }

    #[test]
    fn first_difference_finds_divergence_and_length_changes() {
        assert_eq!(first_difference(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_difference(&[1, 2, 3], &[1, 5, 3]), Some(1));
        assert_eq!(first_difference(&[1, 2], &[1, 2, 3]), Some(2));
    }

    #[test]
    fn close_logits_with_equal_tokens_are_identical() {
        let a = compare(&[7, 8], &[1.0, 2.0], &[7, 8], &[1.0, 2.001], 1e-2);
        assert!(matches!(a, Agreement::Identical { .. }), "{a:?}");
        assert!(a.agrees());
        assert!(a.describe().starts_with("yes"));
    }

    #[test]
    fn close_logits_with_diverging_tokens_are_a_near_tie() {
        let a = compare(&[7, 8, 9], &[1.0, 2.0], &[7, 8, 4], &[1.0, 2.001], 1e-2);
        assert_eq!(
            a,
            Agreement::WithinPrecision {
                first_diff: 2,
                logit_rel_diff: relative_l2(&[1.0, 2.0], &[1.0, 2.001])
            }
        );
        assert!(a.agrees());
        assert!(a.describe().contains("#2"), "{}", a.describe());
    }

    #[test]
    fn distant_logits_fail_even_when_tokens_match() {
        // A random-weight model may emit the same tokens for any image; the
        // logits still tell a replayed KV cache apart.
        let a = compare(&[7, 7], &[1.0, 2.0], &[7, 7], &[2.0, 1.0], 1e-2);
        assert!(!a.agrees(), "{a:?}");
        assert!(a.describe().starts_with("NO"));
        // Missing logits never pass.
        assert!(!compare(&[7], &[], &[7], &[], 1.0).agrees());
    }

    #[test]
    fn tolerance_follows_the_compute_precision() {
        let cpu = logit_tolerance("f32", "cpu");
        let tf32 = logit_tolerance("f32", "cuda");
        let bf16 = logit_tolerance("bf16", "cuda");
        assert!(cpu < tf32 && tf32 < bf16);
        assert_eq!(logit_tolerance("bf16", "metal"), bf16);
    }
}
