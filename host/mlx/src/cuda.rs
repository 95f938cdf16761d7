//! Kernels compiled and launched outside MLX's graph, for work that repeats
//! the same launches many times (a decoding step): MLX spends ~13 µs of host
//! time per launch, while a [`StepRunner`] issues a whole step from a list
//! (or replays it as one CUDA graph) on a stream of its own (`cxx/cuda_launch.cc`).
//!
//! Launches read and write MLX arrays in place. An array reaches a launch
//! only through [`StepRunner::hold`]: the runner keeps a reference to every
//! array it holds, so the array's memory stays allocated while anything
//! queued with it may still run, and copies are checked against the array's
//! size. No device address crosses this module's boundary. What stays with
//! the caller: [`StepRunner::synchronize`] before MLX reads what the steps
//! wrote, and no host reads of a held array through MLX (MLX would move it to
//! unified memory, `move_to_unified_memory` in mlx/backend/cuda/allocator.h,
//! under the runner's launches): read it with [`StepRunner::download`].
//! CUDA builds only: elsewhere [`available`] is false.

use std::sync::atomic::{AtomicU32, Ordering};

use cxx::UniquePtr;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;

/// Whether kernels can be compiled and launched here (a CUDA build on a GPU,
/// with the driver and NVRTC that libmlx loads).
pub fn available() -> bool {
    ffi::cuda_launch_available()
}

/// The GPU's streaming multiprocessors, where there is one.
pub fn sm_count() -> Option<u32> {
    Some(ffi::cuda_sm_count()).filter(|&n| n > 0)
}

/// The CUDA toolkit whose headers kernels include where no NVIDIA wheel sits
/// beside MLX's package (else `/usr/local/cuda`). Takes effect for kernels
/// compiled after it, before the first.
pub fn set_toolkit_dir(dir: &str) {
    ffi::cuda_set_toolkit_dir(dir);
}

/// A kernel compiled for this GPU: `source` defines `extern "C" __global__
/// void <name>(…)`.
pub struct CudaKernel {
    raw: UniquePtr<ffi::CudaKernel>,
}

// SAFETY: the module and function handles are immutable after loading, and
// the driver accepts them from any thread (each call makes MLX's context
// current).
unsafe impl Send for CudaKernel {}

impl CudaKernel {
    /// Compiles `source` with NVRTC; `shared_bytes` is the most dynamic
    /// shared memory a launch will ask. Errors carry NVRTC's log.
    pub fn compile(name: &str, source: &str, shared_bytes: u32) -> Result<CudaKernel> {
        let options = KernelOptions {
            shared_bytes,
            ..KernelOptions::default()
        };
        Self::compile_with(name, source, &options)
    }

    /// As [`CudaKernel::compile`], with more to say about the kernel.
    pub fn compile_with(name: &str, source: &str, o: &KernelOptions) -> Result<CudaKernel> {
        let raw = ffi::cuda_kernel_compile(
            name,
            source,
            o.shared_bytes,
            o.cluster_blocks,
            o.shared_carveout.map_or(-1, i32::from),
        )
        .map_err(|e| Error::from_cxx("cuda_kernel_compile", e))?;
        Ok(CudaKernel { raw })
    }
}

/// How a kernel is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// The most dynamic shared memory a launch will ask.
    pub shared_bytes: u32,
    /// Blocks per cluster its source declares (`__cluster_dims__`); past 8,
    /// the portable size, it is allowed a larger one (sm_90 schedules 16).
    pub cluster_blocks: u32,
    /// The share of L1 it prefers as shared memory, in percent of the most
    /// (else the driver's choice): blocks of a launch that start early on
    /// SMs still running the previous one's (programmatic dependent launch)
    /// need room beside them.
    pub shared_carveout: Option<u8>,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            shared_bytes: 0,
            cluster_blocks: 1,
            shared_carveout: None,
        }
    }
}

/// One launch: a 1-D grid of `blocks` blocks of `threads` threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub blocks: u32,
    pub threads: u32,
    pub shared_bytes: u32,
}

/// An array a [`StepRunner`] holds, as its launches name it. Valid with the
/// runner that made it, until released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Held {
    runner: u32,
    index: u32,
    generation: u32,
}

