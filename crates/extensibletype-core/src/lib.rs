//! # extensibletype-core
//!
//! The part of extensibletype that needs no Python: what any Rust consumer,
//! or a tool that generates tables at build time, uses.
//!
//! - [`key`] — key hashing ([`prehash`], [`prehash_const`], [`id!`]).
//! - [`table`] — perfect-hash table construction ([`Table`], [`Builder`])
//!   and the inline probe over raw pointers ([`table::raw_lookup`]).
//! - [`signature`] — typed method keys (docs/spec.md, typed methods):
//!   [`parse_signature`], [`parse_typed_key`], [`method_key`].
//! - [`abi`] — the `#[repr(C)]` structs of `include/extensibletype.h`
//!   (type data, slot definitions, the API struct with its Python pointers
//!   typed opaquely) and the header's inline lookup over them.
//!
//! Rust extensions usually add the `extensibletype` crate instead, which
//! re-exports this one and, with feature `python`, the CPython runtime.
//! The contract is docs/spec.md (ABI v1): the prehash, the table layout and the lookup
//! formula are fixed.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// Every unsafe block names its precondition, every unsafe fn documents
// its contract: clippy's undocumented_unsafe_blocks and missing_safety_doc,
// set for the whole workspace in Cargo.toml's [workspace.lints.clippy].

pub mod abi;
pub mod key;
pub mod signature;
pub mod table;

pub use key::{prehash, prehash_bytes, prehash_const, prehash_const_parts};
pub use table::{BuildError, Builder, RawEntry, RawTable, Table, MAX_ENTRIES};
pub use signature::{method_key, method_name_of, parse_signature, parse_typed_key, Signature, SignatureError, TypedKey};
