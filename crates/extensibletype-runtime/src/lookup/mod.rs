//! The read side: a lookup from Rust, GIL-free.
//!
//! - this file: [`find`], [`find_in_type`], [`table_of`] — thin calls into
//!   the one lock-free reader, [`extensibletype_core::abi::Reader`] (the
//!   header's inline lookup, imported from the process's [`Api`] struct like
//!   a C consumer's `ExtType_Import`);
//! - [`slow`]: the slow path (`ExtType_API.find_slow`), one decision tree
//!   for "which table answers a lookup on this type";
//! - [`cache`]: the type cache's entries, fill and invalidation;
//!   `tags.rs`: giving types version tags, proving where the tag lies.

use core::ffi::c_void;
use core::ptr;
use std::sync::OnceLock;

use pyo3_ffi::*;

use crate::table::RawTable;
use crate::Api;

pub(crate) mod cache;
pub(crate) mod slow;
mod tags;

/// The lock-free reader of the runtime's API struct, with pyo3-ffi's pointer
/// types: [`extensibletype_core::abi::Reader`].
pub type Reader = extensibletype_core::abi::Reader<PyObject, PyTypeObject, PyType_Spec>;

/// This copy's reader, imported from the process's API struct on the first
/// lookup.
static READER: OnceLock<Reader> = OnceLock::new();

/// The process's lookup reader (the header's inline lookup over the
/// process's [`Api`]), for Rust consumers that probe several ids on one
/// type ([`Reader::table_of`], then [`raw_lookup`](crate::table::raw_lookup)
/// per id). Its slow rung refuses objects that are not types (NULL). No GIL
/// needed; [`import`](crate::import) must have succeeded.
///
/// # Panics
/// On the first call, if [`import`](crate::import) has not succeeded, or if
/// the process's runtime published an API struct with an invalid type cache
/// (which the header's `ExtType_Import` refuses too).
#[inline(always)]
pub fn reader() -> &'static Reader {
    READER.get_or_init(import_reader)
}

/// The first lookup of this copy: import [`READER`], then look up. Out of
/// line and reached by a tail call, so that the lookups' fast paths save no
/// registers for it (checked with callgrind: 3 instructions per lookup for
/// the "imported yet?" test, none for this path).
///
/// # Safety
/// As [`find_in_type`] (`tp` not NULL, `id` not 0).
#[cold]
#[inline(never)]
unsafe fn first_find_in_type(tp: *mut PyTypeObject, id: u64) -> *const c_void {
    // SAFETY: forwarded.
    unsafe { reader().find_in_type(tp, Py_TYPE(tp.cast()), id) }
}

/// As [`first_find_in_type`], for [`table_of`].
///
/// # Safety
/// As [`table_of`].
#[cold]
#[inline(never)]
unsafe fn first_table_of(tp: *mut PyTypeObject) -> *const RawTable {
    // SAFETY: forwarded.
    unsafe { reader().table_of(tp, Py_TYPE(tp.cast())) }
}

/// Import [`READER`] from the process's API struct (first lookup).
#[cold]
fn import_reader() -> Reader {
    let api: *const Api = crate::api();
    // SAFETY: `api()` is the process's API struct (or this copy's completed
    // view of an older owner's), leaked (lives for the process) and checked
    // by `import()` (same ABI version, at least ABI v1's first fields);
    // `Reader::import` reads appended fields only when `struct_size`
    // covers them.
    let reader = unsafe { Reader::import(api) };
    reader.expect("extensibletype: the runtime's API struct has an invalid type cache").with_find_slow(slow_if_type)
}

/// The reader's last rung for the Rust API: NULL for an object that is not
/// a type (the fast rungs missed it: its type is not the metaclass and no
/// cache entry names it), else the process's `find_slow`.
///
/// # Safety
/// `tp` must be a live object.
unsafe extern "C" fn slow_if_type(tp: *mut PyTypeObject, id: u64) -> *const c_void {
    // SAFETY: `tp` is live (the contract); the slow path reads type fields,
    // so a non-type stops here.
    unsafe {
        if PyType_Check(tp.cast()) == 0 {
            return ptr::null();
        }
        (crate::api().find_slow)(tp, id)
    }
}

