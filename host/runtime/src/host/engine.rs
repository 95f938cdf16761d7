//! `vlmbench:workload/engine` (0.2): requests checked for size, image
//! handles resolved, then handed to the engine service; submitted requests
//! tracked until the plugin collects or drops them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Result;
use wasmtime::component::Resource;

use super::{
    HostState, MAX_IMAGE_PARTS, MAX_IMAGES_PER_REQUEST, MAX_MESSAGES, MAX_TEXT, check_len,
};
use crate::bindings::wit_engine::{self, ErrorKind, GenerateRequest, RequestError};
use crate::image_sets::ImageHandle;
use crate::pending::{MAX_PENDING, Outcome, PendingHandle, WaitError, error};
use crate::services::{ServiceError, Submission};

/// The furthest ahead a request may be scheduled.
const MAX_START_AHEAD: Duration = Duration::from_secs(24 * 3600);

fn stopped(_: WaitError) -> wasmtime::Error {
    wasmtime::Error::msg("the run was stopped while waiting for a request")
}

impl HostState {
    /// Checks and starts a request; the id of its pending entry.
    pub(crate) fn start_request(
        &mut self,
        images: &[Resource<ImageHandle>],
        request: GenerateRequest,
        start_at_ms: Option<f64>,
        alone: bool,
    ) -> Result<Result<u64, RequestError>> {
        if let Err(e) = check_request(images.len(), &request) {
            return Ok(Err(error(ErrorKind::Invalid, e)));
        }
        if self.pending.len() >= MAX_PENDING {
            return Ok(Err(error(
                ErrorKind::Invalid,
                format!(
                    "{MAX_PENDING} requests are pending already, the most a run may have: wait for some (or drop them) first"
                ),
            )));
        }
        let start_at = match start_at_ms {
            None => None,
            Some(ms) if ms.is_finite() && ms >= 0.0 => {
                let offset = Duration::from_secs_f64(ms / 1e3);
                if offset > self.started.elapsed() + MAX_START_AHEAD {
                    return Ok(Err(error(
                        ErrorKind::Invalid,
                        format!("start-at-ms {ms} is more than a day ahead of the run clock"),
                    )));
                }
                Some(self.started + offset)
            }
            Some(ms) => {
                return Ok(Err(error(
                    ErrorKind::Invalid,
                    format!("start-at-ms must be a finite number of milliseconds >= 0, not {ms}"),
                )));
            }
        };
        let mut imgs = Vec::with_capacity(images.len());
        for r in images {
            imgs.push(self.table.get(r)?.image.clone());
        }
        // Each distinct image once: the request holds it until collected.
        let mut seen = HashSet::new();
        let distinct: Vec<_> = imgs
            .iter()
            .filter(|i| seen.insert(Arc::as_ptr(i) as usize))
            .cloned()
            .collect();
        for (n, img) in distinct.iter().enumerate() {
            if let Err(e) = self.hold_image(img) {
                for held in &distinct[..n] {
                    self.release_image(held);
                }
                return Ok(Err(error(ErrorKind::Invalid, e)));
            }
        }
        let id = self.pending.next_id();
        let done = self.pending.hub.start(id);
        let submission = Submission {
            images: imgs,
            request,
            start_at,
            alone,
            clock_zero: self.started,
        };
        match self.services.engine.submit(submission, done) {
            Ok(cancel) => {
                self.pending.insert(id, cancel, distinct);
                Ok(Ok(id))
            }
            Err(e) => {
                self.pending.hub.forget(id);
                for held in &distinct {
                    self.release_image(held);
                }
                match e.into_request_error() {
                    Ok(e) => Ok(Err(e)),
                    Err(ServiceError::Fatal(e)) => Err(wasmtime::Error::msg(e.to_string())),
                    Err(other) => Err(wasmtime::Error::msg(format!("{other:?}"))),
                }
            }
        }
    }

    /// Waits for request `id` and takes its outcome; once taken, the
    /// request no longer counts as pending nor holds its images.
    pub(crate) fn wait_request(&mut self, id: u64) -> Result<Outcome> {
        let outcome = self.pending.hub.wait(id, &self.stop).map_err(stopped)?;
        for img in self.pending.collected(id) {
            self.release_image(&img);
        }
        Ok(outcome)
    }

    /// Forgets request `id`, cancelling it if it still runs.
    pub(crate) fn drop_request(&mut self, id: u64) {
        for img in self.pending.remove(id) {
            self.release_image(&img);
        }
    }

