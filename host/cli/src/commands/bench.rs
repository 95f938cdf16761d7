//! `host bench kernels`: the matrix-vector products of decoding (MLX's 4-bit
//! kernel, ours, bf16) and the vision tower's attention, at the 8B model's
//! shapes, on this device. Numbers for `bench/gpu/NOTES.md`.

use std::time::Instant;

use anyhow::Result;
use mlx::fast::{Mask, scaled_dot_product_attention};
use mlx::{Array, Dtype, random};

/// Seconds per call: `reps` independent calls evaluated together, best of 5.
fn time(reps: usize, f: &dyn Fn(usize) -> mlx::Result<Array>) -> Result<f64> {
    let warm: Vec<Array> = (0..reps).map(f).collect::<mlx::Result<_>>()?;
    mlx::eval(&warm.iter().collect::<Vec<_>>())?;
    mlx::synchronize()?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let outs: Vec<Array> = (0..reps).map(f).collect::<mlx::Result<_>>()?;
        mlx::eval(&outs.iter().collect::<Vec<_>>())?;
        mlx::synchronize()?;
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(best)
}

pub fn kernels() -> Result<()> {
    let on = engine::kernels::enable().is_ok();
    println!(
        "device {:?}, MLX {} ({}), our kernels {}",
        mlx::default_device(),
        mlx::version(),
        mlx::runtime_backend(),
        if on { "on" } else { "off" }
    );
    println!("\n| matrix (N x K) | MLX 4-bit | ours 4-bit | bf16 | ours GB/s | MLX GB/s |");
    println!("|---|---|---|---|---|---|");
    for (n, k) in [
        (6144, 4096),
        (4096, 4096),
        (24576, 4096),
        (4096, 12288),
        (151936, 4096),
    ] {
        // Four weight sets so the 50 MB L2 cannot serve repeated calls.
        let sets: usize = 4;
        let mut qs = vec![];
        let mut dense = vec![];
        for s in 0..sets {
            let w = random::normal(&[n, k], Dtype::BF16, 0.0, 0.02, &random::key(s as u64)?)?;
            let q = mlx::quantize(&w, 64, 4)?;
            mlx::eval(&[&q.weight, &q.scales, &q.biases, &w])?;
            qs.push(q);
            dense.push(w);
        }
        let x = random::normal(&[1, k], Dtype::BF16, 0.0, 1.0, &random::key(9)?)?;
        let bytes = (n as f64) * (k as f64) / 2.0 + 2.0 * (n as f64) * (k as f64 / 64.0) * 2.0;
        let t_mlx = time(64, &|i| qs[i % sets].matmul_t(&x))?;
        let t_ours = if on {
            Some(time(64, &|i| {
                engine::kernels::qmv(&x, &qs[i % sets]).map_err(|e| mlx::Error {
                    op: "qmv",
                    message: e.to_string(),
                })
            })?)
        } else {
            None
        };
        let t_bf16 = time(64, &|i| x.matmul(&dense[i % sets].t()?))?;
        println!(
            "| {n} x {k} | {:.1} µs | {} | {:.1} µs | {} | {:.0} |",
            t_mlx * 1e6,
            t_ours.map_or("–".into(), |t| format!("{:.1} µs", t * 1e6)),
            t_bf16 * 1e6,
            t_ours.map_or("–".into(), |t| format!("{:.0}", bytes / t / 1e9)),
            bytes / t_mlx / 1e9
        );
    }
    println!("\n| attention (B, H, L, D) | bf16 fused | ms |");
    println!("|---|---|---|");
    for (l, d) in [(2040 * 4, 72), (2040 * 4, 80), (2040 * 4, 128), (2062, 128)] {
        let heads = if d == 128 && l == 2062 { 32 } else { 16 };
        let q = random::normal(&[1, heads, l, d], Dtype::BF16, 0.0, 1.0, &random::key(1)?)?;
        q.eval()?;
        let mask = if l == 2062 { Mask::Causal } else { Mask::None };
        let t = time(4, &|_| scaled_dot_product_attention(&q, &q, &q, 0.1, mask))?;
        println!(
            "| (1, {heads}, {l}, {d}) | {} | {:.2} |",
            if l == 2062 { "causal" } else { "none" },
            t * 1e3
        );
    }
    Ok(())
}
