//! Small FFI helpers shared by the array providers and consumers.

use core::ptr;

use pyo3_ffi::*;

pub(crate) use crate::runtime::pyutil::{add, guard, type_name, Owned};
pub(crate) use crate::runtime::PyErrSet;

/// Set `exc(msg)` with [`PyErrSet::raise`]; returns `Err(PyErrSet)`.
pub(crate) fn raise<T>(exc: *mut PyObject, msg: &str) -> Result<T, PyErrSet> {
    // SAFETY: GIL held by every caller; exc is an exception type.
    Err(unsafe { PyErrSet::raise(exc, msg) })
}

/// The exception types, read at call time (statics of the interpreter).
pub(crate) fn buffer_error() -> *mut PyObject {
    // SAFETY: reading an interpreter-provided static.
    unsafe { PyExc_BufferError }
}
pub(crate) fn type_error() -> *mut PyObject {
    // SAFETY: as above.
    unsafe { PyExc_TypeError }
}
pub(crate) fn value_error() -> *mut PyObject {
    // SAFETY: as above.
    unsafe { PyExc_ValueError }
}
pub(crate) fn index_error() -> *mut PyObject {
    // SAFETY: as above.
    unsafe { PyExc_IndexError }
}

/// `Ok(ptr)` as a new reference for CPython, or NULL with the exception set.
pub(crate) fn ret(r: Result<*mut PyObject, PyErrSet>) -> *mut PyObject {
    r.unwrap_or(ptr::null_mut())
}

/// A `str` object's UTF-8 contents, owned (None with the error cleared).
pub(crate) fn str_of(s: *mut PyObject) -> Option<String> {
    // SAFETY: GIL held by every caller; s is live.
    unsafe { crate::runtime::pyutil::utf8(s).map(str::to_owned) }
}


/// Run `f` in a critical section on `obj` (free-threaded builds: the
/// object's mutex, the recommended way to serialize methods of one object
/// without deadlocking against stop-the-world pauses); a plain call with the
/// GIL.
#[cfg(Py_GIL_DISABLED)]
pub(crate) fn locked<R>(obj: *mut PyObject, f: impl FnOnce() -> R) -> R {
    struct End(*mut PyCriticalSection);
    impl Drop for End {
        fn drop(&mut self) {
            // SAFETY: begun below on this same (unmoved) stack slot.
            unsafe { PyCriticalSection_End(self.0) }
        }
    }
    let mut cs = core::mem::MaybeUninit::<PyCriticalSection>::uninit();
    // SAFETY: the section lives in this frame until End drops; the caller
    // holds an attached thread state and a reference to obj.
    unsafe { PyCriticalSection_Begin(cs.as_mut_ptr(), obj) };
    let _end = End(cs.as_mut_ptr());
    f()
}

/// See the free-threaded version: with the GIL this is a plain call.
#[cfg(not(Py_GIL_DISABLED))]
#[inline(always)]
pub(crate) fn locked<R>(_obj: *mut PyObject, f: impl FnOnce() -> R) -> R {
    f()
}

/// Detach the thread state (release the GIL) for the lifetime of the value
/// (`Py_BEGIN_ALLOW_THREADS` ... `Py_END_ALLOW_THREADS`, also on panic).
pub(crate) struct NoGil(*mut PyThreadState);

impl NoGil {
    /// Release the GIL when `release` is true (small jobs keep it: a
    /// release/re-acquire costs more than they do).
    pub fn new(release: bool) -> NoGil {
        if release {
            // SAFETY: the caller holds the GIL; restored on drop.
            NoGil(unsafe { PyEval_SaveThread() })
        } else {
            NoGil(ptr::null_mut())
        }
    }
}

impl Drop for NoGil {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the state saved by new().
            unsafe { PyEval_RestoreThread(self.0) }
        }
    }
}

/// Re-raise the current exception with `prefix: ` added to its message,
/// same type, the original as `__cause__`. (For errors of a provider seen
/// through a consumer, e.g. "axpy(): y: the array is read-only".)
pub(crate) fn prefix_error(prefix: &str) {
    // SAFETY: GIL held; an exception is set (else nothing happens).
    unsafe {
        let Some(old) = take_exception() else { return };
        let msg = Owned::new(PyObject_Str(old.0)).ok().and_then(|s| str_of(s.0));
        let Some(msg) = msg else {
            PyErr_Clear();
            restore_exception(old);
            return;
        };
        let tp = Py_TYPE(old.0).cast::<PyObject>();
        let _ = raise::<()>(tp, &format!("{prefix}: {msg}"));
        let Some(new) = take_exception() else { return };
        PyException_SetCause(new.0, old.into_ptr()); // steals the cause
        restore_exception(new);
    }
}

/// The current exception (normalized), cleared; None when none is set.
///
/// # Safety
/// The GIL is held.
#[cfg(Py_3_12)]
pub(crate) unsafe fn take_exception() -> Option<Owned> {
    // SAFETY: GIL held.
    Owned::new(unsafe { PyErr_GetRaisedException() }).ok()
}

/// Set `exc` (from [`take_exception`]) as the current exception.
///
/// # Safety
/// The GIL is held; no exception is set.
#[cfg(Py_3_12)]
pub(crate) unsafe fn restore_exception(exc: Owned) {
    // SAFETY: GIL held; steals the reference.
    unsafe { PyErr_SetRaisedException(exc.into_ptr()) }
}

/// The current exception (normalized, traceback attached), cleared.
///
/// # Safety
/// The GIL is held.
#[cfg(not(Py_3_12))]
pub(crate) unsafe fn take_exception() -> Option<Owned> {
    // SAFETY: GIL held; the fetched references are owned here.
    unsafe {
        let (mut tp, mut val, mut tb) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        PyErr_Fetch(&mut tp, &mut val, &mut tb);
        if tp.is_null() {
            return None;
        }
        PyErr_NormalizeException(&mut tp, &mut val, &mut tb);
        if !tb.is_null() {
            if !val.is_null() {
                PyException_SetTraceback(val, tb);
            }
            Py_DECREF(tb);
        }
        Py_DECREF(tp);
        Owned::new(val).ok()
    }
}

/// Set `exc` (from [`take_exception`]) as the current exception.
///
/// # Safety
/// The GIL is held; no exception is set.
#[cfg(not(Py_3_12))]
pub(crate) unsafe fn restore_exception(exc: Owned) {
    // SAFETY: GIL held; PyErr_Restore steals the three references.
    unsafe {
        let val = exc.into_ptr();
        let tp = Py_NewRef(Py_TYPE(val).cast::<PyObject>());
        let tb = PyException_GetTraceback(val); // new reference or NULL
        PyErr_Restore(tp, val, tb);
    }
}
