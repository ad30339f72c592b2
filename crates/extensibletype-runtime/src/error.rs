//! The runtime's error idiom (docs/spec.md §10): [`PyErrSet`], "a Python
//! exception is set", returned by every function that talks to Python, which
//! raises at the point of detection with [`PyErrSet::raise`]. Validation
//! that needs no Python returns its cause instead ([`Invalid`], core's
//! `BuildError`), raised in one place.

use core::fmt;

use pyo3_ffi::*;

use crate::BuildError;

/// The error of every fallible function of the Rust API: a Python exception
/// is set (CPython's convention of `NULL` / `-1` plus `PyErr_Occurred()`).
///
/// The exception itself lives in the thread state, not in this value: turn
/// it into your binding's error type right away, with the GIL still held
/// (PyO3: `.map_err(|_: PyErrSet| PyErr::fetch(py))`), or hand it on to
/// CPython by returning `NULL` / `-1`. Dropping a `PyErrSet` leaves the
/// exception set.
///
/// ```no_run
/// use extensibletype_runtime::{self as runtime, PyErrSet};
///
/// unsafe fn init_module() -> Result<(), PyErrSet> {
///     runtime::import()?; // Err: e.g. ImportError on an ABI mismatch
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyErrSet;

impl fmt::Display for PyErrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Python exception is set")
    }
}

impl std::error::Error for PyErrSet {}

impl PyErrSet {
    /// Set `exc(msg)` as the current exception and return the marker: the
    /// one way runtime and slot-set code raises an error it detected itself
    /// (`return Err(PyErrSet::raise(PyExc_TypeError, &msg))`). NULs in `msg`
    /// are shown as `\0`.
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state), and `exc`
    /// is an exception type (a `PyExc_*` static or a live type object).
    pub unsafe fn raise(exc: *mut PyObject, msg: &str) -> PyErrSet {
        let msg = std::ffi::CString::new(msg.replace('\0', "\\0")).expect("NULs replaced");
        // SAFETY: the caller holds the GIL and passes an exception type;
        // `msg` is NUL-terminated and outlives the call (CPython copies it).
        unsafe { PyErr_SetString(exc, msg.as_ptr()) };
        PyErrSet
    }
}

/// Why slot definitions were refused, found by validation that needs no
/// Python (the registry decides under its mutex, where no Python object may
/// be made): always a `ValueError`, raised in one place by [`Invalid::raise`]
/// once the mutex is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub String);

impl Invalid {
    /// Two different key strings with the same 64-bit id.
    pub(crate) fn collision(id: u64, new: &str, old: &str) -> Invalid {
        Invalid(format!("64-bit key collision: {new:?} and the registered key {old:?} both have id {id:#018x}"))
    }

    /// Raise it as `ValueError(msg)`.
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state).
    pub(crate) unsafe fn raise(self) -> PyErrSet {
        // SAFETY: the caller holds the GIL; PyExc_ValueError is an exception type.
        unsafe { PyErrSet::raise(PyExc_ValueError, &self.0) }
    }
}

impl From<BuildError> for Invalid {
    fn from(e: BuildError) -> Invalid {
        Invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::PyErrSet;

    #[test]
    fn py_err_set_is_a_std_error() {
        fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> Box<dyn std::error::Error + Send + Sync> {
            Box::new(e)
        }
        assert_eq!(boxed(PyErrSet).to_string(), "a Python exception is set");
    }
}
