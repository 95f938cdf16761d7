//! Images a plugin may see: synthetic ones, and files from the sets the user
//! granted with `--images`. Plugins get handles; paths never cross the
//! boundary, and names are only ever looked up in listings the host made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use imaging::{DecodeLimits, RgbImage, decode_image};

/// The host data behind an `image` resource.
pub struct ImageHandle {
    pub image: Arc<RgbImage>,
    pub name: String,
}

/// Largest image file a plugin may open, and largest text file.
pub const MAX_IMAGE_FILE: u64 = 256 << 20;
pub const MAX_TEXT_FILE: u64 = 16 << 20;

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "gif", "bmp"];

/// The sets granted for one run.
#[derive(Debug, Clone, Default)]
pub struct ImageSets {
    sets: BTreeMap<String, PathBuf>,
}

impl ImageSets {
    /// `NAME=DIR` or `DIR` (named after the folder). Fails on missing folders
    /// or duplicate names.
    pub fn parse(specs: &[String]) -> Result<ImageSets, String> {
        let mut sets = BTreeMap::new();
        for spec in specs {
            let (name, dir) = match spec.split_once('=') {
                Some((n, d)) if !n.is_empty() && !n.contains('/') => {
                    (n.to_string(), PathBuf::from(d))
                }
                _ => {
                    let dir = PathBuf::from(spec);
                    let name = dir
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
                        .unwrap_or_else(|| spec.clone());
                    (name, dir)
                }
            };
            if !dir.is_dir() {
                return Err(format!(
                    "--images {spec}: {} is not a folder",
                    dir.display()
                ));
            }
            let dir = dir
                .canonicalize()
                .map_err(|e| format!("--images {spec}: {e}"))?;
            if sets.insert(name.clone(), dir).is_some() {
                return Err(format!(
                    "--images: two sets are named {name:?}; name them with NAME=DIR"
                ));
            }
        }
        Ok(ImageSets { sets })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.sets.keys()
    }

    fn root(&self, set: &str) -> Result<&Path, String> {
        self.sets.get(set).map(PathBuf::as_path).ok_or_else(|| {
            let known: Vec<&str> = self.sets.keys().map(String::as_str).collect();
            format!(
                "no image set {set:?} was granted (granted: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// Every file under the set's folder (recursively, no symlinks out),
    /// relative names with `/`, sorted.
    fn files(&self, set: &str) -> Result<Vec<String>, String> {
        let root = self.root(set)?;
        let mut out = vec![];
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).map_err(|e| format!("reading set {set:?}: {e}"))?;
            for entry in entries.flatten() {
                let ft = match entry.file_type() {
                    Ok(ft) => ft,
                    Err(_) => continue,
                };
                let path = entry.path();
                if ft.is_dir() {
                    stack.push(path);
                } else if ft.is_file()
                    && let Ok(rel) = path.strip_prefix(root)
                {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn list_images(&self, set: &str) -> Result<Vec<String>, String> {
        Ok(self
            .files(set)?
            .into_iter()
            .filter(|f| {
                Path::new(f)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect())
    }

    /// The path of `name` in `set`, only if the host's own listing has it.
    fn resolve(&self, set: &str, name: &str) -> Result<PathBuf, String> {
        if !self.files(set)?.iter().any(|f| f == name) {
            return Err(format!("set {set:?} has no file {name:?}"));
        }
        Ok(self.root(set)?.join(name))
    }

    fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
        let len = std::fs::metadata(path)
            .map_err(|e| format!("{what}: {e}"))?
            .len();
        if len > limit {
            return Err(format!("{what} is {len} bytes, over the limit of {limit}"));
        }
        std::fs::read(path).map_err(|e| format!("{what}: {e}"))
    }

    pub fn open_image(
        &self,
        set: &str,
        name: &str,
        limits: DecodeLimits,
    ) -> Result<ImageHandle, String> {
        let path = self.resolve(set, name)?;
        let what = format!("{set}/{name}");
        let bytes = Self::read_limited(&path, MAX_IMAGE_FILE, &what)?;
        let image = decode_image(&what, &bytes, limits).map_err(|e| e.to_string())?;
        Ok(ImageHandle {
            image: Arc::new(image),
            name: name.to_string(),
        })
    }

    pub fn read_text(&self, set: &str, name: &str) -> Result<String, String> {
        let path = self.resolve(set, name)?;
        let what = format!("{set}/{name}");
        let bytes = Self::read_limited(&path, MAX_TEXT_FILE, &what)?;
        String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8 text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_listing_are_refused() {
        let root = std::env::temp_dir().join(format!("imgsets-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.png"), b"x").unwrap();
        std::fs::write(root.join("sub/b.JPG"), b"x").unwrap();
        std::fs::write(root.join("notes.json"), b"{}").unwrap();
        let sets = ImageSets::parse(&[format!("photos={}", root.display())]).unwrap();
        assert_eq!(
            sets.list_images("photos").unwrap(),
            vec!["a.png", "sub/b.JPG"]
        );
        assert_eq!(sets.read_text("photos", "notes.json").unwrap(), "{}");
        for bad in ["../etc/passwd", "/etc/passwd", "sub/../../x", "missing.png"] {
            assert!(sets.read_text("photos", bad).is_err(), "{bad}");
        }
        assert!(sets.list_images("other").unwrap_err().contains("photos"));
        assert!(ImageSets::parse(&["/nonexistent/dir".into()]).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
