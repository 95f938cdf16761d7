//! Finds MLX (from its official wheel, or `MLX_DIR`), checks its version,
//! compiles our C++ shim against its headers and links `libmlx` with an rpath.
//!
//! Backend: `MLX_BACKEND=cpu|cuda|metal`, else the `cuda` feature, else Metal on
//! macOS and CPU elsewhere. The wheel is fetched once with `pip download` into
//! `<workspace>/.cache/mlx` (or `MLX_CACHE_DIR`); no Python is needed at run time.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const MLX_VERSION: &str = "0.32.4";

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    fn detect() -> Backend {
        let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
        match env::var("MLX_BACKEND").ok().as_deref() {
            Some("cpu") => Backend::Cpu,
            Some("cuda") => Backend::Cuda,
            Some("metal") => Backend::Metal,
            Some(other) => fail(&format!(
                "MLX_BACKEND={other} is not a backend; use cpu, cuda or metal"
            )),
            None if env::var_os("CARGO_FEATURE_CUDA").is_some() => Backend::Cuda,
            None if target_os == "macos" => Backend::Metal,
            None => Backend::Cpu,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }

    fn wheel(self) -> &'static str {
        match self {
            Backend::Cpu => "mlx-cpu",
            Backend::Cuda => "mlx-cuda-13",
            Backend::Metal => "mlx-metal",
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: {msg}\n");
    panic!("{msg}");
}

fn main() {
    for var in ["MLX_DIR", "MLX_BACKEND", "MLX_CACHE_DIR", "MLX_BLAS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=cxx/shim.h");
    println!("cargo:rerun-if-changed=cxx/shim.cc");
    for f in [
        "cxx/staging.cc",
        "cxx/cuda_api.h",
        "cxx/cuda_api.cc",
        "cxx/cuda_launch.cc",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed=src/ffi.rs");

    let backend = Backend::detect();
    let mlx_dir = match env::var_os("MLX_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fetch_wheel(backend),
    };
    let include = mlx_dir.join("include");
    let lib = mlx_dir.join("lib");
    check_layout(&mlx_dir, &include, &lib);
    check_version(&include);

    cxx_build::bridge("src/ffi.rs")
        .file("cxx/shim.cc")
        .file("cxx/staging.cc")
        .file("cxx/cuda_api.cc")
        .file("cxx/cuda_launch.cc")
        .include(&include)
        .std("c++20")
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("mlx_shim");

    let lib_str = lib.display().to_string();
    println!("cargo:rustc-link-search=native={lib_str}");
    println!("cargo:rustc-link-lib=dylib=mlx");

    // Link arguments are not inherited by dependents, so they are also
    // published (as DEP_MLX_LINK_ARGS) for the build scripts of the crates that
    // make binaries. The rpath lets binaries find libmlx without LD_LIBRARY_PATH;
    // `$ORIGIN/mlx/lib` serves a binary shipped next to a copy of the library.
    let mut link_args = vec![
        format!("-Wl,-rpath,{lib_str}"),
        "-Wl,-rpath,$ORIGIN/mlx/lib".to_string(),
    ];
    if backend == Backend::Cuda {
        // libmlx's CUDA libraries come from the NVIDIA wheels on the GPU machine;
        // they need not exist where we link.
        link_args.push("-Wl,--allow-shlib-undefined".to_string());
    }
    let blas = optimised_blas(backend);
    let blas_name = blas.as_deref().unwrap_or("bundled").to_string();
    if let Some(blas) = blas {
        // Loaded ahead of the wheel's reference BLAS, whose cblas symbols it then
        // interposes (see README "CPU speed").
        link_args.push("-Wl,--no-as-needed".to_string());
        link_args.push(blas);
        link_args.push("-Wl,--as-needed".to_string());
    }
    for arg in &link_args {
        println!("cargo:rustc-link-arg={arg}");
    }
    println!("cargo:link_args={}", link_args.join("\u{1f}"));
    println!("cargo:libdir={lib_str}");
    println!("cargo:version={MLX_VERSION}");
    println!("cargo:backend={}", backend.name());
    println!("cargo:rustc-env=MLX_BUILD_BACKEND={}", backend.name());
    println!("cargo:rustc-env=MLX_BUILD_LIBDIR={lib_str}");
    println!("cargo:rustc-env=MLX_BUILD_VERSION={MLX_VERSION}");
    println!("cargo:rustc-env=MLX_BUILD_BLAS={}", blas_name);
}

const OPENBLAS_CANDIDATES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
];

/// Which BLAS serves MLX's CPU matmuls. The CPU wheel bundles the reference
/// BLAS (about 6 GFLOP/s on a 1024³ f32 matmul here); OpenBLAS did 371 in the
/// same run (`cargo bench -p mlx-bind`), so Linux CPU builds link it ahead of
/// the bundled one when it is installed. `MLX_BLAS=bundled` opts out,
/// `MLX_BLAS=openblas` insists.
fn optimised_blas(backend: Backend) -> Option<String> {
    let found = || {
        OPENBLAS_CANDIDATES
            .iter()
            .find(|p| Path::new(p).exists())
            .map(|p| p.to_string())
    };
    match env::var("MLX_BLAS").ok().as_deref() {
        Some("bundled") => None,
        Some("openblas") => Some(found().unwrap_or_else(|| {
            fail(
                "MLX_BLAS=openblas but libopenblas.so.0 was not found; install it \
                 (Debian: apt-get install libopenblas0-pthread) or unset MLX_BLAS",
            )
        })),
        None | Some("")
            if backend == Backend::Cpu
                && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") =>
        {
            let lib = found();
            if lib.is_none() {
                println!(
                    "cargo:warning=OpenBLAS not found: MLX's CPU matmuls will use the wheel's reference \
                     BLAS, about 60x slower. Install libopenblas0-pthread (Debian) and rebuild."
                );
            }
            lib
        }
        None | Some("") => None,
        Some(other) => fail(&format!(
            "MLX_BLAS={other} is not known; use openblas or bundled"
        )),
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    manifest
        .ancestors()
        .nth(2)
        .expect("host/mlx sits two levels below the workspace root")
        .to_path_buf()
}

/// Downloads and unpacks the wheel once; returns the folder holding
/// `include/` and `lib/` (the wheel's `mlx/`).
fn fetch_wheel(backend: Backend) -> PathBuf {
    let cache = env::var_os("MLX_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache").join("mlx"));
    let unpacked = cache.join(format!("{}-{MLX_VERSION}", backend.wheel()));
    let mlx_dir = unpacked.join("mlx");
    if mlx_dir.join("include/mlx/mlx.h").exists() {
        return mlx_dir;
    }
    let download = cache.join("wheels");
    std::fs::create_dir_all(&download).unwrap_or_else(|e| {
        fail(&format!(
            "cannot create the MLX cache {}: {e}",
            download.display()
        ))
    });
    let spec = format!("{}=={MLX_VERSION}", backend.wheel());
    eprintln!("fetching {spec} into {}", download.display());
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .arg("--dest")
        .arg(&download)
        .arg(&spec)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`{python} -m pip download {spec}` failed ({s}). Check the network access to PyPI, \
             or download the wheel yourself, unzip it and set MLX_DIR to its `mlx` folder"
        )),
        Err(e) => fail(&format!(
            "cannot run {python} to fetch {spec}: {e}. Install Python 3 with pip, or set \
             MLX_DIR to an unpacked MLX {MLX_VERSION} wheel's `mlx` folder"
        )),
    }
    let prefix = backend.wheel().replace('-', "_") + "-" + MLX_VERSION;
    let wheel = std::fs::read_dir(&download)
        .ok()
        .and_then(|entries| {
            entries.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
            })
        })
        .unwrap_or_else(|| {
            fail(&format!(
                "pip reported success but no {prefix}*.whl is in {}",
                download.display()
            ))
        });
    let staging = cache.join(format!(".unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new(&python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&staging)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        fail(&format!("cannot unpack {}", wheel.display()));
    }
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::rename(&staging, &unpacked)
        .unwrap_or_else(|e| fail(&format!("cannot move the unpacked wheel into place: {e}")));
    mlx_dir
}

