//! `Array`: an owned handle to an `mlx::core::array`. Dropping it releases the
//! handle; MLX frees the buffer when the last handle (or graph use) is gone.

use std::fmt;

use cxx::UniquePtr;

use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;

/// Element type of an array.
pub type Dtype = ffi::DType;

impl Dtype {
    /// Size of one element in bytes.
    pub fn size_of(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 | Dtype::F64 | Dtype::C64 => 8,
            _ => 0,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64 | Dtype::BF16)
    }

    /// The name used in safetensors headers and configs (`BF16`, `F32`, ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::U16 => "U16",
            Dtype::U32 => "U32",
            Dtype::U64 => "U64",
            Dtype::I8 => "I8",
            Dtype::I16 => "I16",
            Dtype::I32 => "I32",
            Dtype::I64 => "I64",
            Dtype::F16 => "F16",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::BF16 => "BF16",
            Dtype::C64 => "C64",
            _ => "?",
        }
    }
}

/// Rust types that can be copied in and out of arrays without conversion.
pub trait Element: Copy + Default + 'static {
    const DTYPE: Dtype;
    fn from_le(bytes: &[u8]) -> Self;
    fn extend_le(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: Dtype = $d;
            fn from_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element width"))
            }
            fn extend_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(f32, Dtype::F32);
element!(f64, Dtype::F64);
element!(i32, Dtype::I32);
element!(u32, Dtype::U32);
element!(i64, Dtype::I64);
element!(u64, Dtype::U64);
element!(u8, Dtype::U8);
element!(i8, Dtype::I8);
element!(u16, Dtype::U16);
element!(i16, Dtype::I16);

/// An MLX array. Operations build a lazy graph; `eval` (or reading the data)
/// computes it.
pub struct Array {
    pub(crate) raw: UniquePtr<ffi::array>,
}

// SAFETY: an `mlx::core::array` is a shared_ptr to its descriptor; moving the
// handle to another thread moves only that pointer, and the reference count is
// atomic. `Array` is not `Sync`: concurrent use from two threads needs a lock.
unsafe impl Send for Array {}

impl Array {
    pub(crate) fn wrap(
        op: &'static str,
        r: std::result::Result<UniquePtr<ffi::array>, cxx::Exception>,
    ) -> Result<Array> {
        let raw = r.map_err(|e| Error::from_cxx(op, e))?;
        if raw.is_null() {
            return Err(Error::new(op, "MLX returned no array"));
        }
        Ok(Array { raw })
    }

    pub(crate) fn inner(&self) -> &ffi::array {
        self.raw.as_ref().expect("an Array always holds a handle")
    }

