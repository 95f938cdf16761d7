//! Micro-benchmark (not a test), run with
//! `cargo bench -p mlx-bind --bench binding_overhead`.
//!
//! 1. Per-op overhead of our binding against the same loop in C++
//!    (`cxx_baseline.cc`, compiled here with the same headers and library).
//! 2. f32 matmul GFLOP/s with the wheel's bundled reference BLAS against
//!    Debian's OpenBLAS, each interposed with LD_PRELOAD in a child process
//!    of this same binary, so both run side by side whatever the build linked.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use mlx::{Array, Dtype};

const OPENBLAS: &str = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0";

fn binding_loop() -> (f64, f64) {
    let x = Array::ones(&[16, 16], Dtype::F32).unwrap();
    let one = Array::scalar(1.0, Dtype::F32).unwrap();
    x.eval().unwrap();
    let (n_build, n_eval) = (200_000, 20_000);
    for _ in 0..1000 {
        x.add(&one).unwrap().eval().unwrap();
    }
    let t0 = Instant::now();
    for _ in 0..n_build {
        let y = x.add(&one).unwrap();
        std::hint::black_box(&y);
    }
    let t1 = Instant::now();
    for _ in 0..n_eval {
        x.add(&one).unwrap().eval().unwrap();
    }
    let t2 = Instant::now();
    (
        (t1 - t0).as_nanos() as f64 / n_build as f64,
        (t2 - t1).as_nanos() as f64 / n_eval as f64,
    )
}

fn cxx_loop() -> Option<(f64, f64)> {
    let libdir = PathBuf::from(mlx::BUILD_LIBDIR);
    let include = libdir.parent()?.join("include");
    let exe = std::env::temp_dir().join(format!("mlx_cxx_baseline_{}", std::process::id()));
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/cxx_baseline.cc");
    let status = Command::new("c++")
        .args(["-O2", "-std=c++20", "-w"])
        .arg(&src)
        .arg("-I")
        .arg(&include)
        .arg("-L")
        .arg(&libdir)
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .args(["-lmlx", "-o"])
        .arg(&exe)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let out = Command::new(&exe).output().ok()?;
    let _ = std::fs::remove_file(&exe);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some((it.next()??, it.next()??))
}

/// Best GFLOP/s of an n³ f32 matmul over a few repeats.
fn matmul_gflops(n: i32) -> f64 {
    let key = mlx::random::key(0).unwrap();
    let a = mlx::random::normal(&[n, n], Dtype::F32, 0.0, 1.0, &key).unwrap();
    let b = mlx::random::normal(&[n, n], Dtype::F32, 0.0, 1.0, &key).unwrap();
    mlx::eval(&[&a, &b]).unwrap();
    a.matmul(&b).unwrap().eval().unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        a.matmul(&b).unwrap().eval().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn child_matmul(preload: Option<&str>) -> Option<String> {
    let mut cmd = Command::new(std::env::current_exe().ok()?);
    cmd.arg("--matmul-child");
    if let Some(lib) = preload {
        cmd.env("LD_PRELOAD", lib);
    }
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    if std::env::args().any(|a| a == "--matmul-child") {
        let sizes = [256, 512, 1024];
        let v: Vec<String> = sizes
            .iter()
            .map(|&n| format!("{:.1}", matmul_gflops(n)))
            .collect();
        println!("{}", v.join(" "));
        return;
    }
    println!(
        "MLX {} ({} backend), built with BLAS: {}",
        mlx::version(),
        mlx::runtime_backend(),
        mlx::BUILD_BLAS
    );

    let (rb, re) = binding_loop();
    println!("\nper-op overhead (16x16 f32 add), ns per op");
    println!("| route | build node | build + eval |");
    println!("|---|---|---|");
    println!("| Rust binding | {rb:.0} | {re:.0} |");
    match cxx_loop() {
        Some((cb, ce)) => {
            println!("| C++ direct | {cb:.0} | {ce:.0} |");
            println!("| binding cost | {:+.0} | {:+.0} |", rb - cb, re - ce);
        }
        None => println!("| C++ direct | (c++ could not build the baseline) | |"),
    }

    println!("\nf32 matmul, GFLOP/s (best of 3)");
    println!("| BLAS | 256³ | 512³ | 1024³ |");
    println!("|---|---|---|---|");
    let row = |name: &str, r: Option<String>| match r {
        Some(s) => println!("| {name} | {} |", s.replace(' ', " | ")),
        None => println!("| {name} | unavailable | | |"),
    };
    let bundled = std::fs::read_dir(PathBuf::from(mlx::BUILD_LIBDIR).join("../../mlx_cpu.libs"))
        .ok()
        .and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains("libblas"))
        });
    match bundled {
        Some(lib) => row(
            "wheel's bundled BLAS",
            child_matmul(Some(&lib.to_string_lossy())),
        ),
        None => println!("| wheel's bundled BLAS | not found next to libmlx | | |"),
    }
    row(
        &format!("as this build links it ({})", mlx::BUILD_BLAS),
        child_matmul(None),
    );
    if std::path::Path::new(OPENBLAS).exists() {
        row("Debian OpenBLAS (LD_PRELOAD)", child_matmul(Some(OPENBLAS)));
    } else {
        println!("| Debian OpenBLAS | not installed ({OPENBLAS}) | | |");
    }
}
