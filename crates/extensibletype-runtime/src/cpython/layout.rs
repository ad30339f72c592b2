//! Where a type keeps its table (docs/spec.md §3): the type data that the metaclass
//! adds to every type object, at one offset from the start of the object.
//!
//! The only module that reads or writes type-object fields directly
//! (`tp_mro`, `tp_dict`, `tp_subclasses`, `tp_basicsize`, `tp_flags`, the
//! version tag); everything else goes through these helpers. It builds on
//! `state` only (never on `registry`, which builds on it).

use core::ffi::{c_int, c_void, CStr};
use core::ptr;
use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU32, Ordering};

use pyo3_ffi::*;

use crate::state::{foreign_record, is_registered_metaclass, OwnSlots, OwnTable, Prepared, TypeState};
use crate::table::RawTable;
use crate::PyErrSet;

pub(crate) use super::mro::{find_in_mro, mro};

/// The data `ExtensibleType` adds to each type object (`ExtType_TypeData` in
/// the header); defined with the other ABI structs in extensibletype-core.
pub use extensibletype_core::abi::TypeData;

// ABI v1 layout of `ExtType_TypeData` (docs/spec.md section 3), checked by
// the compiler: the same numbers as tests/abi/abi_layout.c.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<TypeData>() == 40 && align_of::<TypeData>() == 8);
    assert!(offset_of!(TypeData, table) == 0);
    assert!(offset_of!(TypeData, state) == 8); // internal
    assert!(offset_of!(TypeData, own_table) == 16); // internal
    assert!(offset_of!(TypeData, flat) == 24); // appended
    assert!(offset_of!(TypeData, flat_k1) == 32); // appended
};

/// The process's metaclass and table offset, side by side (one address to
/// form).
struct FastPath {
    metaclass: AtomicPtr<PyTypeObject>,
    offset: AtomicIsize,
}

static FAST: FastPath = FastPath { metaclass: AtomicPtr::new(ptr::null_mut()), offset: AtomicIsize::new(0) };

/// Record the process's metaclass and table offset (from creation or from
/// another copy's API struct). `_foreign_registry` (`Api::foreign_registry`)
/// is not read: no reader probes a registry table any more (the lookup
/// reader asks the type cache, then `find_slow`).
pub(crate) fn set_fast_path(meta: *mut PyTypeObject, offset: isize, _foreign_registry: *const AtomicPtr<RawTable>) {
    FAST.offset.store(offset, Ordering::Relaxed);
    FAST.metaclass.store(meta, Ordering::Release);
}

/// The `ExtensibleType` metaclass (NULL before initialisation).
#[inline]
pub(crate) fn metaclass() -> *mut PyTypeObject {
    FAST.metaclass.load(Ordering::Acquire)
}

/// Offset of [`TypeData`] from the start of every extensible type object.
#[inline]
pub(crate) fn offset() -> isize {
    FAST.offset.load(Ordering::Relaxed)
}

/// The type data of an extensible type.
///
/// # Safety
/// `tp` must be a live type whose metaclass is ExtensibleType or a subclass.
#[inline]
pub(crate) unsafe fn data(tp: *mut PyTypeObject) -> *const TypeData {
    // SAFETY: such type objects are at least offset + size_of::<TypeData>() long.
    unsafe { tp.cast::<u8>().offset(offset()).cast() }
}

/// Is `tp`'s metaclass ExtensibleType or a subclass of it? GIL-free.
///
/// # Safety
/// `tp` must be a live type.
#[inline]
pub(crate) unsafe fn is_extensible(tp: *mut PyTypeObject) -> bool {
    // SAFETY: a live object has a live type; PyType_IsSubtype only reads the
    // (immutable once ready) MRO of the metaclass.
    unsafe {
        let meta = Py_TYPE(tp.cast());
        if meta == metaclass() {
            return true;
        }
        if meta == ptr::addr_of_mut!(PyType_Type) {
            return false; // the common case for foreign types: no MRO walk
        }
        is_registered_metaclass(meta) || PyType_IsSubtype(meta, metaclass()) != 0
    }
}

