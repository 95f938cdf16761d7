//! Kernel sources as MLX receives them. MLX hashes a custom kernel's whole
//! source at every launch (`lab kernels`: a 6 KB source costs about 2 µs
//! more per launch than a short one), so the sources are kept short: comments
//! and indentation go, and the shared device functions (8–11 KB per kernel) are
//! written once to a file that the source `#include`s, when the engine is
//! given a directory for them.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The source without comments and indentation.
pub(crate) fn compact(source: &str) -> String {
    source
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]).trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A kernel's headers (device functions shared between kernels), each
/// compacted, in order, with a final line break (MLX appends its own code
/// right after, and a header may end with a directive).
pub(crate) fn inline_header(parts: &[&str]) -> String {
    let mut joined = parts
        .iter()
        .map(|p| compact(p))
        .collect::<Vec<_>>()
        .join("\n");
    joined.push('\n');
    joined
}

/// [`inline_header`], or an `#include` of a file under `dir` that holds it
/// when a directory is given and the file can be written there.
pub(crate) fn header_in(dir: Option<&Path>, parts: &[&str]) -> String {
    let joined = inline_header(parts);
    match dir {
        Some(dir) => include_of(dir, &joined).unwrap_or_else(|e| {
            eprintln!("warning: kernel headers stay inline: {e}");
            joined
        }),
        None => joined,
    }
}

/// Writes `text` to `dir/<blake3 of text>.cuh` (unless already there) and
/// returns the line that includes it. The name changes with the content, so
/// a file is never rewritten with other text, and MLX's compiled-module
/// cache, keyed by the source's hash, never serves a stale kernel.
fn include_of(dir: &Path, text: &str) -> Result<String, String> {
    let name = format!("{}.cuh", &blake3::hash(text.as_bytes()).to_hex()[..32]);
    let path = dir.join(name);
    let shown = path.to_str().ok_or("the header directory is not UTF-8")?;
    if shown.contains(['"', '\\', '\n']) {
        return Err(format!("{shown:?} cannot be named in an #include"));
    }
    if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Written aside, then renamed: a concurrent process never reads half a file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.{n}.tmp", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), shown))?;
    }
    Ok(format!("#include \"{shown}\"\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_names_the_content_and_keeps_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let text = "__device__ int one() { return 1; }\n";
        let line = include_of(dir.path(), text).unwrap();
        let path = line
            .strip_prefix("#include \"")
            .and_then(|l| l.strip_suffix("\"\n"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), text);
        // Same text, same file; other text, another file; a damaged file is mended.
        assert_eq!(include_of(dir.path(), text).unwrap(), line);
        assert_ne!(include_of(dir.path(), "int two;\n").unwrap(), line);
        std::fs::write(path, "garbage").unwrap();
        assert_eq!(include_of(dir.path(), text).unwrap(), line);
        assert_eq!(std::fs::read_to_string(path).unwrap(), text);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary files left"
        );
    }

    #[test]
    fn headers_are_included_from_a_directory_or_kept_inline() {
        let parts = ["// a\nint a;\n", "int b; // b\n"];
        assert_eq!(inline_header(&parts), "int a;\nint b;\n");
        assert_eq!(header_in(None, &parts), inline_header(&parts));
        let dir = tempfile::tempdir().unwrap();
        let line = header_in(Some(dir.path()), &parts);
        assert!(line.starts_with("#include \""), "{line}");
        // A directory that cannot hold files: inline, with a warning.
        let file = tempfile::NamedTempFile::new().unwrap();
        let fallback = header_in(Some(&file.path().join("sub")), &parts);
        assert_eq!(fallback, inline_header(&parts));
    }

    #[test]
    fn unusable_directories_are_refused() {
        let err = include_of(Path::new("/tmp/a\"b"), "x\n").unwrap_err();
        assert!(err.contains("#include"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(include_of(&file.path().join("sub"), "x\n").is_err());
    }

    #[test]
    fn compact_keeps_code_and_directives_on_their_lines() {
        let src =
            "// about\n#define NORM 1\n  int a = 1;  // why\n\n#pragma unroll\n  for (;;) {}\n";
        assert_eq!(
            compact(src),
            "#define NORM 1\nint a = 1;\n#pragma unroll\nfor (;;) {}"
        );
    }

    #[test]
    fn every_kernel_source_shrinks_and_keeps_its_directives() {
        for src in [
            include_str!("qmv4.cu"),
            include_str!("q4_dot.cuh"),
            include_str!("qmv4.cuh"),
            include_str!("attn.cuh"),
            include_str!("phases.cuh"),
            include_str!("attn_decode.cu"),
            include_str!("vision_rope.cu"),
            include_str!("text_qk.cu"),
            include_str!("swiglu.cu"),
            include_str!("gelu_tanh.cu"),
        ] {
            let c = compact(src);
            assert!(c.len() < src.len());
            let directives = |s: &str| {
                s.lines()
                    .filter(|l| l.trim_start().starts_with('#'))
                    .count()
            };
            assert_eq!(directives(&c), directives(src));
        }
    }
}