    /// Copies `data` into a new array of the given shape.
    pub fn from_slice<T: Element>(data: &[T], shape: &[i32]) -> Result<Array> {
        check_len("from_slice", data.len(), shape)?;
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(data));
        for &x in data {
            x.extend_le(&mut bytes);
        }
        Array::from_bytes(&bytes, shape, T::DTYPE)
    }

    /// Copies raw little-endian bytes into a new array of `dtype`.
    pub fn from_bytes(data: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
        Array::wrap("from_bytes", ffi::from_bytes(data, shape, dtype))
    }

    pub fn from_f32(data: &[f32], shape: &[i32]) -> Result<Array> {
        check_len("from_f32", data.len(), shape)?;
        Array::wrap("from_f32", ffi::from_f32(data, shape))
    }

    pub fn from_i32(data: &[i32], shape: &[i32]) -> Result<Array> {
        check_len("from_i32", data.len(), shape)?;
        Array::wrap("from_i32", ffi::from_i32(data, shape))
    }

    pub fn from_u32(data: &[u32], shape: &[i32]) -> Result<Array> {
        check_len("from_u32", data.len(), shape)?;
        Array::wrap("from_u32", ffi::from_u32(data, shape))
    }

    /// A 0-d array holding `v` converted to `dtype`. Use the operand's dtype
    /// for scalars in arithmetic: MLX promotes, so an f32 scalar would turn a
    /// bf16 computation into f32.
    pub fn scalar(v: f32, dtype: Dtype) -> Result<Array> {
        Array::wrap("scalar", ffi::scalar_f32(v, dtype))
    }

    pub fn scalar_i32(v: i32) -> Result<Array> {
        Array::wrap("scalar_i32", ffi::scalar_i32(v))
    }

    pub fn shape(&self) -> Vec<i32> {
        ffi::shape(self.inner())
    }

    /// The size of one axis; negative axes count from the end.
    pub fn dim(&self, axis: i32) -> i32 {
        let shape = self.shape();
        let i = if axis < 0 {
            shape.len() as i32 + axis
        } else {
            axis
        };
        shape[i as usize]
    }

    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    pub fn dtype(&self) -> Dtype {
        ffi::dtype(self.inner())
    }

    pub fn size(&self) -> usize {
        ffi::size(self.inner())
    }

    pub fn nbytes(&self) -> usize {
        ffi::nbytes(self.inner())
    }

    /// Computes the array (and the graph it depends on).
    pub fn eval(&self) -> Result<()> {
        ffi::eval_one(self.inner()).map_err(|e| Error::from_cxx("eval", e))
    }

    /// The raw bytes, row-major, after evaluating.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.nbytes()];
        ffi::copy_to_bytes(self.inner(), &mut out).map_err(|e| Error::from_cxx("to_bytes", e))?;
        Ok(out)
    }

    /// The elements, row-major, after evaluating. The dtype must be `T`'s.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if self.dtype() != T::DTYPE {
            return Err(Error::new(
                "to_vec",
                format!(
                    "array is {:?}, asked for {:?}; convert with astype first",
                    self.dtype(),
                    T::DTYPE
                ),
            ));
        }
        let bytes = self.to_bytes()?;
        let w = T::DTYPE.size_of();
        Ok(bytes.chunks_exact(w).map(T::from_le).collect())
    }

    /// The elements as f32, converting from any numeric dtype.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        if self.dtype() == Dtype::F32 {
            self.to_vec()
        } else {
            self.astype(Dtype::F32)?.to_vec()
        }
    }

    /// The single element of a one-element array.
    pub fn item<T: Element>(&self) -> Result<T> {
        let v = self.to_vec::<T>()?;
        match v.as_slice() {
            [x] => Ok(*x),
            _ => Err(Error::new(
                "item",
                format!("array has {} elements, not 1", v.len()),
            )),
        }
    }
}

fn check_len(op: &'static str, len: usize, shape: &[i32]) -> Result<()> {
    if shape.iter().any(|&d| d < 0) {
        return Err(Error::new(
            op,
            format!("negative dimension in shape {shape:?}"),
        ));
    }
    let expected: usize = shape.iter().map(|&d| d as usize).product();
    if expected != len {
        return Err(Error::new(
            op,
            format!("{len} values do not fill shape {shape:?} ({expected} needed)"),
        ));
    }
    Ok(())
}

impl Clone for Array {
    /// Another handle to the same array (no data copy).
    fn clone(&self) -> Array {
        Array {
            raw: ffi::clone_array(self.inner()),
        }
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array({:?}, {:?})", self.shape(), self.dtype())
    }
}

/// Evaluates several arrays in one graph pass.
pub fn eval(arrays: &[&Array]) -> Result<()> {
    let list = crate::list::to_list(arrays);
    ffi::eval_list(&list).map_err(|e| Error::from_cxx("eval", e))
}

/// Starts evaluating in the background; a later `eval` or read waits for it.
pub fn async_eval(arrays: &[&Array]) -> Result<()> {
    let list = crate::list::to_list(arrays);
    ffi::async_eval_list(&list).map_err(|e| Error::from_cxx("async_eval", e))
}