/// The runtime state of an extensible, initialised type.
///
/// # Safety
/// `tp` must be a live type.
pub(crate) unsafe fn state_of(tp: *mut PyTypeObject) -> Option<*mut TypeState> {
    // SAFETY: checked extensible before touching the type data.
    unsafe {
        if !is_extensible(tp) {
            return None;
        }
        let state = (*data(tp)).state.load(Ordering::Acquire);
        (!state.is_null()).then_some(state.cast())
    }
}

/// Install `table` (and its owners) as the current table of an extensible
/// type, creating its state if needed, and publish it (`direct`; else NULL
/// is published in the type data, and lookups take the type cache, see
/// `crate::mask`). A new state is stored after the table, so a GIL-free
/// reader that sees the state also sees the table.
///
/// # Safety
/// `tp` must be a live extensible type and the registry mutex held.
pub(crate) unsafe fn install(
    tp: *mut PyTypeObject,
    table: Prepared,
    owners: &[*mut PyObject],
    own: Option<(OwnSlots, OwnTable)>,
    direct: bool,
) {
    // SAFETY: the caller holds the mutex, so no other writer races us; the
    // state lives until the type's dealloc takes it.
    unsafe {
        let slot = &(*data(tp)).state;
        let existing = slot.load(Ordering::Acquire).cast::<TypeState>();
        let state = if existing.is_null() { Box::into_raw(Box::<TypeState>::default()) } else { existing };
        let raw = (*state).install(table, owners);
        if let Some((slots, own_table)) = own {
            let own_raw = (*state).set_own(slots, own_table);
            (*data(tp)).own_table.store(own_raw.cast_mut(), Ordering::Release);
        }
        (*state).indirect = !direct;
        TypeData::publish(tp, if direct { raw } else { ptr::null() });
        if existing.is_null() {
            slot.store(state.cast(), Ordering::Release);
        }
    }
}

/// GIL-free: the own-slots table of any type (extensible or foreign), or NULL.
///
/// # Safety
/// `tp` must be a live type.
pub(crate) unsafe fn own_table_of(tp: *mut PyTypeObject) -> *const RawTable {
    // SAFETY: `tp` is live (the caller's contract), so `is_extensible` may
    // read its metaclass and, when extensible, its type data; published own
    // tables live as long as their type, registry tables forever.
    unsafe {
        if is_extensible(tp) {
            return TypeData::load_own(tp);
        }
        foreign_record(tp).map_or(ptr::null(), |r| r.own.load(Ordering::Acquire))
    }
}

/// Can `tp` have subclasses? (False only when it certainly has none.)
///
/// # Safety
/// `tp` must be a live type; GIL held.
pub(crate) unsafe fn may_have_subclasses(tp: *mut PyTypeObject) -> bool {
    // SAFETY: reading a field of a live heap type under the GIL.
    #[cfg(not(Py_LIMITED_API))]
    unsafe {
        !(*tp).tp_subclasses.is_null()
    }
    #[cfg(Py_LIMITED_API)]
    {
        let _ = tp;
        true
    }
}

/// Detach the state of a dying (or cleared) extensible type and unpublish
/// its table.
///
/// # Safety
/// `tp` must be an extensible type; no other thread may use it.
pub(crate) unsafe fn take_state(tp: *mut PyTypeObject) -> Option<Box<TypeState>> {
    // SAFETY: forwarded; the pointer came from Box::into_raw.
    unsafe {
        let d = &*data(tp);
        d.flat.store(0, Ordering::Release);
        d.table.store(ptr::null_mut(), Ordering::Release);
        d.own_table.store(ptr::null_mut(), Ordering::Release);
        let state = d.state.swap(ptr::null_mut(), Ordering::AcqRel);
        (!state.is_null()).then(|| Box::from_raw(state.cast::<TypeState>()))
    }
}

