//! Version tags for the type cache: giving a type a tag (only with an
//! attached thread state) and, under the limited API, proving where
//! `tp_version_tag` lies on the running interpreter before the cache uses it.

use core::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3_ffi::*;

use super::cache::{own_entries, set_view};
use crate::layout;

#[cfg(all(Py_3_12, not(Py_LIMITED_API)))]
extern "C" {
    fn PyUnstable_Type_AssignVersionTag(tp: *mut PyTypeObject) -> core::ffi::c_int;
}

#[cfg(all(not(Py_3_12), not(Py_LIMITED_API)))]
extern "C" {
    fn _PyType_Lookup(tp: *mut PyTypeObject, name: *mut PyObject) -> *mut PyObject;
}

/// An interned attribute name no type has (for tag assignment by lookup).
static PROBE_NAME: AtomicPtr<PyObject> = AtomicPtr::new(ptr::null_mut());

/// Give `tp` a version tag if the calling thread has an attached thread
/// state of its own ([`crate::threads::attached`]: decided from this
/// thread's state on every version); otherwise do nothing (no Python API
/// without one). A type that is not ready (being created, or a static type
/// torn down at exit) gets no tag either: CPython's lookup would ready it.
///
/// # Safety
/// `tp` must be a live type.
pub(super) unsafe fn assign_tag(tp: *mut PyTypeObject) {
    // SAFETY: everything after the check runs with an attached thread state
    // of this thread; PyType_GetFlags reads a live type's flags.
    unsafe {
        if !crate::threads::attached() || PyType_GetFlags(tp) & Py_TPFLAGS_READY == 0 {
            return;
        }
        #[cfg(all(Py_3_12, not(Py_LIMITED_API)))]
        {
            PyUnstable_Type_AssignVersionTag(tp);
        }
        #[cfg(all(not(Py_3_12), not(Py_LIMITED_API)))]
        {
            // A method-cache lookup assigns the tag (and never raises for a
            // str name; it clears its own errors).
            let name = PROBE_NAME.load(Ordering::Acquire);
            if !name.is_null() {
                _PyType_Lookup(tp, name);
            }
        }
        #[cfg(Py_LIMITED_API)]
        assign_tag_by_getattr(tp);
    }
}

/// Under the limited API: a failed attribute lookup on the type assigns the
/// tag. Only where it runs no Python code: the metaclass uses type's own
/// tp_getattro (no `__getattr__`/`__getattribute__` override). A pending
/// exception is kept.
///
/// # Safety
/// The calling thread has an attached thread state; `tp` is a live, ready
/// type.
#[cfg(Py_LIMITED_API)]
unsafe fn assign_tag_by_getattr(tp: *mut PyTypeObject) {
    // SAFETY: the caller's contract (attached thread state, live type).
    unsafe {
        let meta = Py_TYPE(tp.cast());
        let name = PROBE_NAME.load(Ordering::Acquire);
        let type_getattro = PyType_GetSlot(ptr::addr_of_mut!(PyType_Type), Py_tp_getattro);
        if name.is_null() || PyType_GetSlot(meta, Py_tp_getattro) != type_getattro {
            return;
        }
        let (mut t, mut v, mut tb) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        #[allow(deprecated)]
        PyErr_Fetch(&mut t, &mut v, &mut tb);
        lookup_missing(tp.cast(), name);
        #[allow(deprecated)]
        PyErr_Restore(t, v, tb);
    }
}

/// A failed attribute lookup on `tp` (assigns its version tag).
///
/// # Safety
/// The GIL is held; `tp` is a live type and `name` a str.
unsafe fn lookup_missing(tp: *mut PyObject, name: *mut PyObject) {
    // SAFETY: GIL held; tp is live.
    unsafe {
        let found = PyObject_GetAttr(tp, name);
        if found.is_null() {
            PyErr_Clear();
        } else {
            Py_DECREF(found);
        }
    }
}

/// A fresh heap type (new reference, or NULL with an error set) made by
/// `type(name, (), {})`.
///
/// # Safety
/// The GIL is held.
unsafe fn probe_type() -> *mut PyObject {
    // SAFETY: the caller holds the GIL; `PyType_Type` is a static type and
    // the new dict is stolen by the `N` format.
    unsafe {
        PyObject_CallFunction(
            ptr::addr_of_mut!(PyType_Type).cast(),
            c"s()N".as_ptr(),
            c"_extensibletype_tag_probe".as_ptr(),
            PyDict_New(),
        )
    }
}

/// Is `off` where this interpreter keeps `tp_version_tag`? Observed on fresh
/// heap types: 0 after `PyType_Modified`, non-zero after an attribute
/// lookup, a different value after the next modification and lookup, and a
/// different value again on another type. No error left set.
///
/// # Safety
/// The GIL is held; `name` is a str no type has as an attribute.
unsafe fn prove(off: isize, name: *mut PyObject) -> bool {
    // SAFETY: GIL held; reads stay inside type objects (checked against
    // type.__basicsize__).
    unsafe {
        let basicsize = PyObject_GetAttrString(ptr::addr_of_mut!(PyType_Type).cast(), c"__basicsize__".as_ptr());
        if basicsize.is_null() {
            PyErr_Clear();
            return false;
        }
        let size = PyLong_AsSsize_t(basicsize);
        Py_DECREF(basicsize);
        if size < 0 {
            PyErr_Clear();
            return false;
        }
        if off <= 0 || off % 4 != 0 || off + 4 > size {
            return false;
        }
        let (a, b) = (probe_type(), probe_type());
        let ok = !a.is_null() && !b.is_null() && {
            let (ta, tb) = (a.cast::<PyTypeObject>(), b.cast::<PyTypeObject>());
            PyType_Modified(ta);
            let v0 = layout::version_tag(ta, off);
            lookup_missing(a, name);
            let v1 = layout::version_tag(ta, off);
            PyType_Modified(ta);
            let v2 = layout::version_tag(ta, off);
            lookup_missing(a, name);
            let v3 = layout::version_tag(ta, off);
            lookup_missing(b, name);
            let v4 = layout::version_tag(tb, off);
            v0 == 0 && v1 != 0 && v2 == 0 && v3 != 0 && v3 != v1 && v4 != 0 && v4 != v3 && v4 != v1
        };
        if a.is_null() || b.is_null() {
            PyErr_Clear();
        }
        for t in [a, b] {
            if !t.is_null() {
                Py_DECREF(t);
            }
        }
        ok
    }
}

/// Set up the cache of the runtime this copy creates: prove the tag offset
/// (cache off when it cannot be proven) and use this copy's entries.
///
/// # Safety
/// The GIL is held; called once, before the API struct is published.
pub(crate) unsafe fn init() {
    // SAFETY: the caller holds the GIL and calls this once, before any
    // reader can see this copy's cache; the interned name is kept forever.
    unsafe {
        crate::threads::init();
        let name = PyUnicode_InternFromString(c"_extensibletype_no_such_attribute".as_ptr());
        if name.is_null() {
            PyErr_Clear();
            set_view(own_entries(), 0);
            return;
        }
        PROBE_NAME.store(name, Ordering::Release); // kept for the process
        let off = layout::version_tag_candidates().iter().copied().find(|&off| prove(off, name)).unwrap_or(0);
        set_view(own_entries(), off);
    }
}
