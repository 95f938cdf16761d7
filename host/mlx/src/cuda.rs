//! Kernels compiled and launched outside MLX's graph, for work that repeats
//! the same launches many times (a decoding step): MLX spends ~13 µs of host
//! time per launch, while a [`StepRunner`] issues a whole step from a list
//! (or replays it as one CUDA graph) on a stream of its own (`cxx/cuda_launch.cc`).
//! The launches read and write MLX arrays in place by their device
//! pointers. The caller must evaluate those arrays first, keep them alive
//! while steps run, and [`StepRunner::synchronize`] before MLX reads what
//! the steps wrote. CUDA builds only: elsewhere [`available`] is false.

use cxx::UniquePtr;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;

/// Whether kernels can be compiled and launched here (a CUDA build on a GPU,
/// with the driver and NVRTC that libmlx loads).
pub fn available() -> bool {
    ffi::cuda_launch_available()
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

/// Launches a step's kernels in order on its own stream.
pub struct StepRunner {
    raw: UniquePtr<ffi::StepRunner>,
}

// SAFETY: the runner's stream, graph and events are used by one thread at a
// time (`&mut self`), and the driver accepts them from any thread.
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
        Ok(StepRunner { raw })
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

    /// Appends a launch of `kernel` with `args` (device pointers, or integers
    /// for `int` parameters). With `pdl` it may start before the previous
    /// launch finishes: the kernel must `griddepcontrol.wait` before it reads
    /// anything that launch writes, or writes anything.
    pub fn add(&mut self, kernel: &CudaKernel, dims: Dims, pdl: bool, args: &[u64]) -> Result<()> {
        ffi::step_runner_add(
            self.raw.pin_mut(),
            &kernel.raw,
            dims.blocks,
            dims.threads,
            dims.shared_bytes,
            pdl,
            args,
        )
        .map_err(|e| Error::from_cxx("step_runner_add", e))
    }

    /// Queues the launch list (returns before the GPU runs it).
    pub fn launch(&mut self) -> Result<()> {
        ffi::step_runner_launch(self.raw.pin_mut())
            .map_err(|e| Error::from_cxx("step_runner_launch", e))
    }

    /// Queues a copy of the `u32` at device address `src` into `slot`, after
    /// everything queued so far.
    pub fn read_u32(&mut self, src: u64, slot: usize) -> Result<()> {
        ffi::step_runner_read_u32(self.raw.pin_mut(), src, slot)
            .map_err(|e| Error::from_cxx("step_runner_read_u32", e))
    }

    /// Waits for `slot`'s copy and returns the value.
    pub fn slot(&mut self, slot: usize) -> Result<u32> {
        ffi::step_runner_slot(self.raw.pin_mut(), slot)
            .map_err(|e| Error::from_cxx("step_runner_slot", e))
    }

    /// Queues a copy of `bytes` bytes from device address `src` to `dst`.
    pub fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        ffi::step_runner_copy(self.raw.pin_mut(), dst, src, bytes)
            .map_err(|e| Error::from_cxx("step_runner_copy", e))
    }

    /// Queues a copy of `data` to device address `dst` (`data` may be
    /// dropped as soon as this returns).
    pub fn upload(&mut self, dst: u64, data: &[u8]) -> Result<()> {
        ffi::step_runner_upload(self.raw.pin_mut(), dst, data)
            .map_err(|e| Error::from_cxx("step_runner_upload", e))
    }

    /// Copies `out.len()` bytes from device address `src` into `out` after
    /// everything queued. (Reading an MLX array on the host instead has MLX
    /// replace device memory with unified memory, `move_to_unified_memory` in
    /// mlx/backend/cuda/allocator.h: a new address, under the runner's
    /// pointers.)
    pub fn download(&mut self, src: u64, out: &mut [u8]) -> Result<()> {
        ffi::step_runner_download(self.raw.pin_mut(), src, out)
            .map_err(|e| Error::from_cxx("step_runner_download", e))
    }

    /// Waits for everything queued.
    pub fn synchronize(&mut self) -> Result<()> {
        ffi::step_runner_synchronize(self.raw.pin_mut())
            .map_err(|e| Error::from_cxx("step_runner_synchronize", e))
    }
}

impl Array {
    /// The device address of this array's first element. The array must be
    /// evaluated; the address is valid while the array lives.
    pub fn device_ptr(&self) -> Result<u64> {
        ffi::array_device_ptr(self.inner()).map_err(|e| Error::from_cxx("array_device_ptr", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launching_needs_the_cuda_backend_and_says_so() {
        let on_gpu = crate::runtime_backend() == "cuda" && crate::is_available(crate::Device::Gpu);
        assert_eq!(available(), on_gpu);
        if on_gpu {
            return;
        }
        let err = StepRunner::new(false)
            .err()
            .expect("no runner without CUDA");
        assert!(err.to_string().contains("needs the CUDA backend"), "{err}");
        let a = Array::zeros(&[4], crate::Dtype::F32).unwrap();
        crate::eval(&[&a]).unwrap();
        assert!(a.device_ptr().is_err());
    }

    #[test]
    fn steps_run_kernels_on_arrays_in_place() {
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
            let p = x.device_ptr().unwrap();
            let mut r = StepRunner::new(use_graph).unwrap();
            for step in 0..3 {
                r.clear();
                r.add(&k, dims, false, &[p, 1000]).unwrap();
                r.add(&k, dims, true, &[p, 1000]).unwrap();
                r.launch().unwrap();
                r.read_u32(p + 4 * 999, step % StepRunner::SLOTS).unwrap();
                let got = f32::from_bits(r.slot(step % StepRunner::SLOTS).unwrap());
                assert_eq!(
                    got,
                    2.0 * (step + 1) as f32,
                    "graph {use_graph}, step {step}"
                );
            }
            r.synchronize().unwrap();
            let mut bytes = vec![0u8; 4000];
            r.download(p, &mut bytes).unwrap();
            assert!(bytes.chunks(4).all(|b| b == 6f32.to_le_bytes()));
            assert_eq!(x.to_vec::<f32>().unwrap(), vec![6.0; 1000]);
        }
    }
}
