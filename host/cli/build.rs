// Links libmlx with its rpath (from mlx-bind's build script) and records the
// git commit and MLX build for `host --version`.
fn main() {
    if let Ok(args) = std::env::var("DEP_MLX_LINK_ARGS") {
        for arg in args.split('\u{1f}') {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HOST_GIT_COMMIT={commit}");
    // Rebuild when the commit changes: HEAD, and the branch file it points at.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let git = std::path::Path::new(&manifest).join("../../.git");
    println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        let loose = git.join(branch);
        let watched = if loose.exists() {
            loose
        } else {
            git.join("packed-refs")
        };
        if watched.exists() {
            println!("cargo:rerun-if-changed={}", watched.display());
        }
    }
    let version = std::env::var("DEP_MLX_VERSION").unwrap_or_else(|_| "0.32.4".into());
    let backend = std::env::var("DEP_MLX_BACKEND").unwrap_or_else(|_| "cpu".into());
    println!("cargo:rustc-env=HOST_MLX_VERSION={version}");
    println!("cargo:rustc-env=HOST_MLX_BACKEND={backend}");
}
