//! `lab kernels`: the matrix-vector products of decoding (MLX's 4-bit
//! kernel, ours, bf16) and the vision tower's attention, at the 8B model's
//! shapes, on this device (`docs/experiments.md`, "Protocols and
//! instruments").

use std::time::Instant;

use anyhow::Result;
use engine::EngineOptions;
use engine::kernels::{KernelOptions, Kernels};
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

pub fn run(opts: &EngineOptions) -> Result<()> {
    let mut launch = opts.tuning.launch.clone();
    launch.sms = mlx::cuda::sm_count().map_or(0, |n| n as i32);
    let (kernels, warning) = Kernels::start(KernelOptions {
        enabled: opts.tuning.kernels,
        launch,
        header_dir: opts.kernel_header_dir.clone(),
    });
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let on = kernels.enabled();
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
                kernels.qmv(&x, &qs[i % sets]).map_err(|e| mlx::Error {
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
    if on {
        decode_attention(&kernels)?;
    }
    if mlx::runtime_backend() == "cuda" {
        node_overhead()?;
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

/// One decoding step of attention at the 8B shapes (32 query heads, 8 KV
/// heads, head dim 128): our kernels (norm, RoPE, cache write, flash-decoding
/// and join) against MLX's SDPA alone on already prepared inputs.
fn decode_attention(kernels: &Kernels) -> Result<()> {
    use engine::kernels::attention::{DecodeStep, Heads, decode};
    let heads = Heads {
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
    };
    println!("\n| decode attention, context | ours (whole step) | MLX SDPA only |");
    println!("|---|---|---|");
    for len in [128, 1024, 2048, 4096] {
        let cap = len + 256;
        let keys = random::normal(&[1, 8, cap, 128], Dtype::BF16, 0.0, 1.0, &random::key(1)?)?;
        let values = random::normal(&[1, 8, cap, 128], Dtype::BF16, 0.0, 1.0, &random::key(2)?)?;
        let qkv = random::normal(&[1, 1, 48 * 128], Dtype::BF16, 0.0, 1.0, &random::key(3)?)?;
        let norm = Array::ones(&[128], Dtype::BF16)?;
        let q = random::normal(&[1, 32, 1, 128], Dtype::BF16, 0.0, 1.0, &random::key(4)?)?;
        let (k, v) = (keys.slice_axis(2, 0, len)?, values.slice_axis(2, 0, len)?);
        mlx::eval(&[&keys, &values, &qkv, &norm, &q])?;
        let meta = Array::from_i32(&[len, len, 0, 0], &[4])?;
        // One counter array per call: the 32 calls are independent and may overlap.
        let counters: Vec<Array> = (0..32)
            .map(|_| Array::zeros(&[64], Dtype::I32)?.contiguous())
            .collect::<mlx::Result<_>>()?;
        mlx::eval(&counters.iter().collect::<Vec<_>>())?;
        let ours = time(32, &|i| {
            decode(
                kernels,
                &DecodeStep {
                    qkv: &qkv,
                    q_norm: &norm,
                    k_norm: &norm,
                    keys: &keys,
                    values: &values,
                    meta: &meta,
                    counters: &counters[i],
                    len,
                    rms_eps: 1e-6,
                    rope_theta: 5e6,
                },
                heads,
            )
            .map_err(|e| mlx::Error {
                op: "decode attention",
                message: e.to_string(),
            })
        })?;
        let sdpa = time(32, &|_| {
            scaled_dot_product_attention(&q, &k, &v, 0.088, Mask::None)
        })?;
        println!("| {len} | {:.1} µs | {:.1} µs |", ours * 1e6, sdpa * 1e6);
    }
    Ok(())
}

/// Host cost of one graph node: a chain of 512 one-thread custom kernels
/// (short source, and the same padded to 6 KB as our real kernels' sources
/// are) against a chain of 512 MLX adds, split into building the graph and
/// evaluating it.
fn node_overhead() -> Result<()> {
    use mlx::kernel::{Kernel, KernelSpec, Launch, TemplateArg};
    const NODES: usize = 512;
    let body = "if (threadIdx.x == 0) out[0] = x[0] + static_cast<T>(1.f);";
    let padded = format!("{body}\n/*{}*/", "x".repeat(6000));
    println!("\n| graph node (chain of {NODES}) | build µs/node | eval µs/node |");
    println!("|---|---|---|");
    let x = Array::ones(&[1], Dtype::BF16)?;
    x.eval()?;
    let chain = |label: &str, step: &dyn Fn(&Array) -> Result<Array>| -> Result<()> {
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..4 {
            let t = Instant::now();
            let mut y = x.clone();
            for _ in 0..NODES {
                y = step(&y)?;
            }
            let built = t.elapsed().as_secs_f64();
            let t = Instant::now();
            y.eval()?;
            mlx::synchronize()?;
            let evaluated = t.elapsed().as_secs_f64();
            if built + evaluated < best.0 + best.1 {
                best = (built, evaluated);
            }
        }
        println!(
            "| {label} | {:.2} | {:.2} |",
            best.0 * 1e6 / NODES as f64,
            best.1 * 1e6 / NODES as f64
        );
        Ok(())
    };
    chain("MLX add", &|y| Ok(y.add(&x)?))?;
    for (label, source) in [
        ("custom kernel, short source", body.to_string()),
        ("custom kernel, 6 KB source", padded),
    ] {
        let kernel = Kernel::cuda(
            &KernelSpec {
                name: if source.len() > 1000 {
                    "vlmbench_node_long"
                } else {
                    "vlmbench_node"
                },
                inputs: &["x"],
                outputs: &["out"],
                source: &source,
                header: "",
                ensure_row_contiguous: true,
            },
            0,
        )?;
        chain(label, &|y| {
            Ok(kernel
                .call(
                    &[y],
                    &Launch {
                        output_shapes: vec![vec![1]],
                        output_dtypes: vec![Dtype::BF16],
                        grid: [32, 1, 1],
                        threadgroup: [32, 1, 1],
                        template: vec![("T", TemplateArg::Dtype(Dtype::BF16))],
                        init_value: None,
                    },
                )?
                .remove(0))
        })?;
    }
    Ok(())
}