/// The runtime's accessors of [`TypeData`] (the struct lives in
/// extensibletype-core, so these are a trait; call them as `TypeData::load`).
pub(crate) trait TypeDataExt {
    /// Publish `table` (NULL: none) as `tp`'s current table, descriptor
    /// first (docs/spec.md §3).
    ///
    /// # Safety
    /// `tp` must be a live extensible type; `table` must stay allocated until
    /// the type is deallocated; the registry mutex held (one writer).
    unsafe fn publish(tp: *mut PyTypeObject, table: *const RawTable);
    /// The own-slots table of an extensible type (acquire load), NULL if none.
    ///
    /// # Safety
    /// `tp` must be a live extensible type.
    unsafe fn load_own(tp: *mut PyTypeObject) -> *const RawTable;
    /// The current table of an extensible type (acquire load).
    ///
    /// # Safety
    /// `tp` must be a live extensible type.
    unsafe fn load(tp: *mut PyTypeObject) -> *const RawTable;
}

impl TypeDataExt for TypeData {
    /// Publish `table` (NULL: none) as `tp`'s current table: its flat
    /// descriptor's `k1` (relaxed), the descriptor word (release), the
    /// table pointer (release) — docs/spec.md §3. A reader pairing this
    /// word with another publication's `k1` is caught by the table's own
    /// `k1` (`descriptor_lookup`), so no seqlock is needed.
    ///
    /// # Safety
    /// `tp` must be a live extensible type; `table` must stay allocated until
    /// the type is deallocated; the registry mutex held (one writer).
    unsafe fn publish(tp: *mut PyTypeObject, table: *const RawTable) {
        // SAFETY: forwarded; `table` is NULL or a live table.
        unsafe {
            let (word, k1) = extensibletype_core::table::flat::descriptor(table);
            let d = &*data(tp);
            d.flat_k1.store(k1, Ordering::Relaxed);
            d.flat.store(word, Ordering::Release);
            d.table.store(table.cast_mut(), Ordering::Release);
        }
    }

    /// The own-slots table of an extensible type (acquire load), NULL if none.
    ///
    /// # Safety
    /// `tp` must be a live extensible type.
    #[inline]
    unsafe fn load_own(tp: *mut PyTypeObject) -> *const RawTable {
        // SAFETY: forwarded.
        unsafe { (*data(tp)).own_table.load(Ordering::Acquire) }
    }

    /// The current table of an extensible type (acquire load).
    ///
    /// # Safety
    /// `tp` must be a live extensible type.
    #[inline]
    unsafe fn load(tp: *mut PyTypeObject) -> *const RawTable {
        // SAFETY: forwarded.
        unsafe { (*data(tp)).table.load(Ordering::Acquire) }
    }
}

/// `type.__basicsize__` (`PyType_Type.tp_basicsize`): where CPython 3.11
/// places the metaclass's type data (docs/spec.md §3).
#[cfg(not(Py_3_12))]
pub(crate) fn type_type_basicsize() -> isize {
    // SAFETY: PyType_Type is a static type object, ready before any
    // extension runs; its basicsize never changes.
    unsafe { (*ptr::addr_of!(PyType_Type)).tp_basicsize }
}

/// Make `tp` final (clear `Py_TPFLAGS_BASETYPE`), as a spec without that
/// flag would have made it.
///
/// # Safety
/// `tp` must be a live heap type that nothing has subclassed yet, and the
/// GIL must be held (no other thread writes its flags).
#[cfg(not(Py_3_12))]
pub(crate) unsafe fn clear_basetype(tp: *mut PyTypeObject) {
    // SAFETY: the caller's contract: tp is live and ours to change.
    unsafe { (*tp).tp_flags &= !Py_TPFLAGS_BASETYPE }
}

