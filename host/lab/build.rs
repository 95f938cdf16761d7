// The lab binary links libmlx: give it libmlx's rpath (from mlx-bind's build
// script).
fn main() {
    if let Ok(args) = std::env::var("DEP_MLX_LINK_ARGS") {
        for arg in args.split('\u{1f}') {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
