// The project's WIT with the package version bumped to 0.3.0: a plugin built
// for a host that does not exist yet.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let src = std::path::Path::new(&manifest).join("../../../wit/workload.wit");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = std::fs::read_to_string(&src)
        .unwrap()
        .replace("vlmbench:workload@0.2.0", "vlmbench:workload@0.3.0");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("wit");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("workload.wit"), text).unwrap();
}
