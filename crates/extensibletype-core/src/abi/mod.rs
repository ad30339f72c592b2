//! The ABI v1 structs shared with `include/extensibletype.h`, and (in
//! [`reader`]) the header's inline lookup over them. Both sides check the
//! same offsets and sizes at compile time: the C side in
//! `tests/abi/abi_layout.c` (compiled by `python/tests/test_header.py`), the
//! Rust side in `const` blocks (the table structs in `table/mod.rs`; these
//! structs below, with their opaque pointer types).
//!
//! Nothing here depends on Python. Where a struct holds a CPython pointer
//! (`PyObject *`, `PyTypeObject *`, `PyType_Spec *`) its type is a
//! parameter, defaulting to an opaque type of this crate: the runtime
//! instantiates [`Api`] with pyo3-ffi's types; a consumer with its own
//! bindings may use the defaults and cast. The layout is the same either way
//! (every such field is a thin pointer).

use core::ffi::{c_char, c_int, c_void, CStr};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

use crate::table::RawTable;

pub mod reader;
pub use reader::{type_cache_index, ImportError, Reader, API_MIN_SIZE};

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
/// `table` is what consumers built for the first ABI v1 headers load;
/// `flat` and `flat_k1` (appended, at [`Api::flat_offset`]) are what
/// readers that know them load instead; `state` and `own_table` are the
/// runtime's.
///
/// The runtime publishes a table with three stores (docs/spec.md §3):
/// `flat_k1` (relaxed), `flat` (release), `table` (release). Once both
/// are stored, `flat` and `table` name the same v1 table, or are both
/// NULL/0; between the stores a reader of either sees a published table.
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
    /// Appended: the flat descriptor word of the current table
    /// ([`crate::table::flat::descriptor`]): `&entries[0] | (s - 4)` for a
    /// flat table, the table itself (low 6 bits 0) for any other, 0 for
    /// none. Read with an acquire load, before `flat_k1`.
    pub flat: AtomicUsize,
    /// Appended: the `k1` of the flat table `flat` names (0 otherwise). A
    /// reader may see it paired with another publication's `flat`, and
    /// checks it against the table's own `k1`
    /// ([`crate::table::flat::descriptor_lookup`]).
    pub flat_k1: AtomicU64,
}

/// The type cache's index multiplier: the entry of `tp` is
/// `(tp as u64 * TYPE_CACHE_HASH_MULT) >> (64 - Api::type_cache_bits)`.
pub const TYPE_CACHE_HASH_MULT: u64 = 0x9E37_79B9_7F4A_7C15;

/// One entry of the runtime's type cache (`ExtType_TypeCacheEntry` in the
/// header), 32 bytes. It answers "which table does a lookup on `tp` probe?"
/// for types the metaclass fast path does not cover, while `tp`'s
/// `tp_version_tag` equals `tag` (docs/spec.md, "Lookup caches and
/// invalidation"). `T` is the pointee type of `PyTypeObject *`.
#[repr(C)]
pub struct CacheEntry<T = OpaqueType> {
    /// Seqlock: odd while a writer is changing the entry.
    pub seq: AtomicU32,
    /// `tp_version_tag` of `tp` when filled; never 0 in a filled entry.
    pub tag: AtomicU32,
    /// The type (compared only, never dereferenced); NULL when empty.
    pub tp: AtomicPtr<T>,
    /// The table a lookup on `tp` probes (never NULL in a filled entry).
    pub table: AtomicPtr<RawTable>,
    /// The flat descriptor word of `table` (docs/spec.md §2.4, the word
    /// [`TypeData::flat`] holds for the same table: `&entries[0] | (s - 4)`
    /// for a flat table, else `table` itself), written with `table` under
    /// the seqlock by runtimes whose [`Api`] has `flat_offset`; 0 (the
    /// former `reserved`) from older runtimes, whose readers use `table`.
    pub flat: AtomicUsize,
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
    /// Kept for the ABI: where runtimes up to 0.1 published the foreign
    /// registry's table (type address → effective table). The registry is
    /// an index now (docs/spec.md §5) and `*foreign_registry` is always
    /// NULL, which every reader treats as a miss: ask the type cache, then
    /// `find_slow`.
    pub foreign_registry: *const AtomicPtr<RawTable>,
    /// Appended (still ABI v1; read it only when `struct_size` covers it):
    /// the byte offset of `ob_type` in every object of this interpreter,
    /// measured at import on live objects (0 when none could be proven).
    /// Consumers whose `Py_TYPE` is an exported function (stable ABI 3.14+,
    /// abi3t) read the type pointer there instead; the value is only
    /// meaningful in the process that published it.
    pub ob_type_offset: isize,
    /// Appended: the type cache, `1 << type_cache_bits` [`CacheEntry`]s
    /// indexed by [`TYPE_CACHE_HASH_MULT`].
    pub type_cache: *const CacheEntry<T>,
    /// Appended: log2 of the number of entries of `type_cache`.
    pub type_cache_bits: u32,
    /// Appended: byte offset of `tp_version_tag` in type objects, proven on
    /// the running interpreter; 0 = the cache is off (entries are never
    /// filled, so probing it is still safe: offset 0 is readable).
    pub version_tag_offset: i32,
    /// Appended: offset of [`TypeData::flat`] (followed by
    /// [`TypeData::flat_k1`]) from the start of every type whose metaclass
    /// derives from `metaclass`. A reader of a struct without this field
    /// reads the descriptor word at `table_offset` instead: there it finds
    /// the v1 table pointer, whose low 6 bits are 0 ("probe this table").
    pub flat_offset: isize,
}

