//! The workload plugins of this repository, built by this crate's build
//! script: the built-in ones embedded as bytes, the test ones as paths.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The bytes of a built-in plugin, by file name (`resolution_sweep.wasm`)
/// or bare name (`resolution_sweep`).
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    let file = if name.ends_with(".wasm") {
        name.to_string()
    } else {
        format!("{name}.wasm")
    };
    BUILTIN.iter().find(|(n, _)| *n == file).map(|(_, b)| *b)
}

/// The path of a test plugin's component.
pub fn test_plugin(name: &str) -> std::path::PathBuf {
    let path = TEST_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no test plugin {name}"));
    std::path::PathBuf::from(path)
}
