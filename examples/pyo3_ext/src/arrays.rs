//! `sum(obj)` (module `pyo3_ext_more`) sums the float64 elements of any array.v1 provider's view
//! (extensibletype's `Array`, NumPy arrays, ...), any strides.

use extensibletype::arrays::abi::{self, ArrayView};
use extensibletype::runtime;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// Sum of the float64 elements of a view (any strides; byte offsets).
///
/// # Safety
/// `v` is an acquired view whose memory stays valid for the call.
unsafe fn sum_view(v: &ArrayView) -> f64 {
    /// # Safety
    /// `data` with `shape` and byte `strides` (equal lengths) lies inside the view.
    unsafe fn walk(data: *const u8, shape: &[i64], strides: &[i64]) -> f64 {
        match shape {
            // SAFETY: the view says an f64 lives at data.
            [] => unsafe { data.cast::<f64>().read_unaligned() },
            // SAFETY: each step stays inside the view (shape/strides from the provider).
            [n, rest @ ..] => (0..*n).map(|i| unsafe { walk(data.offset((i * strides[0]) as isize), rest, &strides[1..]) }).sum(),
        }
    }
    if v.size() == 0 {
        return 0.0;
    }
    // SAFETY: forwarded.
    unsafe { walk(v.data.cast(), v.shape(), v.strides()) }
}

/// `sum(obj) -> float`: the sum of a float64 array.v1 view of `obj`.
#[pyfunction]
pub fn sum(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    let py = obj.py();
    // SAFETY: GIL held, runtime imported, obj alive for the call; with_view
    // acquires through the type's slots and releases after the closure.
    let result = unsafe { abi::with_view(obj.as_ptr(), 0, |v| (v.dtype == abi::DLDataType::F64).then(|| sum_view(v))) };
    match result {
        Ok(Some(total)) => Ok(total),
        Ok(None) => Err(PyTypeError::new_err("sum() needs a float64 array")),
        Err(runtime::PyErrSet) => Err(PyErr::fetch(py)),
    }
}
