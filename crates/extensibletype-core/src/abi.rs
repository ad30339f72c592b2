//! The ABI v1 structs shared with `include/extensibletype.h` (the layouts are
//! checked against the header by `python/tests/test_header.py`), and the
//! header's inline lookup over them.
//!
//! Nothing here depends on Python. Where a struct holds a CPython pointer
//! (`PyObject *`, `PyTypeObject *`, `PyType_Spec *`) its type is a
//! parameter, defaulting to an opaque type of this crate: the runtime
//! instantiates [`Api`] with pyo3-ffi's types; a consumer with its own
//! bindings may use the defaults and cast. The layout is the same either way
//! (every such field is a thin pointer).

use core::ffi::{c_char, c_int, c_void, CStr};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::table::{raw_lookup, RawTable};

/// ABI version of the table layout, the lookup formula and [`Api`].
pub const ABI_VERSION: u32 = 1;

/// Name of the capsule holding the [`Api`] struct (`extensibletype._C_API`).
pub const CAPSULE_NAME: &CStr = c"extensibletype._C_API";

/// An opaque `PyObject` (only ever behind a pointer).
#[repr(C)]
pub struct OpaqueObject {
    _private: [u8; 0],
    _not_send_sync: PhantomData<*mut u8>,
}

/// An opaque `PyTypeObject` (only ever behind a pointer).
#[repr(C)]
pub struct OpaqueType {
    _private: [u8; 0],
    _not_send_sync: PhantomData<*mut u8>,
}

/// An opaque `PyType_Spec` (only ever behind a pointer).
#[repr(C)]
pub struct OpaqueSpec {
    _private: [u8; 0],
    _not_send_sync: PhantomData<*mut u8>,
}

/// One slot to set (`ExtType_SlotDef` in C): `key` names it (NUL-terminated
/// UTF-8), or, when `key` is NULL, `id` does. `ptr` NULL removes the slot.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SlotDef {
    /// Key string, or NULL to use `id`.
    pub key: *const c_char,
    /// Raw id (used when `key` is NULL; if both are given they must agree).
    pub id: u64,
    /// The implementation, or NULL to remove the slot.
    pub ptr: *const c_void,
}

/// The data `ExtensibleType` adds to each type object (`ExtType_TypeData` in
/// the header), at [`Api::table_offset`] from the start of the type object.
/// `table` is what consumers load; `state` and `own_table` are the runtime's.
#[repr(C)]
pub struct TypeData {
    /// The current effective table, NULL when empty or never initialised.
    pub table: AtomicPtr<RawTable>,
    /// The runtime's state for this type; NULL until the type is initialised
    /// (a type made by `type.__new__` without `__init__` inherits from bases).
    pub state: AtomicPtr<c_void>,
    /// The table of the slots set on this type itself (runtime-private):
    /// the slow lookup path walks the MRO over these, first definition wins.
    pub own_table: AtomicPtr<RawTable>,
}

