//! The decoder's linear layers, with the faster paths a backend allows:
//! our qmv kernel for single rows (decoding) of 4-bit matrices, and optional
//! dense copies of quantized matrices: bf16 for many rows (prefill) on CUDA,
//! where MLX's 4-bit matmul is several times slower than bf16; f32 for every
//! row on the CPU, where MLX's quantized kernels are slower than BLAS on f32.
//!
//! Projections that read the same input (q/k/v; gate/up) are fused into one
//! matrix when their formats match: one launch instead of two or three.

use mlx::nn::{Linear as Plain, Weight};
use mlx::{Array, Dtype};

use crate::error::Result;
use crate::kernels::Kernels;

pub struct Linear {
    plain: Plain,
    /// Dequantized copy for prefill (and decoding, with `dense_single_row`).
    dense: Option<Array>,
    dense_single_row: bool,
}

fn rows(x: &Array) -> i32 {
    let s = x.shape();
    s[..s.len().saturating_sub(1)].iter().product()
}

impl Linear {
    pub fn new(plain: Plain) -> Linear {
        Linear {
            plain,
            dense: None,
            dense_single_row: false,
        }
    }

    /// Keeps a dense copy of a quantized matrix in `dtype` for prefill, and
    /// for single rows too when `single_row` (where no faster kernel applies).
    pub fn add_dense_copy(&mut self, dtype: Dtype, single_row: bool) -> Result<()> {
        if let Some(d) = dense_copy(&self.plain.weight, dtype)? {
            self.dense = Some(d);
            self.dense_single_row = single_row;
        }
        Ok(())
    }

    /// The quantized matrix, when this layer is one without a bias (what the
    /// fused decoding kernels take).
    pub fn quantized(&self) -> Option<&mlx::Quantized> {
        match (&self.plain.weight, &self.plain.bias) {
            (Weight::Quantized(q), None) => Some(q),
            _ => None,
        }
    }

    /// Bytes a dense copy would take.
    pub fn dense_bytes(&self, dtype: Dtype) -> usize {
        dense_bytes(&self.plain.weight, dtype)
    }

    /// `x` through the layer, on `kernels` where they apply.
    pub fn forward(&self, kernels: &Kernels, x: &Array) -> Result<Array> {
        let y = match (&self.plain.weight, &self.dense) {
            (Weight::Quantized(q), _) if rows(x) == 1 && kernels.qmv_applies(x, q) => {
                kernels.qmv(x, q)?
            }
            (Weight::Quantized(_), Some(d)) if rows(x) > 1 || self.dense_single_row => {
                x.matmul(&d.t()?)?
            }
            _ => return Ok(self.plain.forward(x)?),
        };
        Ok(match &self.plain.bias {
            Some(b) => y.add(b)?,
            None => y,
        })
    }
}

/// Bytes a dense copy of `w` in `dtype` takes (0 for a matrix already dense).
pub fn dense_bytes(w: &Weight, dtype: Dtype) -> usize {
    match w {
        Weight::Quantized(q) => {
            q.logical_shape()
                .iter()
                .map(|&d| d as usize)
                .product::<usize>()
                * dtype.size_of()
        }
        Weight::Dense(_) => 0,
    }
}

/// A dense, evaluated copy of a quantized `w` in `dtype` (`None` when dense).
pub fn dense_copy(w: &Weight, dtype: Dtype) -> Result<Option<Array>> {
    match w {
        Weight::Quantized(q) => {
            let d = q.dequantize(dtype)?;
            d.eval()?;
            Ok(Some(d))
        }
        Weight::Dense(_) => Ok(None),
    }
}

/// Several projections of one input, fused when possible.
pub struct Projections {
    parts: Vec<Linear>,
    /// Output widths of the fused parts (empty when not fused).
    widths: Vec<i32>,
}

fn same_format(a: &Weight, b: &Weight) -> bool {
    match (a, b) {
        (Weight::Dense(x), Weight::Dense(y)) => x.dtype() == y.dtype(),
        (Weight::Quantized(x), Weight::Quantized(y)) => {
            x.bits == y.bits && x.group_size == y.group_size && x.scales.dtype() == y.scales.dtype()
        }
        _ => false,
    }
}

fn out_width(w: &Weight) -> i32 {
    match w {
        Weight::Dense(a) => a.dim(0),
        Weight::Quantized(q) => q.weight.dim(0),
    }
}

impl Projections {
    pub fn new(parts: Vec<Plain>) -> Result<Projections> {
        let fusable = parts
            .windows(2)
            .all(|p| same_format(&p[0].weight, &p[1].weight))
            && parts.iter().all(|p| p.bias.is_none());
        if !fusable || parts.len() < 2 {
            return Ok(Projections {
                parts: parts.into_iter().map(Linear::new).collect(),
                widths: vec![],
            });
        }
        let widths: Vec<i32> = parts.iter().map(|p| out_width(&p.weight)).collect();
        let cat = |f: &dyn Fn(&Plain) -> Array| -> Result<Array> {
            let arrays: Vec<Array> = parts.iter().map(f).collect();
            let refs: Vec<&Array> = arrays.iter().collect();
            Ok(Array::concatenate(&refs, 0)?)
        };
        let weight = match &parts[0].weight {
            Weight::Dense(_) => Weight::Dense(cat(&|p| match &p.weight {
                Weight::Dense(a) => a.clone(),
                Weight::Quantized(_) => unreachable!("same format checked"),
            })?),
            Weight::Quantized(q0) => {
                let pick = |f: fn(&mlx::Quantized) -> &Array| {
                    move |p: &Plain| match &p.weight {
                        Weight::Quantized(q) => f(q).clone(),
                        Weight::Dense(_) => unreachable!("same format checked"),
                    }
                };
                Weight::Quantized(mlx::Quantized {
                    weight: cat(&pick(|q| &q.weight))?,
                    scales: cat(&pick(|q| &q.scales))?,
                    biases: cat(&pick(|q| &q.biases))?,
                    group_size: q0.group_size,
                    bits: q0.bits,
                })
            }
        };
        Ok(Projections {
            parts: vec![Linear::new(Plain { weight, bias: None })],
            widths,
        })
    }

    pub fn forward(&self, kernels: &Kernels, x: &Array) -> Result<Vec<Array>> {
        if self.widths.is_empty() {
            return self.parts.iter().map(|p| p.forward(kernels, x)).collect();
        }
        let y = self.parts[0].forward(kernels, x)?;
        let mut cuts = vec![];
        let mut acc = 0;
        for w in &self.widths[..self.widths.len() - 1] {
            acc += w;
            cuts.push(acc);
        }
        Ok(y.split_at(&cuts, -1)?)
    }

    /// The single fused matrix, when the parts were fused.
    pub fn fused(&self) -> Option<&Linear> {
        (!self.widths.is_empty()).then(|| &self.parts[0])
    }

    pub fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.parts.iter_mut()
    }
}
