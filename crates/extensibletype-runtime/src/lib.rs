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

use core::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3_ffi::*;

/// The pyo3-ffi this runtime was built against (the one in your build).
pub use pyo3_ffi;

pub(crate) use extensibletype_core::{key, prehash_bytes, signature, table, BuildError, MAX_ENTRIES};

mod api;
mod bootstrap;
mod convert;
mod error;
mod foreign;
mod idhash;
mod interpreters;
mod layout;
mod lookup;
mod mask;
mod metaclass;
#[doc(hidden)]
pub mod pyutil;
mod registry;
mod state;
mod threads;
pub mod typed;

pub use error::PyErrSet;
pub use typed::{find_typed, find_typed_in_type, method_id, method_id_with, Convention, TypedFn, TypedId};
pub use layout::TypeData;

use crate::table::RawTable;
use error::Error;

pub use extensibletype_core::abi::{SlotDef, ABI_VERSION, CAPSULE_NAME};

/// The C API struct in the capsule `extensibletype._C_API` (`ExtType_API` in
/// `include/extensibletype.h`; the layout is checked by a test), with
/// pyo3-ffi's pointer types: [`extensibletype_core::abi::Api`].
pub type Api = extensibletype_core::abi::Api<PyObject, PyTypeObject, PyType_Spec>;

pub use lookup::cache::{CacheEntry, CACHE_SIZE as TYPE_CACHE_SIZE, HASH_MULT as TYPE_CACHE_HASH_MULT};
pub use lookup::{find, find_in_type, reader, table_of, type_version, Reader};
// The write side names the type cache `crate::cache` (invalidation, the
// entries of a table).
pub(crate) use lookup::cache;

// ABI v1 layout of `ExtType_API` and `ExtType_SlotDef` (docs/spec.md
// section 8), checked by the compiler: the same numbers and signatures as
// tests/abi/abi_layout.c. Append-only: a new field is one more line in each.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Api>() == 128 && align_of::<Api>() == 8);
    assert!(offset_of!(Api, abi_version) == 0);
    assert!(offset_of!(Api, struct_size) == 4);
    assert!(offset_of!(Api, metaclass) == 8);
    assert!(offset_of!(Api, table_offset) == 16);
    assert!(offset_of!(Api, find_slow) == 24);
    assert!(offset_of!(Api, prehash) == 32);
    assert!(offset_of!(Api, set_slots) == 40);
    assert!(offset_of!(Api, from_spec) == 48);
    assert!(offset_of!(Api, py_set_slots) == 56); // internal
    assert!(offset_of!(Api, py_get_slots) == 64); // internal
    assert!(offset_of!(Api, py_table_info) == 72); // internal
    assert!(offset_of!(Api, py_lookup) == 80); // internal
    assert!(offset_of!(Api, bind_key) == 88); // internal
    assert!(offset_of!(Api, foreign_registry) == 96);
    assert!(offset_of!(Api, ob_type_offset) == 104); // appended
    // Appended: the type cache.
    assert!(offset_of!(Api, type_cache) == 112);
    assert!(offset_of!(Api, type_cache_bits) == 120);
    assert!(offset_of!(Api, version_tag_offset) == 124);
    assert!(size_of::<CacheEntry>() == 32 && align_of::<CacheEntry>() == 8);
    assert!(offset_of!(CacheEntry, seq) == 0);
    assert!(offset_of!(CacheEntry, tag) == 4);
    assert!(offset_of!(CacheEntry, tp) == 8);
    assert!(offset_of!(CacheEntry, table) == 16);
    assert!(offset_of!(CacheEntry, reserved) == 24);
    assert!(size_of::<SlotDef>() == 24 && align_of::<SlotDef>() == 8);
    assert!(offset_of!(SlotDef, key) == 0);
    assert!(offset_of!(SlotDef, id) == 8);
    assert!(offset_of!(SlotDef, ptr) == 16);
};

/// The field types of [`Api`], pinned to the C signatures of docs/spec.md
/// section 8 (a changed Rust type fails to compile here).
#[allow(dead_code)]
fn api_field_types(a: &Api) {
    let _: u32 = a.abi_version;
    let _: u32 = a.struct_size;
    let _: *mut PyTypeObject = a.metaclass;
    let _: isize = a.table_offset; // Py_ssize_t
    let _: unsafe extern "C" fn(*mut PyTypeObject, u64) -> *const c_void = a.find_slow;
    let _: unsafe extern "C" fn(*const c_char, usize) -> u64 = a.prehash;
    let _: unsafe extern "C" fn(*mut PyObject, *const SlotDef, isize) -> c_int = a.set_slots;
    let _: unsafe extern "C" fn(*mut PyObject, *mut PyType_Spec, *mut PyObject, *const SlotDef, isize) -> *mut PyObject =
        a.from_spec;
    let _: unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> c_int = a.py_set_slots;
    let _: unsafe extern "C" fn(*mut PyObject) -> *mut PyObject = a.py_get_slots;
    let _: unsafe extern "C" fn(*mut PyObject) -> *mut PyObject = a.py_table_info;
    let _: unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> *mut PyObject = a.py_lookup;
    let _: unsafe extern "C" fn(*const c_char, u64) -> c_int = a.bind_key;
    let _: *const AtomicPtr<RawTable> = a.foreign_registry; // ExtType_Table **
    let _: isize = a.ob_type_offset; // Py_ssize_t
    let _: *const CacheEntry = a.type_cache; // ExtType_TypeCacheEntry *
    let _: u32 = a.type_cache_bits;
    let _: i32 = a.version_tag_offset;
}

pub(crate) use pyutil::guard;

pub use bootstrap::import;

/// The runtime's API struct; [`import`] must have succeeded.
#[inline]
fn api() -> &'static Api {
    // SAFETY: set once by import() and never changed; callers have imported.
    unsafe { bootstrap::API.load(Ordering::Acquire).as_ref().expect("extensibletype::runtime::import() not called") }
}

/// The `ExtensibleType` metaclass (borrowed). [`import`] must have succeeded.
pub fn metaclass() -> *mut PyTypeObject {
    api().metaclass
}

/// Set slots on `tp` (any type: extensible types get their own table,
/// others go to the foreign registry). Needs the GIL. On error returns
/// [`PyErrSet`] (a Python exception is set), and nothing changed.
///
/// # Safety
/// [`import`] must have succeeded; `tp` must be NULL (`TypeError`) or a
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
/// and `bases` NULL or live); [`import`] must have succeeded; every `key`
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
