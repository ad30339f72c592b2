//! The Rust API's writers (and the metaclass accessor): what another
//! extension calls once [`crate::import`] succeeded. They go through the
//! process's [`crate::Api`] struct, exactly like a C consumer of
//! `extensibletype.h`, so a second copy of this crate reaches the owner's
//! registry.

use pyo3_ffi::*;

use crate::bootstrap::api;
use crate::{PyErrSet, SlotDef};

/// The `ExtensibleType` metaclass (borrowed). [`crate::import`] must have
/// succeeded.
pub fn metaclass() -> *mut PyTypeObject {
    api().metaclass
}

/// Set slots on `tp` (any type: extensible types get their own table,
/// others go to the foreign registry). Needs the GIL. On error returns
/// [`PyErrSet`] (a Python exception is set), and nothing changed.
///
/// # Safety
/// [`crate::import`] must have succeeded; `tp` must be NULL (`TypeError`) or a
/// live object (a non-type gets `TypeError`); every `key` must be NULL or a
/// NUL-terminated string.
pub unsafe fn set_slots(tp: *mut PyObject, defs: &[SlotDef]) -> Result<(), PyErrSet> {
    // SAFETY: `import` succeeded (so `api()` is the live API struct) and the
    // caller guarantees `tp` and the keys; `defs` is a live slice of `len` items.
    match unsafe { (api().set_slots)(tp, defs.as_ptr(), defs.len() as isize) } {
        0 => Ok(()),
        _ => Err(PyErrSet),
    }
}

/// Create a heap type whose metaclass is `ExtensibleType` from `spec` (like
/// `PyType_FromModuleAndSpec`) and give it `defs`. Needs the GIL. Returns a
/// new reference (never NULL), or [`PyErrSet`] (a Python exception is set).
///
/// On CPython 3.11 (no `PyType_FromMetaclass`) the result is a subclass
/// (with `__slots__ = ()`) of a type built from `spec`, under the same name.
///
/// A NULL `spec` gets `ValueError`.
///
/// # Safety
/// As `PyType_FromModuleAndSpec` (GIL held; `spec` NULL or valid; `module`
/// and `bases` NULL or live); [`crate::import`] must have succeeded; every `key`
/// must be NULL or a NUL-terminated string.
pub unsafe fn type_from_spec(
    module: *mut PyObject,
    spec: *mut PyType_Spec,
    bases: *mut PyObject,
    defs: &[SlotDef],
) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: `import` succeeded (so `api()` is the live API struct) and the
    // caller guarantees `spec`, `module`, `bases` and the keys; `defs` is a
    // live slice of `len` items.
    let tp = unsafe { (api().from_spec)(module, spec, bases, defs.as_ptr(), defs.len() as isize) };
    if tp.is_null() {
        Err(PyErrSet)
    } else {
        Ok(tp)
    }
}