/// `tp->tp_version_tag` at offset `off` (proven by the type cache; 0 reads
/// the object header, a value that never matches a cached tag): a relaxed
/// atomic load, as CPython writes it with atomic stores on free-threaded
/// builds.
///
/// # Safety
/// `tp` must be a live type and `off` 0 or an offset proven to lie inside
/// every type object (4-byte aligned).
#[inline(always)]
pub(crate) unsafe fn version_tag(tp: *mut PyTypeObject, off: isize) -> u32 {
    // SAFETY: the caller's contract: `tp + off` is inside the live type
    // object (offset 0: its header), aligned for a u32.
    unsafe { (*tp.cast::<u8>().offset(off).cast::<AtomicU32>()).load(Ordering::Relaxed) }
}

/// Where `tp_version_tag` may be, for the type cache to prove on the running
/// interpreter: the field's offset when the headers name it; under the
/// limited API, after 48 pointer-sized fields on GIL builds (CPython
/// 3.11-3.15), 16 bytes later on free-threaded builds (larger header).
pub(crate) fn version_tag_candidates() -> &'static [isize] {
    #[cfg(not(Py_LIMITED_API))]
    const CANDIDATES: &[isize] = &[core::mem::offset_of!(PyTypeObject, tp_version_tag) as isize];
    #[cfg(Py_LIMITED_API)]
    const CANDIDATES: &[isize] =
        &[48 * core::mem::size_of::<usize>() as isize, 48 * core::mem::size_of::<usize>() as isize + 16];
    CANDIDATES
}

/// `type`'s own implementation of a slot (`Py_tp_init`, `Py_tp_dealloc`, ...),
/// which the metaclass extends.
pub(crate) fn type_slot(slot: c_int) -> *mut c_void {
    // SAFETY: PyType_Type is a static, ready type; these slots are all set.
    unsafe { PyType_GetSlot(ptr::addr_of_mut!(PyType_Type), slot) }
}

/// An entry of the class's own namespace (not inherited), or None. GIL held.
///
/// # Safety
/// `tp` must be a live, ready type.
pub(crate) unsafe fn own_attribute(tp: *mut PyTypeObject, name: &CStr) -> Result<Option<*mut PyObject>, PyErrSet> {
    // SAFETY: GIL held; returns a new reference.
    unsafe {
        #[cfg(not(Py_LIMITED_API))]
        let (dict, owned) = ((*tp).tp_dict, false);
        #[cfg(Py_LIMITED_API)]
        let (dict, owned) = (PyObject_GetAttrString(tp.cast(), c"__dict__".as_ptr()), true);
        if dict.is_null() {
            return if owned { Err(PyErrSet) } else { Ok(None) };
        }
        let key = PyUnicode_FromString(name.as_ptr());
        let value = if key.is_null() { ptr::null_mut() } else { PyObject_GetItem(dict, key) };
        if !key.is_null() {
            Py_DECREF(key);
        }
        if owned {
            Py_DECREF(dict);
        }
        if value.is_null() {
            if PyErr_ExceptionMatches(PyExc_KeyError) != 0 {
                PyErr_Clear();
                return Ok(None);
            }
            return Err(PyErrSet);
        }
        Ok(Some(value))
    }
}

/// The own namespace of `tp` (a new reference: its dict, or under the
/// limited API its `__dict__` mapping proxy), NULL with an exception set on
/// failure. Works for static builtin types too (3.12+ keeps their dict per
/// interpreter: `PyType_GetDict`). Needs an attached thread state.
///
/// # Safety
/// `tp` must be a live, ready type; the calling thread has an attached
/// thread state.
pub(crate) unsafe fn own_dict(tp: *mut PyTypeObject) -> *mut PyObject {
    // SAFETY: the caller's contract (live type, attached thread state).
    unsafe {
        #[cfg(all(not(Py_LIMITED_API), Py_3_12))]
        {
            PyType_GetDict(tp)
        }
        #[cfg(all(not(Py_LIMITED_API), not(Py_3_12)))]
        {
            let dict = (*tp).tp_dict;
            if dict.is_null() {
                PyErr_SetString(PyExc_SystemError, c"type has no __dict__".as_ptr());
                return ptr::null_mut();
            }
            Py_NewRef(dict)
        }
        #[cfg(Py_LIMITED_API)]
        {
            PyObject_GetAttrString(tp.cast(), c"__dict__".as_ptr())
        }
    }
}