/// A kernel parameter: a held array (its device address) or an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    Array(Held),
    Int(u64),
}

/// A held array: the reference that keeps its memory, its address and size.
struct Entry {
    _array: Array,
    address: u64,
    bytes: usize,
}

/// A slot of the runner's table; a generation tells a released handle from
/// the slot's next occupant.
#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// Tells runners apart, so that one runner's handles are refused by another.
static NEXT_RUNNER: AtomicU32 = AtomicU32::new(1);

/// Launches a step's kernels in order on its own stream.
pub struct StepRunner {
    raw: UniquePtr<ffi::StepRunner>,
    id: u32,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Released, kept until everything queued before the release has run.
    released: Vec<u32>,
    /// Addresses of the launch being added (reused).
    args: Vec<u64>,
}

// SAFETY: the runner's stream, graph and events are used by one thread at a
// time (`&mut self`), and the driver accepts them from any thread; the held
// arrays are `Send`.
unsafe impl Send for StepRunner {}

impl StepRunner {
    /// Page-locked slots for values read back with [`StepRunner::read_u32`].
    pub const SLOTS: usize = 4;

    /// A runner on a new stream; with `use_graph`, steps are recorded into a
    /// CUDA graph that is replayed while the launch list stays the same (a
    /// new list is launched as it is, and recorded while it runs).
    pub fn new(use_graph: bool) -> Result<StepRunner> {
        let raw =
            ffi::step_runner_new(use_graph).map_err(|e| Error::from_cxx("step_runner_new", e))?;
        Ok(StepRunner {
            raw,
            id: NEXT_RUNNER.fetch_add(1, Ordering::Relaxed),
            slots: Vec::new(),
            free: Vec::new(),
            released: Vec::new(),
            args: Vec::new(),
        })
    }

