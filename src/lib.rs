//! # extensibletype
//!
//! C-level duck typing for CPython. Any type can carry an immutable,
//! collision-free hash table of `(64-bit id → pointer)` entries; a consumer
//! computes the id of a key such as `"extensibletype.array.v1:acquire"` at
//! compile time and finds the provider's implementation on any object's type
//! in a few loads, without the GIL.
//!
//! This is the crate Rust users add. It re-exports the workspace's layers
//! (lower layers never use higher ones):
//!
//! 1. [`key`], [`table`], [`abi`] — from `extensibletype-core`, no Python:
//!    key hashing ([`prehash`], [`prehash_const`], [`id!`]), perfect-hash
//!    tables ([`Table`], [`BuildError`]), the `#[repr(C)]` ABI structs,
//!    typed method keys ([`signature`]: [`method_key`], [`parse_typed_key`]).
//! 2. `runtime` (feature `python`) — from `extensibletype-runtime`: the
//!    `ExtensibleType` metaclass, the foreign registry and the capsule API,
//!    on `pyo3-ffi` 0.28 – 0.30 (the version your PyO3 uses).
//!    With it, `typed_methods!` exports a PyO3 `#[pyclass]`'s methods as
//!    typed slots (module `methods`; consumers use
//!    `runtime::find_typed` with a `runtime::TypedId`).
//! 3. `arrays` (feature `arrays`) — from `extensibletype-arrays`: the
//!    array.v1 view, its consumer helpers and providers.
//!
//! The `extensibletype._core` extension module is a separate crate
//! (`extensibletype-module`); this one is never a cdylib.
//!
//! The contract is `docs/spec.md` (ABI v1): the prehash, the table layout and the
//! lookup formula are fixed.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// Every unsafe block names its precondition, every unsafe fn documents
// its contract: clippy's undocumented_unsafe_blocks and missing_safety_doc,
// set for the whole workspace in Cargo.toml's [workspace.lints.clippy].

pub use extensibletype_core::{abi, id, key, signature, table};
pub use extensibletype_core::{prehash, prehash_bytes, prehash_const};
pub use extensibletype_core::{method_key, method_name_of, parse_signature, parse_typed_key, Signature, SignatureError, TypedKey};
pub use extensibletype_core::{BuildError, Builder, RawEntry, RawTable, Table, MAX_ENTRIES};

/// The CPython runtime (`extensibletype-runtime`): [`import`](runtime::import),
/// [`find`](runtime::find), [`find_in_type`](runtime::find_in_type),
/// [`set_slots`](runtime::set_slots), [`SlotDef`](runtime::SlotDef),
/// [`type_from_spec`](runtime::type_from_spec); typed methods in
/// [`runtime::typed`] ([`method_id`](runtime::method_id),
/// [`TypedId`](runtime::TypedId), [`find_typed`](runtime::find_typed));
/// fallible calls return
/// [`PyErrSet`](runtime::PyErrSet) ("a Python exception is set").
#[cfg(feature = "python")]
pub use extensibletype_runtime as runtime;

/// Typed methods from Rust (`runtime::typed`): ids derived at compile time
/// from `extern "C" fn` types ([`method_id`](typed::method_id),
/// [`TypedId`](typed::TypedId)) and [`find_typed`](typed::find_typed),
/// which returns the function as that type.
#[cfg(feature = "python")]
pub use extensibletype_runtime::typed;

#[cfg(feature = "python")]
pub mod methods;

/// The array.v1 layer (`extensibletype-arrays`).
#[cfg(feature = "arrays")]
pub use extensibletype_arrays as arrays;