/// The one table a lookup on `tp` probes inline: an extensible type's own
/// (effective) table, or the table the type cache names for any other type.
/// NULL means "ask the slow path" (types not cached yet) — [`find_in_type`]
/// does that, and fills the cache.
///
/// For consumers that look up several keys on one type: probe each with
/// [`raw_lookup`](crate::table::raw_lookup). No GIL needed.
///
/// # Safety
/// [`import`](crate::import) must have succeeded and `tp` must be a live
/// type object (the caller holds a reference to it or to an instance); the
/// table lives as long as `tp`.
#[inline]
pub unsafe fn table_of(tp: *mut PyTypeObject) -> *const RawTable {
    // SAFETY: forwarded; a live object has a live type.
    unsafe {
        match READER.get() {
            Some(reader) => reader.table_of(tp, Py_TYPE(tp.cast())),
            None => first_table_of(tp),
        }
    }
}

/// Find the implementation of `id` on `tp`: NULL when absent — also for a
/// NULL `tp`, for id 0 (reserved, never registered) and for an object that
/// is not a type.
///
/// No GIL needed; the caller must hold a reference to `tp` (or an instance).
/// The fast path ([`table_of`], then one probe) is inline.
///
/// # Safety
/// [`import`](crate::import) must have succeeded and `tp` must be NULL or a
/// live object.
#[inline]
pub unsafe fn find_in_type(tp: *mut PyTypeObject, id: u64) -> *const c_void {
    if tp.is_null() || id == 0 {
        return ptr::null();
    }
    // The reader's type-cache probe reads `tp`'s version tag, a field past
    // the end of a small non-type object: refuse those before it.
    // SAFETY: `tp` is a live object (the contract).
    if unsafe { PyType_Check(tp.cast()) } == 0 {
        return ptr::null();
    }
    // SAFETY: forwarded; `tp` is a live type.
    unsafe { find_in_live_type(tp, id) }
}

/// [`find_in_type`] once `tp` is known to be a live type and `id` non-zero.
///
/// # Safety
/// [`import`](crate::import) must have succeeded; `tp` is a live type.
#[inline(always)]
unsafe fn find_in_live_type(tp: *mut PyTypeObject, id: u64) -> *const c_void {
    // SAFETY: forwarded.
    unsafe {
        match READER.get() {
            Some(reader) => reader.find_in_type(tp, Py_TYPE(tp.cast()), id),
            None => first_find_in_type(tp, id),
        }
    }
}

/// Find the implementation of `id` on `type(obj)`: NULL when absent (and
/// for a NULL `obj` or id 0).
///
/// # Safety
/// [`import`](crate::import) must have succeeded; `obj` must be NULL or a
/// live object.
#[inline]
pub unsafe fn find(obj: *mut PyObject, id: u64) -> *const c_void {
    if obj.is_null() || id == 0 {
        return ptr::null();
    }
    // SAFETY: forwarded; a live object's type is a live type.
    unsafe { find_in_live_type(Py_TYPE(obj), id) }
}

/// A token for "this state of `tp`", for callers that remember something
/// about a type (for example a negative answer of their own slow path) and
/// must forget it when the type changes: CPython's version tag of `tp`
/// (given one now if it has none and the calling thread has an attached
/// thread state). Non-zero values change whenever `tp` or one of its bases
/// is modified (attribute or `__bases__` assignment), and a tag is not
/// reused for another type of the same interpreter; pair it with the
/// interpreter's id to compare across interpreters. 0 means unknown (no tag
/// available, or the runtime could not locate the field under the limited
/// API): remember nothing then. No GIL needed.
///
/// # Safety
/// [`import`](crate::import) must have succeeded and `tp` must be a live,
/// ready type.
pub unsafe fn type_version(tp: *mut PyTypeObject) -> u32 {
    // SAFETY: forwarded.
    unsafe { cache::version_of(tp) }
}