/// The C API struct in the capsule `extensibletype._C_API` (`ExtType_API` in
/// `include/extensibletype.h`).
///
/// `O`, `T` and `S` are the pointee types of `PyObject *`, `PyTypeObject *`
/// and `PyType_Spec *`; the runtime uses pyo3-ffi's
/// (`extensibletype::runtime::Api`).
///
/// Every field is public C API except those documented as *Internal*, which
/// serve the Python module of whichever copy of the runtime loaded first
/// (docs/spec.md §8 lists each field's kind; the struct is append-only, §9).
#[repr(C)]
pub struct Api<O = OpaqueObject, T = OpaqueType, S = OpaqueSpec> {
    /// [`ABI_VERSION`] of the runtime that made this struct.
    pub abi_version: u32,
    /// `size_of::<Api>()` of the runtime that made this struct.
    pub struct_size: u32,
    /// The `ExtensibleType` metaclass (borrowed; lives for the process).
    pub metaclass: *mut T,
    /// Offset of [`TypeData`] (whose first field is the table pointer) from
    /// the start of every type whose metaclass derives from `metaclass`.
    pub table_offset: isize,
    /// GIL-free slow path of a lookup: sub-metaclasses, uninitialised types,
    /// the foreign registry.
    pub find_slow: unsafe extern "C" fn(*mut T, u64) -> *const c_void,
    /// `prehash(key[..len])`.
    pub prehash: unsafe extern "C" fn(*const c_char, usize) -> u64,
    /// Set slots on any type (GIL); 0, or -1 with an exception.
    pub set_slots: unsafe extern "C" fn(*mut O, *const SlotDef, isize) -> c_int,
    /// Create a type with the metaclass from a spec and set its slots (GIL).
    pub from_spec: unsafe extern "C" fn(*mut O, *mut S, *mut O, *const SlotDef, isize) -> *mut O,
    /// Internal: Python `set_slots(tp, mapping)`.
    pub py_set_slots: unsafe extern "C" fn(*mut O, *mut O) -> c_int,
    /// Internal: Python `get_slots(tp)`.
    pub py_get_slots: unsafe extern "C" fn(*mut O) -> *mut O,
    /// Internal: Python `table_info(tp)`.
    pub py_table_info: unsafe extern "C" fn(*mut O) -> *mut O,
    /// Internal: Python `lookup(obj, key)`.
    pub py_lookup: unsafe extern "C" fn(*mut O, *mut O) -> *mut O,
    /// Internal: bind a key string to an id allocated elsewhere (interner only).
    pub bind_key: unsafe extern "C" fn(*const c_char, u64) -> c_int,
    /// Where the foreign registry's table is published (type address →
    /// that type's effective table; acquire-load it). Consumers probe it
    /// inline for types whose metaclass is not `metaclass`; a miss means
    /// "not registered itself": ask `find_slow`, which walks the MRO.
    pub foreign_registry: *const AtomicPtr<RawTable>,
}

// SAFETY: the struct is immutable after publication; the metaclass pointer
// is only dereferenced by code holding the GIL or a reference.
unsafe impl<O, T, S> Sync for Api<O, T, S> {}
// SAFETY: as above.
unsafe impl<O, T, S> Send for Api<O, T, S> {}

impl<O, T, S> Api<O, T, S> {
    /// Is this struct usable by code built for ABI v1 (version equal, struct
    /// at least as large as ours)? `ExtType_Import` refuses it otherwise.
    pub fn is_compatible(&self) -> bool {
        self.abi_version == ABI_VERSION && self.struct_size as usize >= core::mem::size_of::<Api>()
    }

    /// The table a lookup on `tp` probes inline — the header's
    /// `ExtType_FindInType` fast path: the type's own effective table when
    /// `meta` (the type of `tp`) is the metaclass, else `tp`'s entry in the
    /// foreign registry. NULL means "ask [`find_slow`](Api::find_slow)".
    ///
    /// # Safety
    /// `self` must be a published API struct; `tp` must be a live type object
    /// (the caller holds a reference to it or to an instance) and `meta` its
    /// type (`Py_TYPE(tp)`). No GIL needed.
    #[inline]
    pub unsafe fn table_of(&self, tp: *mut T, meta: *mut T) -> *const RawTable {
        // SAFETY: a type whose metaclass is `metaclass` carries TypeData at
        // `table_offset`; tables are published with release stores and live
        // as long as their type (registry tables for the process).
        unsafe {
            if meta == self.metaclass {
                let data = tp.cast::<u8>().offset(self.table_offset).cast::<TypeData>();
                return (*data).table.load(Ordering::Acquire);
            }
            if self.foreign_registry.is_null() {
                return ptr::null();
            }
            let registry = (*self.foreign_registry).load(Ordering::Acquire);
            if registry.is_null() {
                return ptr::null();
            }
            raw_lookup(registry, tp as u64).cast()
        }
    }

    /// Find the implementation of `id` on `tp` (NULL when absent, for id 0
    /// and for a NULL `tp`): [`table_of`](Api::table_of), one probe, and the
    /// runtime's slow path when the fast path has no table.
    ///
    /// # Safety
    /// As [`table_of`](Api::table_of) (`tp` may be NULL).
    #[inline]
    pub unsafe fn find_in_type(&self, tp: *mut T, meta: *mut T, id: u64) -> *const c_void {
        if tp.is_null() || id == 0 {
            return ptr::null();
        }
        // SAFETY: forwarded.
        unsafe {
            let table = self.table_of(tp, meta);
            if !table.is_null() {
                return raw_lookup(table, id);
            }
            (self.find_slow)(tp, id)
        }
    }
}
