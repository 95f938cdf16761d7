//! How the 4-bit products are launched where a measurement asks otherwise
//! than the defaults (`qmv.rs`): per matrix, the launch shape, a persistent
//! grid and a shared-memory hold; and the shared-memory carveout of the step
//! runner's q/k/v and attention. Parsed once at the edge (the variables of
//! `docs/tuning.md`), handed down with the engine's options.

/// A matrix (input width, rows) and what a setting asks for it.
pub type MatrixEntry<V> = ((i32, i32), V);

/// Warps, k-tiles at once, blocks an SM (0: the compiler's choice).
pub type Shape = (i32, i32, i32);

/// Launch settings beside the defaults, and the GPU they are for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchTuning {
    /// `KxN=WxU[xM]`: blocks of W warps loading U k-tiles at once (and, with
    /// M, compiled to fit M blocks an SM; step kernels only).
    pub shapes: Vec<MatrixEntry<Shape>>,
    /// `KxN=G`: G persistent blocks, each taking every G-th row group with
    /// its input staged once (0: a block a group); step kernels only.
    pub grids: Vec<MatrixEntry<i32>>,
    /// `KxN=B`: at least B bytes of dynamic shared memory a block, so that
    /// fewer blocks share an SM than their registers allow; step kernels only.
    pub shared: Vec<MatrixEntry<i32>>,
    /// The share of L1 (percent) that q/k/v and the cluster attention prefer
    /// as shared memory; `None`: the driver's choice.
    pub carveout: Option<u8>,
    /// Streaming multiprocessors of the GPU the launches are shaped for
    /// (queried from the device; 0 where there is none, where the shapes
    /// assume an H100's 132).
    pub sms: i32,
}

/// The SM count launch shapes assume without a GPU to ask (an H100 SXM's,
/// on which the defaults were measured).
pub const DEFAULT_SMS: i32 = 132;

impl LaunchTuning {
    /// The shape asked for the `k`-wide, `n`-row matrix.
    pub fn shape(&self, k: i32, n: i32) -> Option<Shape> {
        entry(&self.shapes, k, n)
    }

    /// The persistent grid asked for the matrix.
    pub fn grid(&self, k: i32, n: i32) -> Option<i32> {
        entry(&self.grids, k, n)
    }

    /// The shared memory asked for a block of the matrix's product.
    pub fn shared_bytes(&self, k: i32, n: i32) -> Option<i32> {
        entry(&self.shared, k, n)
    }

    /// The SM count to shape launches for.
    pub fn sm_count(&self) -> i32 {
        if self.sms > 0 { self.sms } else { DEFAULT_SMS }
    }
}

fn entry<V: Copy>(entries: &[MatrixEntry<V>], k: i32, n: i32) -> Option<V> {
    entries.iter().find(|(m, _)| *m == (k, n)).map(|&(_, v)| v)
}

/// The most dynamic shared memory a product's block may ask for: sm_90's
/// 227 KB a block, less 2 KB for its static shared memory (the warps' sums,
/// up to 1 KB at 16 warps; the norm's partial sums; the timeline's stamp).
pub const MAX_SHARED_BYTES: i32 = (super::step::BLOCK_SHARED_BYTES - 2048) as i32;

/// `KxN=WxU[xM],...` as entries, or the first entry that is not one (warps
/// 1–16, k-tiles 1–8, blocks an SM 1–32; M absent: 0).
pub fn parse_shapes(v: &str) -> Result<Vec<MatrixEntry<Shape>>, String> {
    let numbers =
        |s: &str| -> Option<Vec<i32>> { s.split('x').map(|p| p.trim().parse().ok()).collect() };
    parse_entries(v, |e| {
        let (m, s) = e.split_once('=')?;
        match (numbers(m).as_deref(), numbers(s).as_deref()) {
            (Some(&[k, n]), Some(&[w, u])) => Some(((k, n), (w, u, 0))),
            (Some(&[k, n]), Some(&[w, u, b])) if (1..=32).contains(&b) => Some(((k, n), (w, u, b))),
            _ => None,
        }
        .filter(|&(_, (w, u, _))| (1..=16).contains(&w) && (1..=8).contains(&u))
    })
}

/// `KxN=C,...` as entries, or the first entry that is not one (C >= 0).
pub fn parse_counts(v: &str) -> Result<Vec<MatrixEntry<i32>>, String> {
    parse_entries(v, |e| {
        let (m, g) = e.split_once('=')?;
        let (k, n) = m.split_once('x')?;
        let number = |s: &str| s.trim().parse::<i32>().ok();
        Some(((number(k)?, number(n)?), number(g).filter(|&g| g >= 0)?))
    })
}

/// `KxN=B,...` as entries, or the first entry that is not one (B up to
/// [`MAX_SHARED_BYTES`]).
pub fn parse_shared(v: &str) -> Result<Vec<MatrixEntry<i32>>, String> {
    let entries = parse_counts(v)?;
    match entries.iter().find(|(_, b)| *b > MAX_SHARED_BYTES) {
        Some(((k, n), b)) => Err(format!("{k}x{n}={b}")),
        None => Ok(entries),
    }
}

/// Comma-separated entries, each parsed by `entry`, or the first that is not
/// one.
fn parse_entries<E>(v: &str, entry: impl Fn(&str) -> Option<E>) -> Result<Vec<E>, String> {
    v.split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| entry(e).ok_or_else(|| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_shapes_parse() {
        assert_eq!(parse_shapes(""), Ok(vec![]));
        assert_eq!(
            parse_shapes("4096x4096=8x4, 4096x6144=8x4x3"),
            Ok(vec![((4096, 4096), (8, 4, 0)), ((4096, 6144), (8, 4, 3))])
        );
        for bad in [
            "4096x4096",
            "4096x4096=8",
            "4096=8x4",
            "4096x4096=0x4",
            "4096x4096=8x9",
            "4096x4096=8x4x0",
            "4096x4096=8x4x2x1",
        ] {
            assert_eq!(parse_shapes(bad), Err(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn persistent_grids_parse() {
        assert_eq!(
            parse_counts("4096x24576=512, 4096x4096=0"),
            Ok(vec![((4096, 24576), 512), ((4096, 4096), 0)])
        );
        assert_eq!(parse_counts(""), Ok(vec![]));
        for bad in ["4096x24576", "4096=512", "4096x24576=-1", "4096xN=2"] {
            assert_eq!(parse_counts(bad), Err(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn shared_memory_holds_parse_within_an_sm_90_block() {
        assert_eq!(
            parse_shared("4096x6144=120000,4096x4096=230400"),
            Ok(vec![((4096, 6144), 120000), ((4096, 4096), 230400)])
        );
        for bad in ["4096x6144=230401", "4096x6144", "4096x6144=-1"] {
            assert_eq!(parse_shared(bad), Err(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn settings_apply_to_their_matrix_only() {
        let t = LaunchTuning {
            shapes: vec![((4096, 6144), (8, 4, 3))],
            grids: vec![((4096, 24576), 384)],
            shared: vec![((4096, 4096), 120_000)],
            ..LaunchTuning::default()
        };
        assert_eq!(t.shape(4096, 6144), Some((8, 4, 3)));
        assert_eq!(t.shape(4096, 4096), None);
        assert_eq!(t.grid(4096, 24576), Some(384));
        assert_eq!(t.shared_bytes(4096, 4096), Some(120_000));
        assert_eq!(t.sm_count(), DEFAULT_SMS);
        assert_eq!(LaunchTuning { sms: 78, ..t }.sm_count(), 78);
    }
}
