//! Conversions between Rust slices of arrays and the C++ `ArrayList`.

use cxx::UniquePtr;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ffi::bridge as ffi;

pub(crate) fn to_list(arrays: &[&Array]) -> UniquePtr<ffi::ArrayList> {
    let mut list = ffi::list_new();
    for a in arrays {
        ffi::list_push(list.pin_mut(), a.inner());
    }
    list
}

pub(crate) fn from_list(
    op: &'static str,
    r: std::result::Result<UniquePtr<ffi::ArrayList>, cxx::Exception>,
) -> Result<Vec<Array>> {
    let list = r.map_err(|e| Error::from_cxx(op, e))?;
    (0..ffi::list_len(&list))
        .map(|i| Array::wrap(op, ffi::list_get(&list, i)))
        .collect()
}
