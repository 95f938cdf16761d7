//! A plugin that attacks the host's containment on request: what it makes
//! the host hold (images, engine inputs), store (logs, labels, errors), wait
//! for (sleeps), and what it makes the host print. Each mode records one
//! metric first, so tests can check that rows recorded before the attack
//! survive it.

use vlmbench_sdk::engine::{ContentPart, Message};
use vlmbench_sdk::progress::{self, Level};
use vlmbench_sdk::types::{ParamKind, PluginInfo};
use vlmbench_sdk::{Params, Workload, engine, images, param, request, results};

struct Hostile;

const MODES: &str = "hoard_images, image_parts, long_role, long_prompt, huge_image, log_flood, long_labels, \
                     long_error, not_finite, escapes, exit, forged_handle, sleep, top_k, jpeg_quality, try_reserve";

impl Workload for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: "0.1.0".into(),
            description: "Attacks the host's containment on request.".into(),
            params: vec![
                param("mode", ParamKind::Text, "hoard_images", MODES),
                param(
                    "count",
                    ParamKind::Integer,
                    "30",
                    "how many times (images, parts, lines)",
                ),
                param(
                    "size",
                    ParamKind::Integer,
                    "8192",
                    "an image side, or a length in KiB",
                ),
                param(
                    "seconds",
                    ParamKind::Integer,
                    "60",
                    "how long mode=sleep sleeps",
                ),
            ],
        }
    }

    fn run(p: Params) -> Result<(), String> {
        results::metric("before", 1.0, "count");
        let count = p.int("count")?.max(0) as usize;
        let size = p.int("size")?.max(1) as u32;
        let kib = |n: u32| "x".repeat(n as usize * 1024);
        match p.text("mode")?.as_str() {
            "hoard_images" => {
                // Keeps every image: the host holds their pixels.
                let mut held = vec![];
                for i in 0..count {
                    held.push(images::synthesize(size, size, "noise", i as u64)?);
                    results::metric("held", held.len() as f64, "images");
                }
                Ok(())
            }
            "image_parts" => {
                // One small image, referenced by `count` parts.
                let img = images::synthesize(32, 32, "noise", 1)?;
                let mut r = request::with_images("Describe.", 0, 2);
                r.messages[0].content = (0..count).map(|_| ContentPart::Image(0)).collect();
                engine::generate(&[&img], &r)
                    .map(|_| ())
                    .map_err(String::from)
            }
            "long_role" => {
                let mut r = request::text("Hi", 2);
                r.messages.push(Message {
                    role: kib(size),
                    content: vec![ContentPart::Text("Hi".into())],
                });
                engine::generate(&[], &r).map(|_| ()).map_err(String::from)
            }
            "long_prompt" => {
                let r = request::text(&"word ".repeat(size as usize * 1024 / 5), 2);
                engine::generate(&[], &r).map(|_| ()).map_err(String::from)
            }
            "huge_image" => {
                let img = images::synthesize(size, size, "noise", 1)?;
                engine::generate(&[&img], &request::with_images("Describe.", 1, 2))
                    .map(|_| ())
                    .map_err(String::from)
            }
            "log_flood" => {
                let line = kib(64);
                for _ in 0..count {
                    progress::log(Level::Info, &line);
                    results::note(&line);
                }
                Ok(())
            }
            "long_labels" => {
                for i in 0..count {
                    let mut r = request::text("Hi", 2);
                    r.label = format!("{i}{}", kib(size));
                    engine::generate(&[], &r)?;
                    results::metric(&kib(size), 1.0, &kib(size));
                }
                Ok(())
            }
            "long_error" => Err(kib(size)),
            "submit_flood" => {
                // Submits without ever waiting: the host's cap on pending
                // requests must stop it with a clear error.
                let img = images::synthesize(32, 32, "noise", 1)?;
                let mut pending = vec![];
                for i in 0..count {
                    let mut r = request::with_images("Describe.", 1, 2);
                    r.label = format!("flood {i}");
                    match engine::submit(&[&img], &r, None) {
                        Ok(p) => pending.push(p),
                        Err(e) => {
                            results::metric("submitted", pending.len() as f64, "requests");
                            return Err(e.into());
                        }
                    }
                }
                results::metric("submitted", pending.len() as f64, "requests");
                Ok(())
            }
            "never_wait" => {
                // Submits requests scheduled far ahead and returns: the run
                // must end at once, its requests cancelled, nothing left
                // running.
                let img = images::synthesize(32, 32, "noise", 1)?;
                let now = engine::clock_ms();
                for i in 0..count {
                    let mut r = request::with_images("Describe.", 1, 2);
                    r.label = format!("abandoned {i}");
                    std::mem::forget(engine::submit(&[&img], &r, Some(now + 3_600_000.0))?);
                }
                results::metric("after", 1.0, "count");
                Ok(())
            }
            "not_finite" => {
                results::metric("nan", f64::NAN, "");
                results::metric("inf", f64::INFINITY, "");
                results::metric("after", 1.0, "count");
                Ok(())
            }
            "escapes" => {
                let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[1;1H\rspoofed";
                progress::log(Level::Warn, evil);
                results::note(evil);
                results::table("t", &[evil.into()], &[vec![evil.into()]])?;
                Err(evil.into())
            }
            "exit" => std::process::exit(0),
            "forged_handle" => {
                // SAFETY (of the plugin, not the host): deliberately forges
                // a handle the host never gave out; the host must refuse it.
                let forged = unsafe { images::Image::from_handle(7) };
                results::metric("width", forged.width() as f64, "px");
                Ok(())
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(
                    p.int("seconds")?.max(0) as u64
                ));
                results::metric("woke", 1.0, "");
                Ok(())
            }
            "top_k" => {
                let mut r = request::text("Hi", 2);
                r.sampling.temperature = 1.0;
                r.sampling.top_k = u32::MAX;
                engine::generate(&[], &r).map(|_| ()).map_err(String::from)
            }
            "jpeg_quality" => {
                let img = images::synthesize(16, 16, "noise", 1)?;
                for q in [0u8, 255] {
                    if img.reencode("jpeg", q).is_ok() {
                        return Err(format!("JPEG quality {q} was accepted"));
                    }
                }
                Ok(())
            }
            "try_reserve" => {
                // Asks for more than the memory limit allows, gracefully.
                let mut v: Vec<u8> = Vec::new();
                match v.try_reserve((size as usize) << 20) {
                    Ok(()) => Err(format!("{size} MiB were reserved")),
                    Err(_) => {
                        results::metric("refused", 1.0, "");
                        Ok(())
                    }
                }
            }
            other => Err(format!("unknown mode {other}; modes: {MODES}")),
        }
    }
}

vlmbench_sdk::export_plugin!(Hostile);
