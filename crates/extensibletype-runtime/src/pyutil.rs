//! Glue for the CPython C API shared by the runtime, the extension module
//! and the array providers: owned references, panics at the FFI boundary,
//! method tables, names for messages. Nothing here knows about slots.
//!
//! Public (doc-hidden) only so that the workspace's arrays and module crates
//! share it; not part of the Rust API. Its functions keep CPython's
//! conventions: `Err(PyErrSet)` means an exception is set, and callers hold
//! the GIL with live objects.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use core::ffi::CStr;
use core::ptr;

use pyo3_ffi::*;

use crate::PyErrSet;

/// A strong reference, released on drop (the GIL must be held then).
pub struct Owned(pub *mut PyObject);

impl Owned {
    /// Wrap a new reference; NULL (a Python exception is set) is
    /// `Err(PyErrSet)`.
    pub fn new(obj: *mut PyObject) -> Result<Owned, PyErrSet> {
        if obj.is_null() {
            Err(PyErrSet)
        } else {
            Ok(Owned(obj))
        }
    }

    /// Give the reference away (to CPython, as a return value).
    pub fn into_ptr(self) -> *mut PyObject {
        core::mem::ManuallyDrop::new(self).0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: we own one reference, and callers hold the GIL.
        unsafe { Py_DECREF(self.0) }
    }
}

/// Run an FFI entry point: a panic becomes a Python `SystemError` and
/// `default`, so no panic crosses the boundary. The GIL (an attached thread
/// state) must be held. Inlined: the non-panicking path costs nothing.
#[inline(always)]
pub fn guard<R>(default: R, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            panicked(panic);
            default
        }
    }
}

#[cold]
#[inline(never)]
fn panicked(panic: Box<dyn std::any::Any + Send>) {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let msg = std::ffi::CString::new(format!("extensibletype: internal error: {what}").replace('\0', ""))
        .expect("NULs removed");
    // SAFETY: the GIL is held (guard's contract).
    unsafe { PyErr_SetString(PyExc_SystemError, msg.as_ptr()) };
}

/// `type(obj).__name__`, for messages (never fails).
///
/// # Safety
/// GIL held; `obj` live.
pub unsafe fn type_name(obj: *mut PyObject) -> String {
    // SAFETY: forwarded; PyType_GetName is in the limited API (3.11).
    unsafe {
        let Ok(name) = Owned::new(PyType_GetName(Py_TYPE(obj))) else {
            PyErr_Clear();
            return "?".into();
        };
        utf8(name.0).unwrap_or("?").to_owned()
    }
}

/// The UTF-8 text of a `str` (borrowed from it), or None with the error cleared.
///
/// # Safety
/// GIL held; `s` live for the returned lifetime.
pub unsafe fn utf8<'a>(s: *mut PyObject) -> Option<&'a str> {
    // SAFETY: the buffer lives as long as the str object.
    unsafe {
        let mut len: Py_ssize_t = 0;
        let p = PyUnicode_AsUTF8AndSize(s, &mut len);
        if p.is_null() {
            PyErr_Clear();
            return None;
        }
        core::str::from_utf8(core::slice::from_raw_parts(p.cast::<u8>(), len as usize)).ok()
    }
}

/// Add `value` (a new reference; NULL = an error is set) to `module` as
/// `name`. The reference is consumed either way.
pub fn add(module: *mut PyObject, name: &CStr, value: *mut PyObject) -> Result<(), PyErrSet> {
    let value = Owned::new(value)?;
    // SAFETY: GIL held (module init); module and value live.
    match unsafe { PyModule_AddObjectRef(module, name.as_ptr(), value.0) } {
        0 => Ok(()),
        _ => Err(PyErrSet),
    }
}

/// A new module from a process-lifetime definition (`methods` ends with
/// `PyMethodDef::zeroed()`), declared GIL-free on free-threaded builds (the
/// runtime is thread-safe). Needs the GIL (module initialisation).
#[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
pub fn new_module(name: &'static CStr, doc: &'static CStr, methods: Vec<PyMethodDef>) -> Result<Owned, PyErrSet> {
    // Kept in a static: modules die at interpreter exit, their definitions
    // must not look lost to a leak checker.
    let methods: &'static mut [PyMethodDef] = keep_forever(methods.into_boxed_slice());
    let def: &'static mut PyModuleDef = keep_forever(Box::new(PyModuleDef {
        m_base: PyModuleDef_HEAD_INIT,
        m_name: name.as_ptr(),
        m_doc: doc.as_ptr(),
        m_size: -1,
        m_methods: methods.as_mut_ptr(),
        m_slots: core::ptr::null_mut(),
        m_traverse: None,
        m_clear: None,
        m_free: None,
    }));
    // SAFETY: GIL held; the definition lives for the process.
    unsafe {
        let module = Owned::new(PyModule_Create(def))?;
        #[cfg(Py_GIL_DISABLED)]
        PyUnstable_Module_SetGIL(module.0, Py_MOD_GIL_NOT_USED);
        Ok(module)
    }
}

/// abi3t (PEP 803: no `PyModuleDef`): a plain module object with the
/// (process-lifetime) methods and doc. The extension module itself declares
/// itself GIL-free through its `PyModExport` slots (`Py_mod_gil`).
#[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
pub fn new_module(name: &'static CStr, doc: &'static CStr, methods: Vec<PyMethodDef>) -> Result<Owned, PyErrSet> {
    let methods: &'static mut [PyMethodDef] = keep_forever(methods.into_boxed_slice());
    // SAFETY: GIL held; the methods live for the process.
    unsafe {
        let module = Owned::new(PyModule_New(name.as_ptr()))?;
        if PyModule_SetDocString(module.0, doc.as_ptr()) < 0 || PyModule_AddFunctions(module.0, methods.as_mut_ptr()) < 0 {
            return Err(PyErrSet);
        }
        Ok(module)
    }
}

