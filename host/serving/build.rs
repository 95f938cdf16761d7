// Binaries and tests of this crate link libmlx: give them its rpath.
fn main() {
    if let Ok(args) = std::env::var("DEP_MLX_LINK_ARGS") {
        for arg in args.split('\u{1f}') {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