    /// `generate`: a request run now, waited for, and forgotten.
    pub(crate) fn generate_now(
        &mut self,
        images: &[Resource<ImageHandle>],
        request: GenerateRequest,
    ) -> Result<Outcome> {
        let id = match self.start_request(images, request, None, true)? {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let outcome = self.wait_request(id);
        self.drop_request(id);
        outcome
    }
}

impl wit_engine::HostPending for HostState {
    fn id(&mut self, p: Resource<PendingHandle>) -> Result<u64> {
        Ok(self.table.get(&p)?.id)
    }

    fn ready(&mut self, p: Resource<PendingHandle>) -> Result<bool> {
        let id = self.table.get(&p)?.id;
        Ok(self.pending.hub.is_ready(id))
    }

    fn drop(&mut self, p: Resource<PendingHandle>) -> Result<()> {
        let h = self.table.delete(p)?;
        self.drop_request(h.id);
        Ok(())
    }
}

impl wit_engine::Host for HostState {
    fn model(&mut self) -> Result<wit_engine::ModelInfo> {
        Ok(self.services.engine.model_info())
    }

    fn generate(
        &mut self,
        images: Vec<Resource<ImageHandle>>,
        request: GenerateRequest,
    ) -> Result<Outcome> {
        self.generate_now(&images, request)
    }

    fn clock_ms(&mut self) -> Result<f64> {
        Ok(self.started.elapsed().as_secs_f64() * 1e3)
    }

    fn submit(
        &mut self,
        images: Vec<Resource<ImageHandle>>,
        request: GenerateRequest,
        start_at_ms: Option<f64>,
    ) -> Result<Result<Resource<PendingHandle>, RequestError>> {
        match self.start_request(&images, request, start_at_ms, false)? {
            Ok(id) => Ok(Ok(self.table.push(PendingHandle { id })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn wait(&mut self, p: Resource<PendingHandle>) -> Result<Outcome> {
        let id = self.table.get(&p)?.id;
        self.wait_request(id)
    }

    fn wait_any(
        &mut self,
        requests: Vec<Resource<PendingHandle>>,
        timeout_ms: Option<u32>,
    ) -> Result<Option<u32>> {
        check_len_trap("requests in one wait-any", requests.len(), MAX_PENDING)?;
        let mut ids = Vec::with_capacity(requests.len());
        for r in &requests {
            ids.push(self.table.get(r)?.id);
        }
        let timeout = timeout_ms.map(|ms| Duration::from_millis(ms.into()));
        let found = self
            .pending
            .hub
            .wait_any(&ids, timeout, &self.stop)
            .map_err(stopped)?;
        Ok(found.map(|i| i as u32))
    }

    fn cache_stats(&mut self) -> Result<Option<wit_engine::CacheCounters>> {
        Ok(self.services.engine.cache_stats())
    }

    fn cache_clear(&mut self) -> Result<Result<(), String>> {
        Ok(self.services.engine.cache_clear())
    }

    fn cache_configure(
        &mut self,
        enabled: Option<bool>,
        prefix: Option<u64>,
        vision: Option<u64>,
    ) -> Result<Result<(), String>> {
        Ok(self
            .services
            .engine
            .cache_configure(enabled, prefix, vision))
    }
}

/// A list longer than the host takes in one call: the plugin is broken.
fn check_len_trap(what: &str, len: usize, max: usize) -> Result<()> {
    check_len(what, len, max).map_err(wasmtime::Error::msg)
}

/// The sizes of a request, checked before anything is copied: images,
/// messages, image parts (every reference counts, repeated or not) and the
/// text the model reads (roles too). The label is the store's to cut.
fn check_request(images: usize, request: &GenerateRequest) -> Result<(), String> {
    check_len("images in one request", images, MAX_IMAGES_PER_REQUEST)?;
    check_len(
        "messages in one request",
        request.messages.len(),
        MAX_MESSAGES,
    )?;
    let parts = request.messages.iter().flat_map(|m| m.content.iter());
    let image_parts = parts
        .clone()
        .filter(|c| matches!(c, wit_engine::ContentPart::Image(_)))
        .count();
    check_len("image parts in one request", image_parts, MAX_IMAGE_PARTS)?;
    let text: usize = parts
        .map(|c| match c {
            wit_engine::ContentPart::Text(t) => t.len(),
            wit_engine::ContentPart::Image(_) => 0,
        })
        .chain(request.messages.iter().map(|m| m.role.len()))
        .sum();
    check_len(
        "bytes of text in one request (prompts and roles)",
        text,
        MAX_TEXT,
    )
}
