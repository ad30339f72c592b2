//! The runtime's two error types: [`PyErrSet`], the one error of the public
//! Rust API ("a Python exception is set"), and the internal [`Error`], which
//! names a cause and becomes a Python exception at the FFI boundary.

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

/// Errors inside the runtime, raised as Python exceptions at the boundary.
#[derive(Debug)]
pub(crate) enum Error {
    /// A Python exception is already set.
    Python,
    Type(String),
    Value(String),
    Import(String),
    Build(BuildError),
    /// Two different key strings with the same 64-bit id.
    Collision { id: u64, new: String, old: String },
}

impl Error {
    pub(crate) fn type_error(msg: String) -> Error {
        Error::Type(msg)
    }

    pub(crate) fn value_error(msg: String) -> Error {
        Error::Value(msg)
    }

    /// Set the Python exception (unless [`Error::Python`]: already set) and
    /// return `ret`.
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state).
    pub(crate) unsafe fn raise<R>(self, ret: R) -> R {
        enum Kind {
            Type,
            Value,
            Import,
        }
        let (kind, msg) = match self {
            Error::Python => return ret,
            Error::Type(m) => (Kind::Type, m),
            Error::Value(m) => (Kind::Value, m),
            Error::Import(m) => (Kind::Import, m),
            Error::Build(e) => (Kind::Value, e.to_string()),
            Error::Collision { id, new, old } => (
                Kind::Value,
                format!("64-bit key collision: {new:?} and the registered key {old:?} both have id {id:#018x}"),
            ),
        };
        let msg = std::ffi::CString::new(msg.replace('\0', "\\0")).expect("NULs replaced");
        // SAFETY: the caller holds the GIL; the exception types are static
        // objects the interpreter initialises before any extension runs, and
        // `msg` is a NUL-terminated string that outlives the call (CPython
        // copies it).
        unsafe {
            let exc = match kind {
                Kind::Type => PyExc_TypeError,
                Kind::Value => PyExc_ValueError,
                Kind::Import => PyExc_ImportError,
            };
            PyErr_SetString(exc, msg.as_ptr());
        }
        ret
    }
}

impl From<PyErrSet> for Error {
    /// A CPython call failed: the exception is already set.
    fn from(_: PyErrSet) -> Error {
        Error::Python
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
