//! The runner's side of a plugin run: every engine call goes through here, is
//! recorded in the store as it completes, and shows on the terminal.

use std::sync::{Arc, Mutex};

use engine::Engine;
use runtime::bindings::wit_engine as w;
use runtime::bindings::wit_progress::Level;
use runtime::{ServiceError, Services};
use store::{ImageDesc, RequestRow, Store};

use super::convert;
use super::terminal::Terminal;

/// Shared by the runner and the plugin's store (which needs `'static`).
pub struct Shared {
    pub engine: Mutex<Engine>,
    pub store: Mutex<Store>,
    pub terminal: Mutex<Terminal>,
    pub device: String,
}

pub struct RunServices {
    pub shared: Arc<Shared>,
    pub run_id: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock must not hide the results recorded so far.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunServices {
    fn store_err(e: store::Error) -> ServiceError {
        ServiceError::fatal(format!("cannot record the result: {e}"))
    }
}

fn preview(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        text.chars().take(MAX).collect::<String>() + "…"
    }
}

impl Services for RunServices {
    fn model_info(&mut self) -> w::ModelInfo {
        let engine = lock(&self.shared.engine);
        convert::model_info(engine.info(), &self.shared.device)
    }

    fn generate(
        &mut self,
        images: Vec<Arc<engine::image::RgbImage>>,
        request: w::GenerateRequest,
    ) -> Result<w::GenerateResponse, ServiceError> {
        let descs: Vec<ImageDesc> = images
            .iter()
            .map(|i| ImageDesc {
                name: String::new(),
                width: i.width,
                height: i.height,
                blake3: i.content_hash().to_hex().to_string(),
            })
            .collect();
        let req = convert::request(&request, images).map_err(ServiceError::rejected)?;
        let started_at = store::now_rfc3339();
        let result = lock(&self.shared.engine).generate(&req, &mut |_| {});
        let resp = match result {
            Ok(r) => r,
            Err(engine::Error::Cancelled) => {
                return Err(ServiceError::fatal("the run was stopped"));
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = lock(&self.shared.store).record_log(
                    self.run_id,
                    "error",
                    &format!("generate failed: {msg}"),
                );
                return Err(ServiceError::rejected(msg));
            }
        };
        let t = &resp.timings;
        let row = RequestRow {
            label: request.label.clone(),
            warmup: request.warmup,
            started_at,
            images: descs,
            max_tokens: request.max_tokens,
            ignore_eos: request.ignore_eos,
            sampling: serde_json::to_value(req.sampling).unwrap_or_default(),
            prompt_tokens: resp.prompt_tokens as u32,
            image_tokens: resp.image_tokens as u32,
            text_tokens: resp.text_tokens as u32,
            output_tokens: resp.output_tokens as u32,
            finish_reason: convert::finish_name(resp.finish_reason).into(),
            preprocess_ms: t.preprocess_s * 1e3,
            vision_ms: t.vision_s * 1e3,
            prefill_ms: t.prefill_s * 1e3,
            ttft_ms: t.ttft_s * 1e3,
            decode_ms: t.decode_s * 1e3,
            total_ms: t.total_s * 1e3,
            token_times_ms: t.token_times_s.iter().map(|s| s * 1e3).collect(),
            cache_prefix: convert::prefix_name(resp.cache.prefix).into(),
            cache_reused_tokens: resp.cache.reused_tokens as u32,
            vision_hits: resp.cache.vision_hits as u32,
            vision_misses: resp.cache.vision_misses as u32,
            vision_skipped: resp.cache.vision_skipped as u32,
            peak_memory_bytes: resp.peak_memory_bytes,
            output_preview: preview(&resp.text),
        };
        let id = lock(&self.shared.store)
            .record_request(self.run_id, &row)
            .map_err(Self::store_err)?;
        Ok(convert::response(id as u64, resp))
    }

    fn cache_stats(&mut self) -> w::CacheCounters {
        convert::cache_counters(&lock(&self.shared.engine).cache_stats())
    }

    fn cache_clear(&mut self) {
        lock(&self.shared.engine).clear_cache();
    }

    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix_bytes: Option<u64>,
        vision_bytes: Option<u64>,
    ) {
        let mut e = lock(&self.shared.engine);
        if let Some(on) = enabled {
            e.set_cache_enabled(on);
        }
        e.set_cache_budget(
            prefix_bytes.map(|b| b as usize),
            vision_bytes.map(|b| b as usize),
        );
    }

    fn metric(&mut self, name: String, value: f64, unit: String) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .record_metric(self.run_id, &name, value, &unit)
            .map_err(Self::store_err)
    }

    fn table(
        &mut self,
        name: String,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .record_table(self.run_id, &name, &columns, &rows)
            .map_err(Self::store_err)
    }

    fn note(&mut self, text: String) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .record_note(self.run_id, &text)
            .map_err(Self::store_err)
    }

    fn verdict(&mut self, passed: bool, summary: String) -> Result<(), ServiceError> {
        lock(&self.shared.store)
            .set_verdict(self.run_id, passed, &summary)
            .map_err(Self::store_err)
    }

    fn log(&mut self, level: Level, message: String) {
        let name = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let _ = lock(&self.shared.store).record_log(self.run_id, name, &message);
        if level != Level::Debug {
            lock(&self.shared.terminal).line(&format!("[{name}] {message}"));
        }
    }

    fn progress(&mut self, done: u32, total: u32, step: String) {
        let _ = lock(&self.shared.store).heartbeat(self.run_id);
        lock(&self.shared.terminal).progress(done, total, &step);
    }
}

/// Services for `describe`: nothing is reachable.
pub struct NoServices;

impl Services for NoServices {
    fn model_info(&mut self) -> w::ModelInfo {
        w::ModelInfo {
            name: String::new(),
            path: String::new(),
            quantization: String::new(),
            dtype: String::new(),
            compute_dtype: String::new(),
            synthetic: false,
            text_layers: 0,
            hidden_size: 0,
            vision_depth: 0,
            backend: String::new(),
            device: String::new(),
        }
    }
    fn generate(
        &mut self,
        _: Vec<Arc<engine::image::RgbImage>>,
        _: w::GenerateRequest,
    ) -> Result<w::GenerateResponse, ServiceError> {
        Err(ServiceError::rejected("no engine during describe"))
    }
    fn cache_stats(&mut self) -> w::CacheCounters {
        convert::cache_counters(&engine::cache::CacheStats::default())
    }
    fn cache_clear(&mut self) {}
    fn cache_configure(&mut self, _: Option<bool>, _: Option<u64>, _: Option<u64>) {}
    fn metric(&mut self, _: String, _: f64, _: String) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(
            "nothing is recorded during describe",
        ))
    }
    fn table(
        &mut self,
        _: String,
        _: Vec<String>,
        _: Vec<Vec<String>>,
    ) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(
            "nothing is recorded during describe",
        ))
    }
    fn note(&mut self, _: String) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(
            "nothing is recorded during describe",
        ))
    }
    fn verdict(&mut self, _: bool, _: String) -> Result<(), ServiceError> {
        Err(ServiceError::rejected(
            "nothing is recorded during describe",
        ))
    }
    fn log(&mut self, _: Level, _: String) {}
    fn progress(&mut self, _: u32, _: u32, _: String) {}
}
