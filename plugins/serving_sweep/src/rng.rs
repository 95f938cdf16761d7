//! A small seeded generator for open-loop arrival times: the same seed
//! gives the same schedule everywhere.

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// The gap to the next arrival of a Poisson process at `rate` per
    /// second, in milliseconds.
    pub fn exp_gap_ms(&mut self, rate: f64) -> f64 {
        -self.unit().ln() / rate * 1e3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_average_to_the_rate_and_repeat_with_the_seed() {
        let mut a = Rng::new(7);
        let gaps: Vec<f64> = (0..20_000).map(|_| a.exp_gap_ms(4.0)).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 250.0).abs() < 10.0, "mean gap {mean}");
        assert!(gaps.iter().all(|g| g.is_finite() && *g >= 0.0));
        let mut b = Rng::new(7);
        assert_eq!(b.exp_gap_ms(4.0), gaps[0]);
    }
}
