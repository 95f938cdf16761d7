//! A decoding step's timeline: with `Tuning::timeline_dir` set, the step
//! kernels are compiled to stamp each block's start, wait and end
//! (`kernels/timeline.cuh`), and each request's last step is written as
//! `DIR/timeline-N.csv` (`bench/gpu/timeline.py` reads them).

use std::fmt::Write as _;
use std::path::PathBuf;

use mlx::Dtype;
use mlx::cuda::{Held, StepRunner};

use super::{Key, buffer};
use crate::error::{Error, Result};
use crate::kernels::step;

/// Where the kernels record a step's timeline.
pub(super) struct Timeline {
    dir: PathBuf,
    /// Four u64 per block (as u32 pairs): start, wait returned, end, SM.
    pub(super) buf: Held,
    /// The last step's launches: kernel, first slot, blocks.
    pub(super) launches: Vec<(Key, u32, u32)>,
    written: usize,
}

impl Timeline {
    /// A timeline written under `dir`, its buffer held by `runner`.
    pub(super) fn new(dir: PathBuf, runner: &mut StepRunner) -> Result<Timeline> {
        // Four u64 a block, for the blocks and then as many blocks' phases.
        let buf = buffer(step::TIMELINE_BLOCKS as i32 * 16, Dtype::U32)?;
        mlx::eval(&[&buf])?;
        Ok(Timeline {
            dir,
            buf: runner.hold(&buf)?,
            launches: Vec::new(),
            written: 0,
        })
    }

    /// The first slot of a launch of `blocks` blocks after the launches so
    /// far, which it joins.
    pub(super) fn place(&mut self, key: Key, blocks: u32) -> Result<u32> {
        let base = self.launches.last().map_or(0, |&(.., b, n)| b + n);
        if base + blocks > step::TIMELINE_BLOCKS {
            return Err(Error::Model("timeline: more blocks than it holds".into()));
        }
        self.launches.push((key, base, blocks));
        Ok(base)
    }

    /// The last step's blocks as CSV, into the next `timeline-N.csv`, read
    /// through the runner (a host read through MLX would move the buffer).
    pub(super) fn write(&mut self, runner: &mut StepRunner) -> Result<()> {
        let mut raw = vec![0u8; runner.bytes(self.buf)?];
        runner.download(self.buf, &mut raw)?;
        let csv = timeline_csv(&self.launches, &raw);
        let path = self.dir.join(format!("timeline-{}.csv", self.written));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&path, csv))
            .map_err(|e| Error::Model(format!("writing {}: {e}", path.display())))?;
        self.written += 1;
        Ok(())
    }
}

/// A timeline's CSV: one row per block of `launches` (kernel, first slot,
/// blocks) from `raw`, four little-endian u64 per slot (start, wait
/// returned, end, SM; `timeline.cuh`), then the phases the cluster attention
/// marked at slot `step::TIMELINE_BLOCKS` + its slot (0 for other kernels).
fn timeline_csv(launches: &[(Key, u32, u32)], raw: &[u8]) -> String {
    let at = |slot: usize, i: usize| {
        let j = 8 * (4 * slot + i);
        raw.get(j..j + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let phase_slot = step::TIMELINE_BLOCKS as usize;
    let mut csv =
        String::from("launch,kernel,layer,block,sm,start_ns,wait_ns,end_ns,p0,p1,p2,p3\n");
    // A layer starts at its q/k/v launch (-1: the embedding).
    let mut layer = -1;
    for (n, &(key, base, blocks)) in launches.iter().enumerate() {
        layer += i32::from(key == Key::Qkv);
        // Only the cluster attention marks phases; other kernels' slots may
        // hold stale marks (of its start-up check, which records at base 0, or
        // of earlier steps whose launches were laid out otherwise).
        let marks = matches!(key, Key::ClusterAttention(_));
        for b in 0..blocks {
            let slot = (base + b) as usize;
            let (start, wait, end, sm) = (at(slot, 0), at(slot, 1), at(slot, 2), at(slot, 3));
            let p = |i| if marks { at(phase_slot + slot, i) } else { 0 };
            let _ = writeln!(
                csv,
                "{n},{},{layer},{b},{sm},{start},{wait},{end},{},{},{},{}",
                key.label(),
                p(0),
                p(1),
                p(2),
                p(3)
            );
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attention::ClusterLayout;

    #[test]
    fn a_timeline_row_per_block_with_its_layer_and_phases() {
        // Embedding (1 block), then a layer's q/k/v (2 blocks) and attention
        // (1, with phases).
        let late8 = ClusterLayout::parse("8v").unwrap();
        let launches = [
            (Key::Embed, 0, 1),
            (Key::Qkv, 1, 2),
            (Key::ClusterAttention(late8), 3, 1),
        ];
        let slots = 2 * step::TIMELINE_BLOCKS as usize;
        let mut raw = vec![0u8; slots * 32];
        let mut put = |slot: usize, field: usize, v: u64| {
            raw[8 * (4 * slot + field)..][..8].copy_from_slice(&v.to_le_bytes());
        };
        let t = 1u64 << 40;
        for slot in 0..4 {
            for field in 0..4 {
                put(slot, field, 1000 * slot as u64 + field as u64 + t);
            }
        }
        for field in 0..4 {
            put(
                step::TIMELINE_BLOCKS as usize + 3,
                field,
                t + 500 + field as u64,
            );
            // A stale mark at q/k/v's slot is not its own.
            put(step::TIMELINE_BLOCKS as usize + 1, field, t + 900);
        }
        let csv = timeline_csv(&launches, &raw);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "launch,kernel,layer,block,sm,start_ns,wait_ns,end_ns,p0,p1,p2,p3"
        );
        assert_eq!(
            lines[1],
            format!("0,Embed,-1,0,{},{},{},{},0,0,0,0", t + 3, t, t + 1, t + 2)
        );
        assert_eq!(
            lines[3],
            format!(
                "1,Qkv,0,1,{},{},{},{},0,0,0,0",
                t + 2003,
                t + 2000,
                t + 2001,
                t + 2002
            )
        );
        assert_eq!(
            lines[4],
            format!(
                "2,ClusterAttention(8v),0,0,{},{},{},{},{},{},{},{}",
                t + 3003,
                t + 3000,
                t + 3001,
                t + 3002,
                t + 500,
                t + 501,
                t + 502,
                t + 503
            )
        );
        assert_eq!(lines.len(), 5);
        // A short buffer reads as zeros rather than failing.
        assert!(
            timeline_csv(&launches, &raw[..64])
                .lines()
                .nth(4)
                .unwrap()
                .ends_with(",0,0,0,0,0,0,0,0")
        );
    }
}