/// Is `tp` immutable (`Py_TPFLAGS_IMMUTABLETYPE`: static types and heap
/// types made so)? Then `type.__setattr__` refuses it and its own
/// namespace never changes. GIL-free.
///
/// # Safety
/// `tp` must be a live type.
pub(crate) unsafe fn is_immutable(tp: *mut PyTypeObject) -> bool {
    // SAFETY: PyType_GetFlags reads the flags of a live type.
    unsafe { PyType_GetFlags(tp) & Py_TPFLAGS_IMMUTABLETYPE != 0 }
}

/// The byte offset of `ob_type` in this interpreter's object header, as
/// measured on live objects, or 0 when it could not be proven.
///
/// Published as `Api::ob_type_offset` so that consumers compiled for the
/// stable ABI 3.14+ / abi3t (where `PyObject` is opaque and `Py_TYPE` is an
/// exported function) can read the type pointer inline. A candidate offset
/// is accepted only if, on every probe object (four type objects, a list, a
/// dict, a bytearray: objects of different types, each larger than the
/// biggest candidate plus a pointer, so every read stays inside the object),
/// the pointer stored there equals `Py_TYPE(o)`. The candidates are the
/// `ob_type` offsets of CPython's two object layouts: after a `Py_ssize_t`
/// refcount (default build), and after `ob_tid`, the 8 bytes of flags,
/// mutex, GC bits and local refcount, and `ob_ref_shared` (free-threaded).
///
/// # Safety
/// GIL held (an attached thread state); `meta` is a live type object.
pub(crate) unsafe fn measure_ob_type_offset(meta: *mut PyTypeObject) -> isize {
    const PTR: usize = core::mem::size_of::<*mut PyTypeObject>();
    let candidates = [
        core::mem::size_of::<isize>(),
        core::mem::size_of::<usize>() + 8 + core::mem::size_of::<isize>(),
    ];
    // SAFETY: GIL held; the new objects are released below.
    let fresh = unsafe { [PyList_New(0), PyDict_New(), PyByteArray_FromStringAndSize(ptr::null(), 0)] };
    let mut found = 0isize;
    if fresh.iter().all(|o| !o.is_null()) {
        let [list, dict, bytes] = fresh;
        let probes: [*mut PyObject; 7] = [
            meta.cast(),
            ptr::addr_of_mut!(PyType_Type).cast(),
            ptr::addr_of_mut!(PyBaseObject_Type).cast(),
            ptr::addr_of_mut!(PyLong_Type).cast(),
            list,
            dict,
            bytes,
        ];
        let holds = |off: usize| {
            off % PTR == 0
                && probes.iter().all(|&o| {
                    // SAFETY: every probe is a live object larger than each
                    // candidate offset plus a pointer (see above).
                    unsafe { type_at(o, off) == Py_TYPE(o) }
                })
        };
        found = candidates.into_iter().find(|&off| holds(off)).map_or(0, |off| off as isize);
    } else {
        // SAFETY: GIL held.
        unsafe { PyErr_Clear() };
    }
    for o in fresh.into_iter().filter(|o| !o.is_null()) {
        // SAFETY: GIL held; a new reference made above.
        unsafe { Py_DECREF(o) };
    }
    found
}

/// The pointer stored at byte `off` of `o`, read as `Py_TYPE` does on
/// free-threaded builds (a relaxed atomic load).
///
/// # Safety
/// `o` is a live object larger than `off` plus a pointer, and `off` is a
/// multiple of the pointer size.
unsafe fn type_at(o: *mut PyObject, off: usize) -> *mut PyTypeObject {
    // SAFETY: the caller's contract: inside the object and pointer-aligned.
    unsafe { (*o.cast::<u8>().add(off).cast::<AtomicPtr<PyTypeObject>>()).load(Ordering::Relaxed) }
}
