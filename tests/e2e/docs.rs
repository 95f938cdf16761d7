//! The repository's documents point only at what exists: every relative
//! link and heading anchor of its markdown, and every repository path named
//! in backticks in markdown or in source comments.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The tracked files under `root` with one of `exts` (no build outputs, no
/// dependencies).
fn files(root: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git ls-files");
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|f| exts.iter().any(|e| f.ends_with(e)))
        .map(|f| root.join(f))
        .filter(|p| p.exists())
        .collect()
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and
/// `_` dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(md: &str) -> BTreeSet<String> {
    md.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// `[text](target)` targets of a markdown text.
fn links(md: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = md;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find(')') {
            out.push(rest[..j].to_string());
        }
    }
    out
}

/// Repository paths named in backticks: `host/...`, `docs/...` and the like,
/// without placeholders.
fn named_paths(text: &str) -> Vec<String> {
    const TOP: [&str; 9] = [
        "host/", "docs/", "bench/", "tests/", "scripts/", "plugins/", "fuzz/", "web/", "wit/",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.split([' ', ',', ':']).next().unwrap_or(""))
        .filter(|s| TOP.iter().any(|t| s.starts_with(t)))
        .filter(|s| !s.contains(['*', '<', '>', '{', '$', '…']) && !s.contains("..."))
        // Placeholders in capitals: `fuzz/regressions/TARGET/`, `bench/runs/STEM`.
        .filter(|s| {
            !s.split(['/', '.', '-'])
                .any(|seg| seg.len() > 2 && seg.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        })
        .map(|s| s.trim_end_matches(['.', ')']).to_string())
        .collect()
}

#[test]
fn markdown_links_and_anchors_resolve() {
    let root = root();
    let mut broken = vec![];
    for file in files(&root, &[".md"]) {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for link in links(&text) {
            if link.starts_with("http") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}", file.display()));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                if !headings.contains(anchor) {
                    broken.push(format!("{}: {link} (no such heading)", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn paths_named_in_docs_and_comments_exist() {
    let root = root();
    let mut missing = vec![];
    for file in files(
        &root,
        &[".md", ".rs", ".cc", ".h", ".cuh", ".cu", ".sh", ".py"],
    ) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for path in named_paths(&text) {
            if !root.join(&path).exists() {
                missing.push(format!("{}: {path}", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but absent:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_checks_themselves_find_what_they_look_for() {
    assert_eq!(
        slug("The step runner: CUDA graphs and PDL"),
        "the-step-runner-cuda-graphs-and-pdl"
    );
    assert_eq!(
        slug("Gate/up as persistent blocks"),
        "gateup-as-persistent-blocks"
    );
    assert_eq!(
        links("see [a](b.md#c) and [d](http://e)"),
        ["b.md#c", "http://e"]
    );
    assert_eq!(
        named_paths("in `host/engine/src/lib.rs`, not `target/x` nor `docs/<name>.md`"),
        ["host/engine/src/lib.rs"]
    );
}
