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

use pyo3_ffi::*;

/// The pyo3-ffi this runtime was built against (the one in your build).
pub use pyo3_ffi;

pub(crate) use extensibletype_core::{key, prehash_bytes, signature, table, BuildError, MAX_ENTRIES};

mod bootstrap;
mod capi;
mod cpython;
mod error;
mod foreign;
mod idhash;
mod lookup;
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
// slot functions); the read side is `lookup` (find, find_in_type,
// table_of over core's Reader; the one slow path; the type cache). The read
// side reaches the CPython room and the shared state by these short paths.
pub(crate) use cpython::{interpreters, layout, threads};
pub(crate) use write::state;

pub use error::PyErrSet;
pub use typed::{find_typed, find_typed_in_type, method_id, method_id_with, Convention, TypedFn, TypedId};
pub use cpython::layout::TypeData;

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

pub(crate) use pyutil::guard;

pub use bootstrap::{import, published};
use bootstrap::api;
pub use rust_api::{metaclass, set_slots, type_from_spec};

