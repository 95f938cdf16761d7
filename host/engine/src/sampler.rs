//! Token selection from logits: greedy, or seeded sampling with temperature,
//! top-k and top-p, all on the device.

use mlx::{Array, Dtype, random};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the next token is chosen. `temperature == 0` means greedy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: u32,
    pub seed: u64,
}

impl Sampling {
    pub fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::request(format!(
                "temperature must be ≥ 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::request(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::greedy()
    }
}

/// Draws tokens for one request; the key sequence makes runs repeatable.
pub struct Sampler {
    params: Sampling,
    key: Option<Array>,
}

impl Sampler {
    pub fn new(params: Sampling) -> Result<Sampler> {
        params.validate()?;
        let key = if params.temperature > 0.0 {
            Some(random::key(params.seed)?)
        } else {
            None
        };
        Ok(Sampler { params, key })
    }

    /// Whether tokens are the argmax of the logits (no randomness).
    pub fn is_greedy(&self) -> bool {
        self.key.is_none()
    }

    /// The next token for `logits` `(vocab,)`, as a lazy `u32` scalar array.
    pub fn sample(&mut self, logits: &Array) -> Result<Array> {
        let Some(key) = self.key.take() else {
            return Ok(logits.argmax(-1, false)?);
        };
        let keys = random::split(&key, 2)?;
        let mut it = keys.into_iter();
        let (next, now) = (it.next().expect("two keys"), it.next().expect("two keys"));
        self.key = Some(next);
        let p = &self.params;
        let vocab = logits.dim(-1);
        let mut scores = logits.astype(Dtype::F32)?.div_scalar(p.temperature)?;
        let neg_inf = Array::scalar(f32::NEG_INFINITY, Dtype::F32)?;
        // A k of the vocabulary or more keeps every token: no filter.
        if let Ok(k) = i32::try_from(p.top_k)
            && k > 0
            && k < vocab
        {
            // Everything below the k-th largest score is dropped.
            let kth = scores.topk(k, -1)?.min(&[-1], true)?;
            scores = Array::where_(&scores.lt(&kth)?, &neg_inf, &scores)?;
        }
        if p.top_p < 1.0 {
            let order = scores.neg()?.argsort(-1)?;
            let sorted = scores.take_along_axis(&order, -1)?;
            let probs = sorted.softmax(&[-1], true)?;
            // Keep a token if the mass before it is below top_p (the first always stays).
            let before = probs.cumsum(-1, false, false)?;
            let keep = before.lt(&Array::scalar(p.top_p, Dtype::F32)?)?;
            let kept_sorted = Array::where_(&keep, &sorted, &neg_inf)?;
            let pick = random::categorical(&kept_sorted, -1, &now)?;
            return Ok(order
                .take_along_axis(&pick.reshape(&[1])?.astype(Dtype::U32)?, -1)?
                .reshape(&[])?);
        }
        Ok(random::categorical(&scores, -1, &now)?.astype(Dtype::U32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Array {
        Array::from_f32(&[0.0, 3.0, 1.0, 2.9, -1.0], &[5]).unwrap()
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(Sampling::greedy()).unwrap();
        assert_eq!(s.sample(&logits()).unwrap().item::<u32>().unwrap(), 1);
    }

    #[test]
    fn seeded_sampling_repeats_and_respects_top_k_and_top_p() {
        let draw = |p: Sampling| -> Vec<u32> {
            let mut s = Sampler::new(p).unwrap();
            (0..200)
                .map(|_| s.sample(&logits()).unwrap().item::<u32>().unwrap())
                .collect()
        };
        let base = Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 5,
        };
        assert_eq!(draw(base), draw(base));
        assert_ne!(draw(base), draw(Sampling { seed: 6, ..base }));
        let k2 = draw(Sampling { top_k: 2, ..base });
        // k past the vocabulary (even past i32) keeps every token.
        for k in [5, 1000, u32::MAX] {
            assert_eq!(draw(Sampling { top_k: k, ..base }), draw(base));
        }
        assert!(k2.iter().all(|&t| t == 1 || t == 3), "{k2:?}");
        assert!(k2.contains(&1) && k2.contains(&3));
        // p(1) ≈ 0.47, p(3) ≈ 0.43: top_p 0.5 keeps 1 and 3 only.
        let p5 = draw(Sampling { top_p: 0.5, ..base });
        assert!(p5.iter().all(|&t| t == 1 || t == 3), "{p5:?}");
        let p1 = draw(Sampling { top_p: 0.3, ..base });
        assert!(p1.iter().all(|&t| t == 1));
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(
            Sampler::new(Sampling {
                temperature: -1.0,
                ..Sampling::greedy()
            })
            .is_err()
        );
        assert!(
            Sampler::new(Sampling {
                top_p: 0.0,
                ..Sampling::greedy()
            })
            .is_err()
        );
    }
}
