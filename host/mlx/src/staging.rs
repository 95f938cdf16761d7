//! Host bytes that become an array without a second copy where the backend
//! allows it. Under CUDA a staging buffer is page-locked host memory from a
//! pool, which kernels read in place: MLX's own path copies host data into
//! fresh CUDA managed memory, whose pages fault on the CPU's first write and
//! migrate on the GPU's first read (`cxx/staging.cc`). Elsewhere it is heap
//! memory that [`Staging::into_array`] copies, as [`Array::from_bytes`] does.

use cxx::UniquePtr;

use crate::array::{Array, Dtype};
use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;

/// Whether staging buffers may be page-locked memory (the default, where the
/// CUDA driver is there); off, they are heap memory that MLX copies, as
/// without CUDA (for comparisons).
pub fn set_pinned_staging(allowed: bool) {
    ffi::staging_set_pinned(allowed);
}

/// `len` bytes to fill, then hand to MLX as one array.
pub struct Staging {
    raw: UniquePtr<ffi::Staging>,
}

impl Staging {
    /// A buffer of `len` bytes (contents unspecified: fill all of them).
    pub fn new(len: usize) -> Result<Staging> {
        let raw = ffi::staging_new(len).map_err(|e| Error::from_cxx("staging_new", e))?;
        Ok(Staging { raw })
    }

    /// The bytes to fill.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        ffi::staging_bytes(self.raw.pin_mut())
    }

    /// Whether the GPU reads this buffer in place (page-locked CUDA memory).
    pub fn is_pinned(&self) -> bool {
        ffi::staging_pinned(&self.raw)
    }

    /// `data` as an f32 array of `shape`, through a staging buffer: for
    /// tables made on the host for each request (they would otherwise land in
    /// fresh CUDA managed memory).
    pub fn f32_array(data: &[f32], shape: &[i32]) -> Result<Array> {
        let mut s = Staging::new(std::mem::size_of_val(data))?;
        for (dst, v) in s.bytes_mut().chunks_exact_mut(4).zip(data) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        s.into_array(shape, Dtype::F32)
    }

    /// The bytes as an array of `shape` and `dtype` (whose size must match).
    pub fn into_array(mut self, shape: &[i32], dtype: Dtype) -> Result<Array> {
        Array::wrap(
            "staging_into_array",
            ffi::staging_into_array(self.raw.pin_mut(), shape, dtype),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_bytes_become_the_array() {
        let mut s = Staging::new(2 * 3 * 4).unwrap();
        // Page-locked exactly where the CUDA driver is there to give it.
        let cuda = crate::runtime_backend() == "cuda" && crate::is_available(crate::Device::Gpu);
        assert_eq!(s.is_pinned(), cuda);
        for (i, b) in s.bytes_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        let a = s.into_array(&[2, 3], Dtype::F32).unwrap();
        assert_eq!(a.to_bytes().unwrap(), (0..24u8).collect::<Vec<_>>());
    }

    #[test]
    fn floats_become_an_f32_array() {
        let data = [1.5f32, -2.0, 0.25, 8.0, 3.0, -0.5];
        let a = Staging::f32_array(&data, &[2, 3]).unwrap();
        assert_eq!(
            (a.shape(), a.to_vec::<f32>().unwrap()),
            (vec![2, 3], data.to_vec())
        );
        assert!(Staging::f32_array(&data, &[4]).is_err());
    }

    #[test]
    fn a_shape_of_another_size_is_refused() {
        let s = Staging::new(10).unwrap();
        let err = s.into_array(&[3], Dtype::F32).unwrap_err().to_string();
        assert!(err.contains("holds 10 bytes"), "{err}");
    }

    #[test]
    fn an_unused_buffer_can_be_dropped() {
        let mut s = Staging::new(1 << 20).unwrap();
        s.bytes_mut().fill(7);
        drop(s);
        let empty = Staging::new(0).unwrap();
        assert_eq!(empty.into_array(&[0], Dtype::U8).unwrap().shape(), vec![0]);
    }
}
