//! # extensibletype
//!
//! C-level duck typing for CPython. Any type can carry an immutable,
//! collision-free hash table of `(64-bit id → pointer)` entries; a consumer
//! computes the id of a key such as `"extensibletype.array.v1:acquire"` at
//! compile time and finds the provider's implementation on any object's type
//! in a few loads, without the GIL.
//!
//! The crate is layered; lower layers never use higher ones:
//!
//! 1. [`key`] — key hashing ([`prehash`], [`prehash_const`], [`id!`]).
//! 2. [`table`] — perfect-hash table construction and lookup ([`Table`]).
//! 3. `runtime` (feature `python`) — the `ExtensibleType` metaclass, the
//!    foreign registry and the capsule API, on `pyo3-ffi`.
//! 4. `module` (feature `module`) — the `extensibletype._core` extension module.
//!
//! The contract is `docs/spec.md` (ABI v1): the prehash, the table layout and the
//! lookup formula are fixed.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod key;
pub mod table;

pub use key::{prehash, prehash_bytes, prehash_const};
pub use table::{BuildError, Builder, RawEntry, RawTable, Table, MAX_ENTRIES};

#[cfg(feature = "python")]
pub mod runtime;

#[cfg(feature = "module")]
mod module;

#[cfg(feature = "module")]
mod bench;

#[cfg(feature = "python")]
pub mod arrays;
