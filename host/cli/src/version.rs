//! What `host --version` prints: our version and commit, and MLX's.

/// The host version with the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HOST_GIT_COMMIT"),
    ")"
);

pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HOST_GIT_COMMIT"),
    ")\nMLX ",
    env!("HOST_MLX_VERSION"),
    ", ",
    env!("HOST_MLX_BACKEND"),
    " backend"
);

/// The git commit the binary was built from.
pub const COMMIT: &str = env!("HOST_GIT_COMMIT");
