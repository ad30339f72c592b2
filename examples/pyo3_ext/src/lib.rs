//! `pyo3_ext`: a PyO3 0.30 extension that provides and consumes
//! extensibletype slots from Rust.
//!
//! - [`Square`] (a `#[pyclass]`) carries the slot [`KEY_AREA`]: a C-level
//!   `double area(PyObject *self)`, registered with `runtime::set_slots`
//!   (PyO3 classes are not `ExtensibleType` classes, so the slot goes to the
//!   foreign registry; lookups find it the same way).
//! - [`area`] finds that slot on *any* object and calls it: `None` when the
//!   type does not provide it.
//! - [`sum`] sums the float64 elements of any array.v1 provider's view
//!   (extensibletype's `Array`, NumPy arrays, ...), any strides.

use core::ffi::{c_void, CStr};

use extensibletype::arrays::abi::{self, ArrayView};
use extensibletype::runtime::{self, SlotDef};
use extensibletype::id;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// The slot this example defines: `double area(PyObject *self)`, called with
/// the GIL held (an attached thread state).
pub const KEY_AREA: &CStr = c"pyo3_ext.shape.v1:area";
const ID_AREA: u64 = id!("pyo3_ext.shape.v1:area");

/// Signature of the [`KEY_AREA`] slot.
type AreaFn = unsafe extern "C" fn(*mut pyo3::ffi::PyObject) -> f64;

/// A square with a side; provides [`KEY_AREA`].
#[pyclass(frozen, module = "pyo3_ext")]
pub struct Square {
    side: f64,
}

#[pymethods]
impl Square {
    #[new]
    fn new(side: f64) -> Self {
        Square { side }
    }

    #[getter]
    fn side(&self) -> f64 {
        self.side
    }
}

/// The [`KEY_AREA`] implementation of [`Square`].
///
/// # Safety
/// GIL held; `obj` is a live `Square` (the slot is only registered on it).
unsafe extern "C" fn square_area(obj: *mut pyo3::ffi::PyObject) -> f64 {
    // SAFETY: the caller holds the GIL and a reference to obj.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: obj is live (borrowed for the call).
    let obj = unsafe { Bound::from_borrowed_ptr(py, obj) };
    obj.cast::<Square>().map_or(f64::NAN, |sq| sq.get().side * sq.get().side)
}

/// `area(obj) -> float | None`: call the [`KEY_AREA`] slot of `type(obj)`.
#[pyfunction]
fn area(obj: &Bound<'_, PyAny>) -> Option<f64> {
    // SAFETY: runtime::import() succeeded in module init; obj is live.
    let f = unsafe { runtime::find(obj.as_ptr(), ID_AREA) };
    if f.is_null() {
        return None;
    }
    // SAFETY: whoever registered KEY_AREA registered an AreaFn; GIL held.
    Some(unsafe { core::mem::transmute::<*const c_void, AreaFn>(f)(obj.as_ptr()) })
}

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
fn sum(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
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

#[pymodule]
fn pyo3_ext(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Load (or join) the process's extensibletype runtime.
    runtime::import().map_err(|_: runtime::PyErrSet| PyErr::fetch(py))?;
    m.add_class::<Square>()?;
    let square = py.get_type::<Square>();
    let defs = [SlotDef { key: KEY_AREA.as_ptr(), id: 0, ptr: square_area as *const c_void }];
    // SAFETY: GIL held; square is a live type; the key is NUL-terminated.
    unsafe { runtime::set_slots(square.as_ptr(), &defs) }.map_err(|_: runtime::PyErrSet| PyErr::fetch(py))?;
    m.add_function(wrap_pyfunction!(area, m)?)?;
    m.add_function(wrap_pyfunction!(sum, m)?)?;
    m.add("KEY_AREA", KEY_AREA.to_str().expect("ASCII"))?;
    Ok(())
}
