//! The extern "C" entry points behind the [`Api`] struct: what the capsule
//! exports to C and what the Python module calls. Each one is thin: a guard
//! (a panic becomes `SystemError`, an error the exception plus the error
//! return) around one call into the write side (`crate::write`) or the
//! lookup; validation and the work live there.

use core::ffi::{c_char, c_int};
use core::ptr;

use pyo3_ffi::*;

use crate::pyutil::Owned;
use crate::write::{self, convert, query};
use crate::{find_in_type, guard, lookup, Api, PyErrSet, SlotDef, ABI_VERSION};

/// The API struct of a runtime that owns `meta`; `ob_type_offset` as
/// measured by `layout::measure_ob_type_offset` (0: none proven).
pub(crate) fn new(meta: *mut PyTypeObject, table_offset: isize, ob_type_offset: isize) -> Api {
    Api {
        abi_version: ABI_VERSION,
        struct_size: core::mem::size_of::<Api>() as u32,
        metaclass: meta,
        table_offset,
        find_slow: lookup::slow::find_slow,
        prehash: prehash_c,
        set_slots: set_slots_c,
        from_spec: from_spec_c,
        py_set_slots,
        py_get_slots,
        py_table_info,
        py_lookup,
        bind_key: bind_key_c,
        foreign_registry: &crate::owner::OWNER.foreign,
        ob_type_offset,
        type_cache: crate::cache::own_entries(),
        type_cache_bits: crate::cache::CACHE_BITS,
        version_tag_offset: crate::cache::tag_offset() as i32,
        flat_offset: table_offset + core::mem::offset_of!(crate::layout::TypeData, flat) as isize,
    }
}

/// Run a fallible entry point: a panic becomes `SystemError` and `err`, an
/// error (the exception is set) `err`.
fn entry<R: Copy>(err: R, f: impl FnOnce() -> Result<R, PyErrSet>) -> R {
    guard(err, || f().unwrap_or(err))
}

/// `ExtType_API.prehash`: the prehash of `len` bytes at `key` (0 for NULL).
///
/// # Safety
/// `key` is NULL or points to `len` readable bytes. No GIL needed.
unsafe extern "C" fn prehash_c(key: *const c_char, len: usize) -> u64 {
    if key.is_null() {
        return 0;
    }
    // SAFETY: the caller passes `len` readable bytes.
    crate::prehash_bytes(unsafe { core::slice::from_raw_parts(key.cast::<u8>(), len) })
}

/// `ExtType_API.set_slots` (`ExtType_SetSlots`): 0, or -1 with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` is NULL or a live object; `defs` is NULL (with `n` 0) or points
/// to `n` readable `SlotDef`s whose `key`s are NULL or NUL-terminated.
unsafe extern "C" fn set_slots_c(tp: *mut PyObject, defs: *const SlotDef, n: isize) -> c_int {
    // SAFETY: the caller's contract is `write::set_slots_from_defs`'s.
    entry(-1, || unsafe { write::set_slots_from_defs(tp, defs, n) }.map(|()| 0))
}

/// `ExtType_API.from_spec` (`ExtType_FromSpec`): a new reference, or NULL with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `spec` is NULL or a valid `PyType_Spec` that outlives the type;
/// `module` and `bases` are NULL or live; `defs`/`n` as for `set_slots_c`.
unsafe extern "C" fn from_spec_c(
    module: *mut PyObject,
    spec: *mut PyType_Spec,
    bases: *mut PyObject,
    defs: *const SlotDef,
    n: isize,
) -> *mut PyObject {
    // SAFETY: the caller's contract is `write::from_spec`'s.
    entry(ptr::null_mut(), || unsafe { write::from_spec(module, spec, bases, defs, n) }.map(Owned::into_ptr))
}

/// `extensibletype.set_slots(tp, slots)`: 0, or -1 with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` and `slots` are NULL or live objects.
unsafe extern "C" fn py_set_slots(tp: *mut PyObject, slots: *mut PyObject) -> c_int {
    // SAFETY: the caller's contract is `write::set_slots_from_mapping`'s.
    entry(-1, || unsafe { write::set_slots_from_mapping(tp, slots) }.map(|()| 0))
}

/// `extensibletype.get_slots(tp)`: a new dict, or NULL with an exception set
/// (see `query::get_slots`).
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` is NULL or a live object.
unsafe extern "C" fn py_get_slots(tp: *mut PyObject) -> *mut PyObject {
    entry(ptr::null_mut(), || {
        // SAFETY: GIL held; `type_arg` refuses NULL and non-types.
        unsafe { query::get_slots(convert::type_arg(tp, "get_slots")?) }.map(Owned::into_ptr)
    })
}

/// `extensibletype.table_info(tp)`: a new dict, or NULL with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` is NULL or a live object.
unsafe extern "C" fn py_table_info(tp: *mut PyObject) -> *mut PyObject {
    entry(ptr::null_mut(), || {
        // SAFETY: GIL held; `type_arg` refuses NULL and non-types.
        unsafe { query::table_info(convert::type_arg(tp, "table_info")?) }.map(Owned::into_ptr)
    })
}

/// `extensibletype.lookup(obj, key)`: the address as an int, None when absent, or NULL with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `obj` and `key` are live objects.
unsafe extern "C" fn py_lookup(obj: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    entry(ptr::null_mut(), || {
        // SAFETY: GIL held; obj and key are live for the call.
        unsafe {
            let (id, _) = convert::key_from_py(key)?;
            let found = find_in_type(Py_TYPE(obj), id);
            if found.is_null() {
                Ok(Py_NewRef(Py_None()))
            } else {
                Ok(Owned::new(PyLong_FromUnsignedLongLong(found as u64))?.into_ptr())
            }
        }
    })
}

/// `ExtType_API.bind_key`: bind a key string to an id allocated elsewhere; 0, or -1 with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `key` is NULL or a NUL-terminated string.
unsafe extern "C" fn bind_key_c(key: *const c_char, id: u64) -> c_int {
    // SAFETY: the caller's contract is `write::bind_key`'s.
    entry(-1, || unsafe { write::bind_key(key, id) }.map(|()| 0))
}
