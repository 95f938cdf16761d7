//! MLX's custom-kernel API: a CUDA (or Metal) source body compiled at run time
//! and called like an op. Used for performance work on the GPU backends; on
//! the CPU backend calling a kernel fails with MLX's message.

use crate::array::{Array, Dtype};
use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;
use crate::list::{from_list, to_list};

/// A template argument of a kernel.
#[derive(Debug, Clone, Copy)]
pub enum TemplateArg {
    Int(i32),
    Bool(bool),
    Dtype(Dtype),
}

/// The source and signature of a custom kernel.
#[derive(Debug, Clone)]
pub struct KernelSpec<'a> {
    pub name: &'a str,
    pub inputs: &'a [&'a str],
    pub outputs: &'a [&'a str],
    /// The kernel body (MLX generates the signature from the names).
    pub source: &'a str,
    /// Code placed before the kernel (helpers, includes).
    pub header: &'a str,
    pub ensure_row_contiguous: bool,
}

/// One launch of a kernel.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub output_shapes: Vec<Vec<i32>>,
    pub output_dtypes: Vec<Dtype>,
    /// Total threads in each dimension.
    pub grid: [i32; 3],
    pub threadgroup: [i32; 3],
    pub template: Vec<(&'a str, TemplateArg)>,
    /// Fill outputs with this value before the kernel runs.
    pub init_value: Option<f32>,
}

pub struct Kernel {
    raw: cxx::UniquePtr<ffi::Kernel>,
}

// SAFETY: the kernel object is an immutable std::function that MLX itself
// calls from whichever thread builds the graph.
unsafe impl Send for Kernel {}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Kernel {
    pub fn cuda(spec: &KernelSpec<'_>, shared_memory: i32) -> Result<Kernel> {
        let raw = ffi::cuda_kernel(
            spec.name,
            strings(spec.inputs),
            strings(spec.outputs),
            spec.source,
            spec.header,
            spec.ensure_row_contiguous,
            shared_memory,
        )
        .map_err(|e| Error::from_cxx("cuda_kernel", e))?;
        Ok(Kernel { raw })
    }

    pub fn metal(spec: &KernelSpec<'_>, atomic_outputs: bool) -> Result<Kernel> {
        let raw = ffi::metal_kernel(
            spec.name,
            strings(spec.inputs),
            strings(spec.outputs),
            spec.source,
            spec.header,
            spec.ensure_row_contiguous,
            atomic_outputs,
        )
        .map_err(|e| Error::from_cxx("metal_kernel", e))?;
        Ok(Kernel { raw })
    }

    pub fn call(&self, inputs: &[&Array], launch: &Launch<'_>) -> Result<Vec<Array>> {
        let kernel = self
            .raw
            .as_ref()
            .ok_or_else(|| Error::new("kernel", "kernel was not created"))?;
        let shapes: Vec<i32> = launch.output_shapes.iter().flatten().copied().collect();
        let ranks: Vec<i32> = launch
            .output_shapes
            .iter()
            .map(|s| s.len() as i32)
            .collect();
        let dtypes: Vec<u8> = launch.output_dtypes.iter().map(|d| d.repr).collect();
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        let mut values = Vec::new();
        for (name, arg) in &launch.template {
            names.push(name.to_string());
            let (kind, value) = match *arg {
                TemplateArg::Int(v) => (0, v),
                TemplateArg::Bool(b) => (1, b as i32),
                TemplateArg::Dtype(d) => (2, d.repr as i32),
            };
            kinds.push(kind);
            values.push(value);
        }
        from_list(
            "kernel call",
            ffi::kernel_call(
                kernel,
                &to_list(inputs),
                &shapes,
                &ranks,
                &dtypes,
                &launch.grid,
                &launch.threadgroup,
                names,
                &kinds,
                &values,
                launch.init_value.is_some(),
                launch.init_value.unwrap_or(0.0),
            ),
        )
    }
}
