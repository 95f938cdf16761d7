//! What the host samples while a run runs, once a second: its own resident
//! memory, the backend's memory (a reader the caller gives, e.g. MLX's
//! allocator on the engine's thread), and every NVIDIA GPU's memory,
//! utilisation and power through NVML. Each source samples on a thread of
//! its own, so a source that waits (the engine mid-step) delays no other.

mod gpu;
mod process;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use gpu::Gpus;
pub use process::resident_bytes;

/// Values of named series read at one moment.
pub type Reading = Vec<(String, f64)>;

/// A source of readings; none when it has nothing to say now.
pub type Source = Box<dyn FnMut() -> Option<Reading> + Send>;

/// Where readings go, with the milliseconds since sampling started.
pub type Sink = Box<dyn FnMut(f64, Reading) + Send>;

/// How often to sample: every second for the first hour, then every ten
/// seconds, so a day-long run stores about 12,000 readings per series.
fn period(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(3600) {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    }
}

/// The host's own sources: its resident memory (where the platform tells
/// it) and the GPUs NVML can see.
pub fn host_sources() -> Vec<Source> {
    let mut sources: Vec<Source> = vec![Box::new(|| {
        resident_bytes().map(|b| vec![("host.rss_bytes".to_string(), b as f64)])
    })];
    // NVML is opened on the sampling thread that reads it.
    let mut gpus: Option<Option<Gpus>> = None;
    sources.push(Box::new(move || {
        gpus.get_or_insert_with(Gpus::open).as_ref().map(Gpus::read)
    }));
    sources
}

/// Samples until dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sampler {
    /// Starts one thread per source, each sending its readings to `sink`.
    pub fn start(sources: Vec<Source>, sink: Sink) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let sink = Arc::new(Mutex::new(sink));
        let started = Instant::now();
        let threads = sources
            .into_iter()
            .enumerate()
            .filter_map(|(i, mut source)| {
                let (stop, sink) = (stop.clone(), sink.clone());
                std::thread::Builder::new()
                    .name(format!("telemetry-{i}"))
                    .stack_size(256 << 10)
                    .spawn(move || {
                        let mut next = Instant::now();
                        while !stop.load(Ordering::SeqCst) {
                            let at = started.elapsed();
                            if let Some(reading) = source() {
                                let t_ms = at.as_secs_f64() * 1e3;
                                let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
                                sink(t_ms, reading);
                            }
                            next += period(started.elapsed());
                            while !stop.load(Ordering::SeqCst) && Instant::now() < next {
                                let left = next.saturating_duration_since(Instant::now());
                                std::thread::sleep(left.min(Duration::from_millis(50)));
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        Sampler { stop, threads }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Joules from power samples `(t_ms, watts)` in time order (trapezoids
/// between samples; nothing before the first or after the last).
pub fn energy_joules(samples: &[(f64, f64)]) -> f64 {
    samples
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) / 1e3 * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_the_area_under_power() {
        // 100 W for 2 s, then a ramp to 200 W over 1 s.
        let s = [(0.0, 100.0), (2000.0, 100.0), (3000.0, 200.0)];
        assert!((energy_joules(&s) - 350.0).abs() < 1e-9);
        assert_eq!(energy_joules(&s[..1]), 0.0);
    }

    #[test]
    fn sources_sample_on_their_own_threads_until_dropped() {
        let seen = Arc::new(Mutex::new(Vec::<(f64, Reading)>::new()));
        let into = seen.clone();
        let sink: Sink = Box::new(move |t, r| into.lock().unwrap().push((t, r)));
        let fast: Source = Box::new(|| Some(vec![("a".into(), 1.0)]));
        // A source that blocks does not hold up the others.
        let slow: Source = Box::new(|| {
            std::thread::sleep(Duration::from_millis(1500));
            Some(vec![("b".into(), 2.0)])
        });
        let sampler = Sampler::start(vec![fast, slow], sink);
        std::thread::sleep(Duration::from_millis(1300));
        drop(sampler);
        let seen = seen.lock().unwrap();
        let a: Vec<f64> = seen
            .iter()
            .filter(|(_, r)| r[0].0 == "a")
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(a.len(), 2, "{seen:?}");
        assert!(a[0] < 100.0 && (a[1] - 1000.0).abs() < 200.0, "{a:?}");
    }

    #[test]
    fn this_process_reads_its_resident_memory_on_linux() {
        if cfg!(target_os = "linux") {
            let b = resident_bytes().expect("/proc/self/status has VmRSS");
            assert!(b > 1 << 20, "{b}");
        }
    }
}
