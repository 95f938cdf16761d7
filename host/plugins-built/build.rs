//! Builds the plugins workspace (`plugins/`) for wasm32-wasip2 with a nested
//! cargo, so `cargo build` of the host also builds the components it embeds
//! and the test plugins its tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Built-in plugins, embedded in the binary.
const BUILTIN: [&str; 4] = [
    "resolution_sweep",
    "cache_verification",
    "image_set",
    "serving_sweep",
];
/// Test plugins, left on disk for the tests.
const TEST: [&str; 3] = ["probe", "future", "hostile"];

fn watch(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    watch(&plugins);
    watch(&root.join("wit"));
    let target_dir = root.join("target/wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(plugins.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    if plugins.join("Cargo.lock").exists() {
        cmd.arg("--locked");
    }
    // The outer build's settings are for the host target, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_PROFILE_")
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().expect("running cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins failed (see above). If the target is missing: \
             `rustup target add wasm32-wasip2`"
        );
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let built = target_dir.join("wasm32-wasip2/release");
    let mut code = String::from(
        "/// Built-in plugins: (file name, component bytes).\npub const BUILTIN: &[(&str, &[u8])] = &[\n",
    );
    for name in BUILTIN {
        let src = built.join(format!("{name}.wasm"));
        let dst = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        code.push_str(&format!(
            "    (\"{name}.wasm\", include_bytes!(\"{}\")),\n",
            dst.display()
        ));
    }
    code.push_str(
        "];\n\n/// Test plugins, by name.\npub const TEST_PLUGINS: &[(&str, &str)] = &[\n",
    );
    for name in TEST {
        let src = built.join(format!("{name}.wasm"));
        let dst = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        code.push_str(&format!("    (\"{name}\", \"{}\"),\n", dst.display()));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("plugins.rs"), code).unwrap();
}