    /// Holds `array` (evaluated, in device memory) for launches and copies:
    /// its memory stays allocated until it is released and everything queued
    /// before has run.
    pub fn hold(&mut self, array: &Array) -> Result<Held> {
        let address = ffi::array_device_ptr(array.inner())
            .map_err(|e| Error::from_cxx("array_device_ptr", e))?;
        let entry = Entry {
            _array: array.clone(),
            address,
            bytes: array.nbytes(),
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.entry = Some(entry);
        Ok(Held {
            runner: self.id,
            index,
            generation: slot.generation,
        })
    }

    /// Lets go of `held`: the array is dropped once everything queued so far
    /// has run (at the next [`StepRunner::synchronize`]); the handle is
    /// refused from now on.
    pub fn release(&mut self, held: Held) -> Result<()> {
        self.entry(held)?;
        let slot = &mut self.slots[held.index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        self.released.push(held.index);
        Ok(())
    }

    /// The bytes of a held array.
    pub fn bytes(&self, held: Held) -> Result<usize> {
        Ok(self.entry(held)?.bytes)
    }

    fn entry(&self, held: Held) -> Result<&Entry> {
        let slot = self.slots.get(held.index as usize);
        match slot {
            Some(Slot {
                generation,
                entry: Some(e),
            }) if held.runner == self.id && *generation == held.generation => Ok(e),
            _ => Err(Error::new(
                "step runner",
                format!("{held:?} is not held by this runner"),
            )),
        }
    }

    /// The address of `held` with room for `bytes` bytes from its start.
    fn address(&self, held: Held, bytes: usize, what: &str) -> Result<u64> {
        let e = self.entry(held)?;
        if bytes > e.bytes {
            return Err(Error::new(
                "step runner",
                format!("{what}: {bytes} bytes, but the array holds {}", e.bytes),
            ));
        }
        Ok(e.address)
    }

    /// Switches between launching each list and replaying it as a graph.
    pub fn set_use_graph(&mut self, use_graph: bool) -> Result<()> {
        ffi::step_runner_set_graph(self.raw.pin_mut(), use_graph)
            .map_err(|e| Error::from_cxx("step_runner_set_graph", e))
    }

    /// Starts a new launch list.
    pub fn clear(&mut self) {
        ffi::step_runner_clear(self.raw.pin_mut());
    }

    /// Appends a launch of `kernel` with `args`. With `pdl` it may start
    /// before the previous launch finishes: the kernel must
    /// `griddepcontrol.wait` before it reads anything that launch writes, or
    /// writes anything.
    pub fn add(&mut self, kernel: &CudaKernel, dims: Dims, pdl: bool, args: &[Arg]) -> Result<()> {
        let mut raw_args = std::mem::take(&mut self.args);
        raw_args.clear();
        for arg in args {
            raw_args.push(match *arg {
                Arg::Array(held) => self.entry(held)?.address,
                Arg::Int(v) => v,
            });
        }
        // SAFETY: every address is a held array's, whose memory the runner
        // keeps until its release has been synchronized past, so it outlives
        // every launch (and graph replay) that names it.
        let r = unsafe {
            ffi::step_runner_add(
                self.raw.pin_mut(),
                &kernel.raw,
                dims.blocks,
                dims.threads,
                dims.shared_bytes,
                pdl,
                &raw_args,
            )
        };
        self.args = raw_args;
        r.map_err(|e| Error::from_cxx("step_runner_add", e))
    }

    /// Queues the launch list (returns before the GPU runs it).
    pub fn launch(&mut self) -> Result<()> {
        ffi::step_runner_launch(self.raw.pin_mut())
            .map_err(|e| Error::from_cxx("step_runner_launch", e))
    }

    /// Queues a copy of the first `u32` of `src` into `slot`, after
    /// everything queued so far.
    pub fn read_u32(&mut self, src: Held, slot: usize) -> Result<()> {
        let src = self.address(src, 4, "reading a u32")?;
        // SAFETY: `src` is a held array of at least 4 bytes, kept until the
        // copy has run (a release waits for the next synchronize).
        unsafe { ffi::step_runner_read_u32(self.raw.pin_mut(), src, slot) }
            .map_err(|e| Error::from_cxx("step_runner_read_u32", e))
    }

    /// Waits for `slot`'s copy and returns the value.
    pub fn slot(&mut self, slot: usize) -> Result<u32> {
        ffi::step_runner_slot(self.raw.pin_mut(), slot)
            .map_err(|e| Error::from_cxx("step_runner_slot", e))
    }

    /// Queues a copy of the first `bytes` bytes of `src` into `dst`.
    pub fn copy(&mut self, dst: Held, src: Held, bytes: usize) -> Result<()> {
        let dst = self.address(dst, bytes, "copying into an array")?;
        let src = self.address(src, bytes, "copying from an array")?;
        // SAFETY: both are held arrays of at least `bytes` bytes, kept until
        // the copy has run.
        unsafe { ffi::step_runner_copy(self.raw.pin_mut(), dst, src, bytes) }
            .map_err(|e| Error::from_cxx("step_runner_copy", e))
    }

    /// Queues a copy of `data` to the start of `dst` (`data` may be dropped
    /// as soon as this returns: the driver stages pageable memory).
    pub fn upload(&mut self, dst: Held, data: &[u8]) -> Result<()> {
        let dst = self.address(dst, data.len(), "uploading into an array")?;
        // SAFETY: `dst` is a held array with room for `data`, kept until the
        // copy has run; the driver copies `data` before returning.
        unsafe { ffi::step_runner_upload(self.raw.pin_mut(), dst, data) }
            .map_err(|e| Error::from_cxx("step_runner_upload", e))
    }

    /// Copies the first `out.len()` bytes of `src` into `out` after
    /// everything queued, and waits for them.
    pub fn download(&mut self, src: Held, out: &mut [u8]) -> Result<()> {
        let src = self.address(src, out.len(), "downloading an array")?;
        // SAFETY: `src` is a held array of at least `out.len()` bytes; the
        // call returns once the copy into `out` is done.
        unsafe { ffi::step_runner_download(self.raw.pin_mut(), src, out) }
            .map_err(|e| Error::from_cxx("step_runner_download", e))
    }

    /// Waits for everything queued, then drops the arrays released before.
    pub fn synchronize(&mut self) -> Result<()> {
        ffi::step_runner_synchronize(self.raw.pin_mut())
            .map_err(|e| Error::from_cxx("step_runner_synchronize", e))?;
        for index in self.released.drain(..) {
            self.slots[index as usize].entry = None;
            self.free.push(index);
        }
        Ok(())
    }
}

impl Drop for StepRunner {
    /// The stream is synchronized (by the C++ runner's destructor) before
    /// the held arrays go: nothing queued outlives them.
    fn drop(&mut self) {
        self.raw = UniquePtr::null();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launching_needs_the_cuda_backend_and_says_so() {
        let on_gpu = crate::runtime_backend() == "cuda" && crate::is_available(crate::Device::Gpu);
        assert_eq!(available(), on_gpu);
        assert_eq!(sm_count().is_some(), on_gpu);
        if on_gpu {
            return;
        }
        let err = StepRunner::new(false)
            .err()
            .expect("no runner without CUDA");
        assert!(err.to_string().contains("needs the CUDA backend"), "{err}");
    }

    #[test]
    fn steps_run_kernels_on_held_arrays_in_place() {
        if !available() {
            return; // checked by the test above
        }
        // Launched with PDL, a kernel waits for the previous launch before it
        // touches memory that launch writes.
        let src = "extern \"C\" __global__ void add_one(float* x, int n) {\n\
                   asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");\n\
                   int i = blockIdx.x * blockDim.x + threadIdx.x;\n\
                   if (i < n) x[i] += 1.0f;\n}\n";
        let k = CudaKernel::compile("add_one", src, 0).unwrap();
        let dims = Dims {
            blocks: 4,
            threads: 256,
            shared_bytes: 0,
        };
        for use_graph in [false, true] {
            let x = Array::zeros(&[1000], crate::Dtype::F32)
                .unwrap()
                .contiguous()
                .unwrap();
            crate::eval(&[&x]).unwrap();
            let mut r = StepRunner::new(use_graph).unwrap();
            let h = r.hold(&x).unwrap();
            let last = Array::zeros(&[4], crate::Dtype::F32)
                .unwrap()
                .contiguous()
                .unwrap();
            crate::eval(&[&last]).unwrap();
            let tail = r.hold(&last).unwrap();
            for step in 0..3 {
                r.clear();
                let args = [Arg::Array(h), Arg::Int(1000)];
                r.add(&k, dims, false, &args).unwrap();
                r.add(&k, dims, true, &args).unwrap();
                r.launch().unwrap();
                r.read_u32(h, step % StepRunner::SLOTS).unwrap();
                let got = f32::from_bits(r.slot(step % StepRunner::SLOTS).unwrap());
                assert_eq!(
                    got,
                    2.0 * (step + 1) as f32,
                    "graph {use_graph}, step {step}"
                );
            }
            r.copy(tail, h, 16).unwrap();
            r.synchronize().unwrap();
            let mut bytes = vec![0u8; 4000];
            r.download(h, &mut bytes).unwrap();
            assert!(bytes.chunks(4).all(|b| b == 6f32.to_le_bytes()));
            // Copies past an array's end are refused before reaching the GPU.
            assert!(r.download(h, &mut vec![0u8; 4004]).is_err());
            assert!(r.copy(tail, h, 20).is_err());
            assert!(r.upload(tail, &[0; 17]).is_err());
            r.release(tail).unwrap();
            r.synchronize().unwrap();
            assert_eq!(x.to_vec::<f32>().unwrap(), vec![6.0; 1000]);
            assert_eq!(last.to_vec::<f32>().unwrap(), vec![6.0; 4]);
        }
    }

    #[test]
    fn handles_are_refused_once_released_or_by_another_runner() {
        if !available() {
            return;
        }
        let a = Array::zeros(&[8], crate::Dtype::F32)
            .unwrap()
            .contiguous()
            .unwrap();
        crate::eval(&[&a]).unwrap();
        let mut one = StepRunner::new(false).unwrap();
        let mut two = StepRunner::new(false).unwrap();
        let h = one.hold(&a).unwrap();
        assert!(two.read_u32(h, 0).is_err());
        assert_eq!(one.bytes(h).unwrap(), 32);
        one.release(h).unwrap();
        assert!(one.read_u32(h, 0).is_err());
        assert!(one.release(h).is_err());
        one.synchronize().unwrap();
        // The slot's next occupant has a handle of its own.
        let again = one.hold(&a).unwrap();
        assert_ne!(again, h);
        assert!(one.bytes(h).is_err() && one.bytes(again).is_ok());
    }
}
