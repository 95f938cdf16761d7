//! What a layer's decode attention brings into L2 for the launches after it
//! (`attn_decode.cu`). The attention is a chain of memory round trips that
//! leaves DRAM idle (~12 µs a layer on an H100, by the step timeline), while
//! the o projection and gate/up then stream 9.4 + 56.6 MB of the 8B's 4-bit
//! weights; L2 holds 50 MB.

/// Bytes of device memory at an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub addr: u64,
    pub bytes: u64,
}

/// A 4-bit matrix's three arrays of rows (packed weights, scales, biases):
/// base address and bytes per row of each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuantRows {
    pub arrays: [(u64, u64); 3],
    pub rows: u64,
}

impl QuantRows {
    /// Bytes of one row across the three arrays.
    fn row_bytes(&self) -> u64 {
        self.arrays.iter().map(|a| a.1).sum()
    }

    /// Rows `[a, b)` of each array.
    fn rows(&self, a: u64, b: u64) -> impl Iterator<Item = Region> + '_ {
        self.arrays.iter().map(move |&(base, per)| Region {
            addr: base + a * per,
            bytes: (b - a) * per,
        })
    }
}

/// What to prefetch within `budget` bytes: all of `o` first (read first),
/// then gate/up's leading rows of gate and of up alike (its first blocks
/// read row `i` of both halves).
pub(crate) fn layer_regions(o: &QuantRows, gate_up: &QuantRows, budget: u64) -> Vec<Region> {
    let o_rows = (budget / o.row_bytes()).min(o.rows);
    let mut out: Vec<Region> = o.rows(0, o_rows).collect();
    let left = budget.saturating_sub(o_rows * o.row_bytes());
    let half = gate_up.rows / 2;
    let pairs = (left / (2 * gate_up.row_bytes())).min(half);
    out.extend(gate_up.rows(0, pairs));
    out.extend(gate_up.rows(half, half + pairs));
    out.retain(|r| r.bytes > 0);
    out
}

/// The largest chunk one entry describes (a 16-bit count of 16-byte units).
const MAX_CHUNK: u64 = 0xffff * 16;

/// Entries for `GridWaitThenPrefetch` (`phases.cuh`): an address in the low
/// 48 bits, a size in 16-byte units in the high 16, covering `regions` in
/// order in equal chunks (the smallest power of two from 64 KB that keeps
/// them to `max_entries`; what does not fit then is left out). Regions not
/// in whole 16-byte units, or not aligned to them, are refused.
pub(crate) fn table(regions: &[Region], max_entries: usize) -> Result<Vec<u64>, String> {
    if let Some(r) = regions
        .iter()
        .find(|r| r.addr % 16 != 0 || r.bytes % 16 != 0 || r.addr >> 48 != 0)
    {
        return Err(format!(
            "L2 prefetch: region {:#x} + {} bytes is not in whole aligned 16-byte units below 2^48",
            r.addr, r.bytes
        ));
    }
    let count = |chunk: u64| -> u64 { regions.iter().map(|r| r.bytes.div_ceil(chunk)).sum() };
    let mut chunk = 64 << 10;
    while chunk * 2 <= MAX_CHUNK && count(chunk) > max_entries as u64 {
        chunk *= 2;
    }
    let mut out = Vec::new();
    for r in regions {
        let mut at = 0;
        while at < r.bytes && out.len() < max_entries {
            let n = chunk.min(r.bytes - at);
            out.push((r.addr + at) | (n / 16) << 48);
            at += n;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8B's o (4096 x 4096) and gate/up (24576 x 4096), bf16 scales.
    fn eight_b() -> (QuantRows, QuantRows) {
        let m = |base: u64, rows: u64| QuantRows {
            arrays: [
                (base, 2048),
                (base + (1 << 32), 128),
                (base + (2 << 32), 128),
            ],
            rows,
        };
        (m(1 << 36, 4096), m(2 << 36, 24576))
    }

    #[test]
    fn o_comes_first_then_gate_and_up_rows_alike() {
        let (o, gu) = eight_b();
        let all_o = 4096 * 2304;
        assert_eq!(layer_regions(&o, &gu, 0), vec![]);
        let r = layer_regions(&o, &gu, all_o + 2 * 2304 * 100 + 5);
        assert_eq!(r.len(), 9);
        assert_eq!(
            r[0],
            Region {
                addr: 1 << 36,
                bytes: 4096 * 2048
            }
        );
        // 100 rows of gate, then the same 100 rows of up.
        assert_eq!(
            r[3],
            Region {
                addr: 2 << 36,
                bytes: 100 * 2048
            }
        );
        assert_eq!(
            r[6],
            Region {
                addr: (2 << 36) + 12288 * 2048,
                bytes: 100 * 2048
            }
        );
        assert_eq!(r[8].bytes, 100 * 128);
        let total: u64 = r.iter().map(|r| r.bytes).sum();
        assert_eq!(total, all_o + 2 * 2304 * 100);
        // A budget past both matrices takes each whole, once.
        let whole: u64 = layer_regions(&o, &gu, u64::MAX / 4)
            .iter()
            .map(|r| r.bytes)
            .sum();
        assert_eq!(whole, all_o + 24576 * 2304);
    }

    #[test]
    fn entries_cover_the_regions_in_chunks_that_fit_the_launch() {
        let regions = [
            Region {
                addr: 1 << 20,
                bytes: 200_000,
            },
            Region {
                addr: 1 << 30,
                bytes: 16,
            },
        ];
        let t = table(&regions, 1024).unwrap();
        let decoded: Vec<(u64, u64)> = t
            .iter()
            .map(|e| (e & ((1 << 48) - 1), (e >> 48) * 16))
            .collect();
        assert_eq!(
            decoded,
            vec![
                (1 << 20, 65536),
                ((1 << 20) + 65536, 65536),
                ((1 << 20) + 131072, 65536),
                ((1 << 20) + 196608, 3392),
                (1 << 30, 16),
            ]
        );
        // 34 MB in at most 1,024 entries: larger chunks, every byte once.
        let big = [Region {
            addr: 1 << 24,
            bytes: 34 << 20,
        }];
        let t = table(&big, 1024).unwrap();
        assert!(t.len() <= 1024);
        let bytes: u64 = t.iter().map(|e| (e >> 48) * 16).sum();
        assert_eq!(bytes, 34 << 20);
        // Past the largest chunk, what does not fit is left out.
        assert_eq!(table(&big, 4).unwrap().len(), 4);
        let err = table(&[Region { addr: 8, bytes: 16 }], 4).unwrap_err();
        assert!(err.contains("aligned"), "{err}");
    }
}
