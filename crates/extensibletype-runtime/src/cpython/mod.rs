//! The CPython room: every read of type internals (type data, `tp_mro`,
//! `tp_dict`, flags, version tags, the object header) and every
//! interpreter-version `#[cfg(Py_*)]` of the runtime, so that the other
//! rooms speak of types, MROs and namespaces, not of CPython versions.
//! (`pyutil`'s `PendingError` and `new_module`, shared with the other
//! crates, keep their own two cfgs.)
//!
//! - [`layout`]: the type data of extensible types and type fields;
//! - [`mro`]: a type's MRO, with or without the GIL;
//! - [`compat`]: creating types where CPython versions differ;
//! - [`interpreters`]: subinterpreters and per-interpreter version tags;
//! - [`threads`]: thread states and interpreter exit for GIL-free callers.

pub(crate) mod compat;
pub(crate) mod interpreters;
pub(crate) mod layout;
pub(crate) mod mro;
pub(crate) mod threads;
