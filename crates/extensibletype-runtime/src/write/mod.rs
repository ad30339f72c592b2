//! The write side: everything a writer (a class statement, `set_slots`,
//! `ExtType_FromSpec`, the metaclass's `__setattr__` hook) goes through, and
//! nothing a lookup needs beyond the published state.
//!
//! - [`convert`]: what users pass (Python mappings, C `ExtType_SlotDef`s)
//!   into validated changes, before anything is touched;
//! - [`mod@publish`]: apply a change to a type and republish it and every
//!   subclass;
//! - [`registry`]: who owns which slots, under one mutex; the foreign
//!   registry; all-or-nothing builds;
//! - [`query`]: what `get_slots` / `table_info` report, read through the
//!   registry's query API;
//! - [`state`]: the state writers share with GIL-free readers (one type's
//!   tables; the owner's process-wide tables).

pub(crate) mod convert;
pub(crate) mod publish;
pub(crate) mod query;
pub(crate) mod registry;
pub(crate) mod state;

pub(crate) use publish::{init_class, publish};

use core::ffi::{c_char, CStr};

use pyo3_ffi::*;

use crate::cpython::compat;
use crate::error::Invalid;
use crate::pyutil::Owned;
use crate::{PyErrSet, SlotDef};

/// `ExtType_SetSlots(tp, defs, n)`: validate everything, then publish.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is NULL
/// or a live object; `defs` is NULL (with `n` 0) or points to `n` readable
/// `SlotDef`s whose `key`s are NULL or NUL-terminated.
pub(crate) unsafe fn set_slots_from_defs(tp: *mut PyObject, defs: *const SlotDef, n: isize) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract; `target_arg` refuses NULL and non-types.
    unsafe {
        let tp = convert::target_arg(tp, "ExtType_SetSlots")?;
        let changes = convert::changes_from_defs(defs, n).map_err(|e| e.raise())?;
        publish(tp, &changes, false)
    }
}

/// `extensibletype.set_slots(tp, slots)`: validate everything, then publish.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` and
/// `slots` are NULL or live objects.
pub(crate) unsafe fn set_slots_from_mapping(tp: *mut PyObject, slots: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract; `target_arg` refuses NULL and non-types
    // before any field is read.
    unsafe {
        let tp = convert::target_arg(tp, "set_slots")?;
        let changes = convert::changes_from_mapping(slots, "slots")?;
        publish(tp, &changes, false)
    }
}

/// `ExtType_FromSpec(module, spec, bases, defs, n)`: a new type whose
/// metaclass is ours, with `defs` as its own slots (a new reference).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `spec` is
/// NULL or a valid `PyType_Spec` that outlives the type; `module` and `bases`
/// are NULL or live; `defs`/`n` as for [`set_slots_from_defs`].
pub(crate) unsafe fn from_spec(
    module: *mut PyObject,
    spec: *mut PyType_Spec,
    bases: *mut PyObject,
    defs: *const SlotDef,
    n: isize,
) -> Result<Owned, PyErrSet> {
    // SAFETY: the caller's contract (as for PyType_FromModuleAndSpec).
    unsafe {
        if spec.is_null() {
            return Err(PyErrSet::raise(PyExc_ValueError, "ExtType_FromSpec: spec is NULL"));
        }
        let changes = convert::changes_from_defs(defs, n).map_err(|e| e.raise())?;
        let cls = Owned::new(compat::new_type(module, spec, bases)?)?;
        publish(cls.0.cast(), &changes, true)?;
        Ok(cls)
    }
}

/// The key string of `bind_key(key, id)`: non-NULL, valid UTF-8, with a
/// non-zero id.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string.
unsafe fn bound_name<'a>(key: *const c_char, id: u64) -> Result<&'a str, Invalid> {
    if key.is_null() || id == 0 {
        return Err(Invalid("bind_key needs a key string and a non-zero id".into()));
    }
    // SAFETY: a NUL-terminated string per the contract.
    unsafe { CStr::from_ptr(key) }.to_str().map_err(|_| Invalid("key is not valid UTF-8".into()))
}

/// `ExtType_API.bind_key`: bind a key string to an id allocated elsewhere.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `key` is
/// NULL or a NUL-terminated string.
pub(crate) unsafe fn bind_key(key: *const c_char, id: u64) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract.
    let bound = unsafe { bound_name(key, id) }.and_then(|name| {
        let mut locked = registry::Locked::get();
        registry::bind_name(locked.registry(), id, name)
    });
    // Raised once the mutex is released. SAFETY: GIL held.
    bound.map_err(|e| unsafe { e.raise() })
}