// ABI v1 layout (docs/spec.md sections 3 and 8), checked by the compiler:
// the same numbers as tests/abi/abi_layout.c. Every CPython pointer is a
// thin pointer, so the opaque defaults have the layout of any
// instantiation. Append-only: a new field is one more line.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Api>() == 136 && align_of::<Api>() == 8);
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
    assert!(offset_of!(Api, type_cache) == 112); // appended: the type cache
    assert!(offset_of!(Api, type_cache_bits) == 120);
    assert!(offset_of!(Api, version_tag_offset) == 124);
    assert!(offset_of!(Api, flat_offset) == 128); // appended: the flat descriptor
    assert!(size_of::<CacheEntry>() == 32 && align_of::<CacheEntry>() == 8);
    assert!(offset_of!(CacheEntry, seq) == 0);
    assert!(offset_of!(CacheEntry, tag) == 4);
    assert!(offset_of!(CacheEntry, tp) == 8);
    assert!(offset_of!(CacheEntry, table) == 16);
    assert!(offset_of!(CacheEntry, flat) == 24);
    assert!(size_of::<TypeData>() == 40 && align_of::<TypeData>() == 8);
    assert!(offset_of!(TypeData, table) == 0);
    assert!(offset_of!(TypeData, state) == 8); // internal
    assert!(offset_of!(TypeData, own_table) == 16); // internal
    assert!(offset_of!(TypeData, flat) == 24); // appended
    assert!(offset_of!(TypeData, flat_k1) == 32); // appended
    assert!(size_of::<SlotDef>() == 24 && align_of::<SlotDef>() == 8);
    assert!(offset_of!(SlotDef, key) == 0);
    assert!(offset_of!(SlotDef, id) == 8);
    assert!(offset_of!(SlotDef, ptr) == 16);
};

// SAFETY: the struct is immutable after publication; the metaclass pointer
// is only dereferenced by code holding the GIL or a reference.
unsafe impl<O, T, S> Sync for Api<O, T, S> {}
// SAFETY: as above.
unsafe impl<O, T, S> Send for Api<O, T, S> {}

impl<O, T, S> Api<O, T, S> {
    /// Does this struct have every field of this version of [`Api`] (ABI
    /// version equal, `struct_size` at least ours)? Stricter than what
    /// readers accept: [`Reader::import`] and `ExtType_Import` take any ABI
    /// v1 struct of at least [`API_MIN_SIZE`] bytes and read appended fields
    /// only when `struct_size` covers them.
    pub fn is_compatible(&self) -> bool {
        self.abi_version == ABI_VERSION && self.struct_size as usize >= core::mem::size_of::<Api>()
    }
}
