//! # extensibletype-runtime
//!
//! The CPython runtime — the `ExtensibleType` metaclass, the foreign
//! registry, and the C API struct — and its Rust API for other `pyo3` /
//! `pyo3-ffi` extensions (re-exported as `extensibletype::runtime`). Works
//! with any pyo3-ffi 0.28 – 0.30: the extension that links this crate picks
//! the version (re-exported here as [`pyo3_ffi`]).
//!
//! One runtime per process (docs/spec.md §7): the first copy of this crate that calls
//! [`import`] creates the metaclass and publishes its [`Api`] struct
//! process-wide (a rendezvous found through the dynamic loader, see
//! `bootstrap.rs`) and in every interpreter's `sys.modules["_extensibletype"]`;
//! every later copy (another extension linking this crate), in any
//! interpreter, finds it and goes through that struct, exactly like a C
//! consumer of `extensibletype.h`.
//!
//! ```no_run
//! use core::ffi::c_void;
//! use extensibletype_core::id;
//! use extensibletype_runtime as runtime; // `extensibletype::runtime` in the facade
//! # unsafe fn demo(obj: *mut pyo3_ffi::PyObject) -> Result<(), runtime::PyErrSet> {
//! // Once, with the GIL (e.g. in your module's init):
//! runtime::import()?;
//! // Anywhere, without the GIL, holding a reference to `obj`:
//! let f = unsafe { runtime::find(obj, id!("mylib.shape.v1:area")) };
//! if !f.is_null() {
//!     let area: extern "C" fn(*mut pyo3_ffi::PyObject) -> f64 = unsafe { core::mem::transmute(f) };
//!     let _ = area(obj);
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// Every unsafe block names its precondition, every unsafe fn documents
// its contract: clippy's undocumented_unsafe_blocks and missing_safety_doc,
// set for the whole workspace in Cargo.toml's [workspace.lints.clippy].

use core::ffi::c_void;
use core::ptr;

use pyo3_ffi::*;

/// The pyo3-ffi this runtime was built against (the one in your build).
pub use pyo3_ffi;

pub(crate) use extensibletype_core::{key, prehash_bytes, signature, table, BuildError, MAX_ENTRIES};

mod bootstrap;
mod cache;
mod capi;
mod cpython;
mod error;
mod foreign;
mod idhash;
mod mask;
mod metaclass;
mod owner;
#[doc(hidden)]
pub mod pyutil;
mod rust_api;
pub mod typed;
mod write;

// The rooms (README, "Layout"): `write` (what a writer calls: set_slots,
// registry, publish, queries), `cpython` (every read of type internals and
// every interpreter-version cfg), `capi` (the thin extern "C" entry points),
// `bootstrap` (import, rendezvous, ABI checks), `metaclass` (the type's own
// slot functions); the read side is `find`/`table_of` below, `cache` and
// `metaclass::find_slow`. The read side reaches the CPython room and the
// shared state by these short paths.
pub(crate) use cpython::{interpreters, layout, threads};
pub(crate) use write::state;

pub use error::PyErrSet;
pub use typed::{find_typed, find_typed_in_type, method_id, method_id_with, Convention, TypedFn, TypedId};
pub use cpython::layout::TypeData;

use crate::table::{raw_lookup, RawTable};
use layout::TypeDataExt;

pub use extensibletype_core::abi::{SlotDef, ABI_VERSION, CAPSULE_NAME};

/// The C API struct in the capsule `extensibletype._C_API` (`ExtType_API` in
/// `include/extensibletype.h`; the layout is checked by a test), with
/// pyo3-ffi's pointer types: [`extensibletype_core::abi::Api`].
pub type Api = extensibletype_core::abi::Api<PyObject, PyTypeObject, PyType_Spec>;

pub use cache::{CacheEntry, CACHE_SIZE as TYPE_CACHE_SIZE, HASH_MULT as TYPE_CACHE_HASH_MULT};

pub(crate) use pyutil::guard;

pub use bootstrap::import;
use bootstrap::api;
pub use rust_api::{metaclass, set_slots, type_from_spec};

/// The one table a lookup on `tp` probes inline: an extensible type's own
/// (effective) table, the table the type cache names for any other type,
/// or a foreign-registered type's registry entry. NULL means "ask the slow
/// path" (types not cached yet) — [`find_in_type`] does that, and fills
/// the cache.
///
/// For consumers that look up several keys on one type: probe each with
/// [`raw_lookup`]. No GIL needed.
///
/// # Safety
/// [`import`] must have succeeded and `tp` must be a live type object (the
/// caller holds a reference to it or to an instance); the table lives as long
/// as `tp`.
#[inline]
pub unsafe fn table_of(tp: *mut PyTypeObject) -> *const RawTable {
    // SAFETY: see the contract; tables are published with release stores and
    // never freed while their type lives (registry tables never).
    unsafe {
        if Py_TYPE(tp.cast()) == layout::metaclass() {
            let table = TypeData::load(tp);
            if !table.is_null() {
                return table;
            }
        }
        // The type cache (filled by the slow path), then the registry.
        let table = cache::probe(tp);
        if !table.is_null() {
            return table;
        }
        let registry = layout::foreign_registry();
        if registry.is_null() {
            return ptr::null();
        }
        raw_lookup(registry, tp as u64).cast()
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
/// [`import`] must have succeeded and `tp` must be NULL or a live object.
#[inline]
pub unsafe fn find_in_type(tp: *mut PyTypeObject, id: u64) -> *const c_void {
    if tp.is_null() || id == 0 {
        return ptr::null();
    }
    // SAFETY: forwarded; the slow path reads type fields, so a non-type
    // (whose metaclass check and registry probe both missed) stops here.
    unsafe {
        if Py_TYPE(tp.cast()) == layout::metaclass() {
            let table = TypeData::load(tp);
            if !table.is_null() {
                return raw_lookup(table, id);
            }
        }
        let table = cache::probe(tp);
        if !table.is_null() {
            return raw_lookup(table, id);
        }
        if PyType_Check(tp.cast()) == 0 {
            return ptr::null();
        }
        (api().find_slow)(tp, id)
    }
}

/// Find the implementation of `id` on `type(obj)`: NULL when absent (and
/// for a NULL `obj` or id 0).
///
/// # Safety
/// As [`find_in_type`]; `obj` must be NULL or a live object.
#[inline]
pub unsafe fn find(obj: *mut PyObject, id: u64) -> *const c_void {
    if obj.is_null() {
        return ptr::null();
    }
    // SAFETY: forwarded; a live object has a live type.
    unsafe { find_in_type(Py_TYPE(obj), id) }
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
/// [`import`] must have succeeded and `tp` must be a live, ready type.
pub unsafe fn type_version(tp: *mut PyTypeObject) -> u32 {
    // SAFETY: forwarded.
    unsafe { cache::version_of(tp) }
}
