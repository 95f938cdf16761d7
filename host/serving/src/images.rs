//! Images as requests name them: `data:` URIs, `file://` paths inside the
//! folders the user granted, and `http(s)://` URLs fetched with size and
//! time limits (when allowed).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use imaging::{DecodeLimits, RgbImage, decode_image};

use crate::wire::ApiError;

/// Where images may come from, and how large they may be.
#[derive(Debug, Clone)]
pub struct ImageSources {
    /// Folders `file://` URLs may read from (canonical paths).
    pub granted: Vec<PathBuf>,
    /// Whether `http(s)://` URLs are fetched.
    pub fetch: bool,
    pub fetch_timeout: Duration,
    /// Most bytes of one encoded image, from any source.
    pub max_bytes: u64,
    pub decode: DecodeLimits,
}

impl Default for ImageSources {
    fn default() -> Self {
        ImageSources {
            granted: vec![],
            fetch: true,
            fetch_timeout: Duration::from_secs(10),
            max_bytes: 32 << 20,
            decode: DecodeLimits::default(),
        }
    }
}

impl ImageSources {
    /// Grants `dir` to `file://` URLs.
    pub fn grant(&mut self, dir: &Path) -> std::io::Result<()> {
        self.granted.push(dir.canonicalize()?);
        Ok(())
    }

    /// The decoded image `url` names; `index` is its place in the request.
    pub fn load(&self, url: &str, index: usize) -> Result<Arc<RgbImage>, ApiError> {
        self.load_within(url, index, u64::MAX)
    }

    /// [`ImageSources::load`] with at most `room` bytes of decoded pixels
    /// (what the request's earlier images left of its budget).
    pub fn load_within(
        &self,
        url: &str,
        index: usize,
        room: u64,
    ) -> Result<Arc<RgbImage>, ApiError> {
        let name = format!("image {index}");
        let bytes = if let Some(rest) = url.strip_prefix("data:") {
            self.data_uri(rest)?
        } else if let Some(path) = url.strip_prefix("file://") {
            self.file(path)?
        } else if url.starts_with("http://") || url.starts_with("https://") {
            self.fetch(url)?
        } else {
            return Err(invalid(format!(
                "{name}: the URL must be a data: URI, a file:// path or an http(s):// URL"
            )));
        };
        let limits = DecodeLimits {
            max_pixels: self.decode.max_pixels.min(room / 3),
            ..self.decode
        };
        decode_image(&name, &bytes, limits)
            .map(Arc::new)
            .map_err(|e| invalid(e.to_string()))
    }

    fn data_uri(&self, rest: &str) -> Result<Vec<u8>, ApiError> {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("a data: URI has no comma before its data"))?;
        if !meta.ends_with(";base64") {
            return Err(invalid(
                "data: URIs must be base64 (data:image/png;base64,...)",
            ));
        }
        if data.len() as u64 > self.max_bytes / 3 * 4 + 4 {
            return Err(too_large(self.max_bytes));
        }
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| invalid(format!("the image's base64 does not decode: {e}")))
    }

    fn file(&self, path: &str) -> Result<Vec<u8>, ApiError> {
        let refused = || {
            invalid(format!(
                "file://{path} is not inside a folder granted with --images"
            ))
        };
        // Canonical, so that `..` and links cannot leave the folder.
        let real = Path::new(path).canonicalize().map_err(|_| refused())?;
        if !self.granted.iter().any(|dir| real.starts_with(dir)) {
            return Err(refused());
        }
        let file = std::fs::File::open(&real).map_err(|_| refused())?;
        read_limited(file, self.max_bytes)
    }

    fn fetch(&self, url: &str) -> Result<Vec<u8>, ApiError> {
        if !self.fetch {
            return Err(invalid(
                "this server does not fetch http(s) images (started with --no-fetch); send a data: URI",
            ));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout(self.fetch_timeout)
            .redirects(3)
            .build();
        let response = agent
            .get(url)
            .call()
            .map_err(|e| invalid(format!("fetching {url}: {e}")))?;
        read_limited(response.into_reader(), self.max_bytes)
            .map_err(|e| invalid(format!("fetching {url}: {}", e.message)))
    }
}