fn check_layout(mlx_dir: &Path, include: &Path, lib: &Path) {
    let lib_name = if cfg!(target_os = "macos") {
        "libmlx.dylib"
    } else {
        "libmlx.so"
    };
    if !include.join("mlx/mlx.h").exists() || !lib.join(lib_name).exists() {
        fail(&format!(
            "{} is not an MLX installation: expected include/mlx/mlx.h and lib/{lib_name}. \
             MLX_DIR must point at the `mlx` folder of an unpacked MLX {MLX_VERSION} wheel \
             (e.g. .cache/mlx/mlx-cpu-{MLX_VERSION}/mlx); unset it to let the build fetch the wheel",
            mlx_dir.display()
        ));
    }
}

fn check_version(include: &Path) {
    let header = std::fs::read_to_string(include.join("mlx/version.h")).unwrap_or_default();
    let part = |name: &str| {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define MLX_VERSION_{name} ")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let found = format!("{}.{}.{}", part("MAJOR"), part("MINOR"), part("PATCH"));
    if found != MLX_VERSION {
        fail(&format!(
            "MLX {found} found in {}, but this project is built and tested against {MLX_VERSION}. \
             Point MLX_DIR at an MLX {MLX_VERSION} wheel, or unset it to fetch the right one",
            include.display()
        ));
    }
}
