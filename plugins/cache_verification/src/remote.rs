//! The cache verification against a server (`host run --endpoint`): the
//! same steps, checked by outputs and timings only. A server's cache cannot
//! be switched off from here and its logits are not returned, so each step
//! that repeats an earlier request must give the same greedy text as that
//! first request did; the TTFT speed-up over the first time, and the cached
//! prompt tokens the server reports (`usage.prompt_tokens_details`), show
//! whether the server's cache worked.

use vlmbench_sdk::engine::{self, GenerateResponse};
use vlmbench_sdk::images::Image;
use vlmbench_sdk::table::Table;
use vlmbench_sdk::{Params, images, progress, request, results};

/// What a step's output is checked against.
enum Check<'a> {
    /// A first request: its output is the reference for later steps.
    First,
    /// The same request as the step named: the same text.
    SameAs(&'a str),
    /// A different image of the same size as the step named: different
    /// text is expected, equal text leaves a replayed cache possible.
    DifferentFrom(&'a str),
}

struct Steps {
    max_tokens: u32,
    table: Table,
    done: Vec<(String, GenerateResponse)>,
    failures: Vec<String>,
    inconclusive: Vec<String>,
    total: u32,
}

impl Steps {
    fn earlier(&self, id: &str) -> Result<&GenerateResponse, String> {
        self.done
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, r)| r)
            .ok_or_else(|| format!("step {id} has not run"))
    }

    fn step(
        &mut self,
        id: &str,
        desc: &str,
        img: &Image,
        prompt: &str,
        check: Check,
    ) -> Result<(), String> {
        progress::report(self.done.len() as u32, self.total, &format!("{id} {desc}"));
        let mut r = request::with_images(prompt, 1, self.max_tokens);
        r.ignore_eos = true;
        r.label = id.to_string();
        let got = engine::generate(&[img], &r)?;
        let (expected, reference, ok) = match check {
            Check::First => ("reference".to_string(), None, true),
            Check::SameAs(other) => {
                let first = self.earlier(other)?;
                let same = first.text == got.text;
                let first_ttft = first.timings.ttft_ms;
                if !same {
                    self.failures.push(format!(
                        "{id} {desc}: the text differs from step {other}'s, the same request"
                    ));
                }
                (format!("same text as {other}"), Some(first_ttft), same)
            }
            Check::DifferentFrom(other) => {
                if self.earlier(other)?.text == got.text {
                    self.inconclusive.push(format!(
                        "{id} {desc}: the same text as step {other}, a different image; either the model describes both alike or the server replayed a cached answer"
                    ));
                }
                (format!("other text than {other}"), None, true)
            }
        };
        let reused = got
            .reused_tokens
            .map_or("—".to_string(), |t| format!("{t}/{}", got.prompt_tokens));
        let ttft = got.timings.ttft_ms;
        self.table.row(vec![
            id.into(),
            desc.into(),
            expected,
            reused,
            format!("{ttft:.1} ms"),
            reference.map_or("—".into(), |t| format!("{t:.1} ms")),
            reference.map_or("—".into(), |t| format!("{:.1}x", t / ttft)),
            if ok { "✓".into() } else { "✗".into() },
        ]);
        self.done.push((id.to_string(), got));
        Ok(())
    }
}

pub fn run(p: Params) -> Result<(), String> {
    let max_tokens = p.int_in("max_tokens", 1, 4096)? as u32;
    let size = p.int_in("size", 16, 4096)? as u32;
    let seed = p.int("seed")? as u64;
    let sides = super::sides(&p)?;
    let server = engine::model();
    results::note(&format!(
        "This run measured a server ({}): the host cannot switch its cache off, read its logits or see its cache's decisions, so every step was checked by outputs and timings only. A repeated request must give the same greedy text as its first time; its TTFT against the first time and the cached prompt tokens the server reports (— where it reports none) show what its cache did.",
        server
            .endpoint
            .as_ref()
            .map_or(String::new(), |e| e.url.clone())
    ));
    let (q1, q2) = ("Describe this image.", "What colours does this image have?");
    // One warm-up per size on throwaway images: a server's first request at
    // a shape may pay one-off costs that belong to no step.
    let mut warm = vec![size];
    warm.extend(sides.iter().copied().filter(|&s| s != size));
    for &s in &warm {
        let im = images::synthesize(s, s, "noise", seed.wrapping_add(99))?;
        let mut r = request::with_images(q1, 1, 2);
        r.warmup = true;
        r.label = format!("warm-up {s}x{s}");
        engine::generate(&[&im], &r)?;
    }
    let mut steps = Steps {
        max_tokens,
        table: Table::new(&[
            "Step",
            "Description",
            "Expected",
            "Reused",
            "TTFT",
            "TTFT first time",
            "Speed-up",
            "Status",
        ]),
        done: vec![],
        failures: vec![],
        inconclusive: vec![],
        total: 11 + 2 * sides.len() as u32,
    };
    let img =
        |pattern: &str, s: u32, k: u64| images::synthesize(s, s, pattern, seed.wrapping_add(k));

    let a = img("gradient", size, 1)?;
    steps.step("1a", "First image+prompt", &a, q1, Check::First)?;
    steps.step("1b", "Same image+prompt", &a, q1, Check::SameAs("1a"))?;
    steps.step("1c", "Different prompt", &a, q2, Check::First)?;
    steps.step("1d", "Return to original", &a, q1, Check::SameAs("1a"))?;

    let (ia, ib) = (img("gradient", size, 2)?, img("noise", size, 3)?);
    steps.step("2a", "Image A first request", &ia, q1, Check::First)?;
    steps.step("2b", "Image B first request", &ib, q1, Check::First)?;
    steps.step("2c", "Image A again", &ia, q1, Check::SameAs("2a"))?;

    for (i, &s) in sides.iter().enumerate() {
        let im = img("gradient", s, 10 + i as u64)?;
        let first = format!("3.{}a", i + 1);
        steps.step(&first, &format!("{s}x{s} first"), &im, q1, Check::First)?;
        steps.step(
            &format!("3.{}b", i + 1),
            &format!("{s}x{s} again"),
            &im,
            q1,
            Check::SameAs(&first),
        )?;
    }

    let (x, y) = (img("noise", size, 40)?, img("noise", size, 41)?);
    steps.step("4a", "Image X", &x, q1, Check::First)?;
    steps.step(
        "4b",
        "Image Y, same size as X",
        &y,
        q1,
        Check::DifferentFrom("4a"),
    )?;

    let base = img("gradient", size, 50)?;
    let png = base.reencode("png", 100)?;
    let webp = base.reencode("webp", 100)?;
    if png.content_hash() != webp.content_hash() {
        return Err("lossless re-encoding changed the pixels".into());
    }
    steps.step("5a", "Pixels as PNG", &png, q1, Check::First)?;
    steps.step("5b", "Same pixels as WebP", &webp, q1, Check::SameAs("5a"))?;

    let total = steps.done.len();
    progress::report(total as u32, steps.total, "done");
    steps
        .table
        .record("Prefix cache verification (outputs and timings only)")?;
    for i in &steps.inconclusive {
        results::note(&format!("Inconclusive: {i}."));
    }
    super::verdict(
        &steps.failures,
        total,
        "checked by outputs and timings only: a server's cache decisions and logits are not visible",
    );
    Ok(())
}