fn read_limited(r: impl Read, max: u64) -> Result<Vec<u8>, ApiError> {
    let mut bytes = vec![];
    r.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("reading the image: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(bytes)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message, Some("messages"))
}

fn too_large(max: u64) -> ApiError {
    invalid(format!("an image is over the limit of {} MiB", max >> 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let img = imaging::synth_image(20, 10, imaging::Pattern::Gradient, 1).unwrap();
        imaging::encode_image(&img, imaging::Encoding::Png).unwrap()
    }

    #[test]
    fn data_uris_decode_and_bad_ones_say_why() {
        let s = ImageSources::default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(png());
        let img = s.load(&format!("data:image/png;base64,{b64}"), 0).unwrap();
        assert_eq!((img.width, img.height), (20, 10));
        for (url, want) in [
            ("data:image/png;base64,%%%", "base64"),
            ("data:image/png,abc", "must be base64"),
            ("data:nocomma", "no comma"),
            ("ftp://x/y.png", "must be a data: URI"),
            ("data:image/png;base64,AAAA", "image 0"),
        ] {
            let e = s.load(url, 0).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(want), "{url}: {}", e.message);
        }
    }

    #[test]
    fn files_only_from_granted_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let granted = tmp.path().join("granted");
        std::fs::create_dir_all(&granted).unwrap();
        std::fs::write(granted.join("a.png"), png()).unwrap();
        std::fs::write(tmp.path().join("secret.png"), png()).unwrap();
        let mut s = ImageSources::default();
        let inside = format!("file://{}", granted.join("a.png").display());
        assert!(s.load(&inside, 0).is_err(), "nothing granted yet");
        s.grant(&granted).unwrap();
        assert_eq!(s.load(&inside, 0).unwrap().width, 20);
        let escape = format!("file://{}/../secret.png", granted.display());
        let e = s.load(&escape, 0).unwrap_err();
        assert!(
            e.message.contains("not inside a folder granted"),
            "{}",
            e.message
        );
    }

    /// Serves `body` with `status` to each connection on a local port, or
    /// says nothing (`None`), for the fetch tests.
    fn http_server(reply: Option<(u16, Vec<u8>)>) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                match &reply {
                    Some((status, body)) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(head.as_bytes());
                        let _ = s.write_all(body);
                    }
                    // Holds the connection open without answering.
                    None => std::thread::sleep(Duration::from_secs(30)),
                }
            }
        });
        format!("http://{addr}/image.png")
    }

    #[test]
    fn http_images_are_fetched_within_size_and_time_limits() {
        let s = ImageSources {
            fetch_timeout: Duration::from_secs(1),
            max_bytes: 4096,
            ..ImageSources::default()
        };
        let url = http_server(Some((200, png())));
        assert_eq!(s.load(&url, 0).unwrap().width, 20);

        let big = http_server(Some((200, vec![0u8; 10_000])));
        let e = s.load(&big, 0).unwrap_err();
        assert!(e.message.contains("over the limit"), "{}", e.message);

        let missing = http_server(Some((404, b"no".to_vec())));
        let e = s.load(&missing, 0).unwrap_err();
        assert!(e.message.contains("404"), "{}", e.message);

        let silent = http_server(None);
        let start = std::time::Instant::now();
        let e = s.load(&silent, 0).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(e.message.contains("fetching"), "{}", e.message);
    }

    #[test]
    fn an_image_past_the_requests_room_is_refused() {
        let s = ImageSources::default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(png());
        let url = format!("data:image/png;base64,{b64}");
        // 20x10 RGB: 600 bytes.
        assert!(s.load_within(&url, 0, 600).is_ok());
        let e = s.load_within(&url, 1, 599).unwrap_err();
        assert!(
            e.message.contains("image 1") && e.message.contains("limit"),
            "{}",
            e.message
        );
    }

    #[test]
    fn sizes_past_the_limit_are_refused_before_decoding() {
        let s = ImageSources {
            max_bytes: 100,
            ..ImageSources::default()
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 1000]);
        let e = s
            .load(&format!("data:image/png;base64,{b64}"), 0)
            .unwrap_err();
        assert!(e.message.contains("over the limit"), "{}", e.message);
        let off = ImageSources {
            fetch: false,
            ..ImageSources::default()
        };
        let e = off.load("http://127.0.0.1:1/x.png", 0).unwrap_err();
        assert!(e.message.contains("does not fetch"), "{}", e.message);
    }
}