/// A `PyMethodDef`: `py_method!(c"name", PyCFunctionFast, f, METH_FASTCALL, c"doc")`.
#[macro_export]
#[doc(hidden)]
macro_rules! py_method {
    ($name:expr, $kind:ident, $f:expr, $flags:expr, $doc:expr) => {
        $crate::pyo3_ffi::PyMethodDef {
            ml_name: $name.as_ptr(),
            ml_meth: $crate::pyo3_ffi::PyMethodDefPointer { $kind: $f },
            ml_flags: $flags,
            ml_doc: $doc.as_ptr(),
        }
    };
}
pub use crate::py_method;

/// The pending exception, taken (cleared) to be put back or dropped.
pub struct PendingError {
    /// 3.12+: the exception object; before: type, value, traceback.
    parts: [*mut PyObject; 3],
}

impl PendingError {
    /// Take the pending exception (all NULL when none is set).
    ///
    /// # Safety
    /// The GIL must be held.
    pub unsafe fn take() -> PendingError {
        let mut parts = [core::ptr::null_mut(); 3];
        // SAFETY: GIL held; we own the references handed over.
        unsafe {
            #[cfg(Py_3_12)]
            {
                parts[1] = PyErr_GetRaisedException();
                if !parts[1].is_null() {
                    parts[0] = Py_NewRef(Py_TYPE(parts[1]).cast::<PyObject>());
                }
            }
            #[cfg(not(Py_3_12))]
            {
                let [tp, value, tb] = &mut parts;
                PyErr_Fetch(tp, value, tb);
            }
        }
        PendingError { parts }
    }

    /// Make it the pending exception again.
    ///
    /// # Safety
    /// The GIL must be held.
    pub unsafe fn restore(self) {
        let [tp, value, tb] = core::mem::ManuallyDrop::new(self).parts;
        // SAFETY: GIL held; the calls steal our references.
        unsafe {
            #[cfg(Py_3_12)]
            {
                let _ = tb;
                if !tp.is_null() {
                    Py_DECREF(tp);
                }
                PyErr_SetRaisedException(value);
            }
            #[cfg(not(Py_3_12))]
            PyErr_Restore(tp, value, tb);
        }
    }

    /// `"TypeName: message"` (or just the type name).
    ///
    /// # Safety
    /// The GIL must be held.
    pub unsafe fn message(&self) -> String {
        let [tp, value, _] = self.parts;
        // SAFETY: GIL held; tp is a type or NULL, value an object or NULL.
        unsafe {
            let name = if tp.is_null() {
                "?".to_owned()
            } else {
                match Owned::new(PyType_GetName(tp.cast())) {
                    Ok(name) => utf8(name.0).unwrap_or("?").to_owned(),
                    Err(PyErrSet) => {
                        PyErr_Clear();
                        "?".to_owned()
                    }
                }
            };
            let text = if value.is_null() {
                None
            } else {
                let s = Owned::new(PyObject_Str(value)).ok();
                if s.is_none() {
                    PyErr_Clear();
                }
                s.and_then(|s| utf8(s.0).map(str::to_owned))
            };
            match text {
                Some(text) if !text.is_empty() => format!("{name}: {text}"),
                _ => name,
            }
        }
    }
}

impl Drop for PendingError {
    fn drop(&mut self) {
        for p in self.parts {
            if !p.is_null() {
                // SAFETY: we own these references; the GIL is held by every
                // user of PendingError.
                unsafe { Py_DECREF(p) };
            }
        }
    }
}

/// The pending exception as `"TypeName: message"`, cleared. GIL held.
///
/// # Safety
/// The GIL must be held and an exception set.
pub unsafe fn fetch_message() -> String {
    // SAFETY: the caller holds the GIL (the contract of `take` and `message`).
    unsafe { PendingError::take().message() }
}

/// Leak `value` on purpose and remember it in a static: for set-up data
/// that CPython reads once but does not keep (a `PyType_Spec` and its slot
/// array), so a leak checker counts it as reachable, not lost. Call once per
/// object created for the process (the list only grows).
pub fn keep_forever<T: ?Sized + 'static>(value: Box<T>) -> &'static mut T {
    struct Kept(Vec<usize>);
    static KEPT: std::sync::Mutex<Kept> = std::sync::Mutex::new(Kept(Vec::new()));
    let value = Box::leak(value);
    if let Ok(mut kept) = KEPT.lock() {
        kept.0.push(value as *mut T as *mut u8 as usize);
    }
    value
}

/// A new tuple of `items` (new references, all given away), or NULL with an
/// exception set: when an item is NULL (its constructor raised) or the
/// tuple cannot be made, every other item is released.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); every
/// non-NULL item is a new reference the caller owns.
pub unsafe fn new_tuple(items: impl IntoIterator<Item = *mut PyObject>) -> *mut PyObject {
    let items: Vec<*mut PyObject> = items.into_iter().collect();
    // SAFETY: GIL held; each item is stolen by the tuple or released once.
    unsafe {
        let t = if items.iter().any(|i| i.is_null()) { ptr::null_mut() } else { PyTuple_New(items.len() as Py_ssize_t) };
        if t.is_null() {
            for item in items.into_iter().filter(|i| !i.is_null()) {
                Py_DECREF(item);
            }
            return ptr::null_mut();
        }
        for (i, item) in items.into_iter().enumerate() {
            // Steals `item`; cannot fail for an index of a new tuple.
            PyTuple_SetItem(t, i as Py_ssize_t, item);
        }
        t
    }
}
