//! Where a type keeps its table (SPEC §4): the type data that the metaclass
//! adds to every type object, at one offset from the start of the object.
//!
//! The only module that reads type-object fields directly (`tp_mro`,
//! `tp_base`); everything else goes through these helpers.

use core::ffi::c_void;
use core::ptr;
use std::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};

use pyo3_ffi::*;

use super::registry::{is_registered_metaclass, TypeState};
use crate::table::RawTable;

/// The data `ExtensibleType` adds to each type object (`ExtType_TypeData` in
/// the header). `table` is what consumers load; `state` is the runtime's.
#[repr(C)]
pub struct TypeData {
    /// The current effective table, NULL when empty or never initialised.
    pub table: AtomicPtr<RawTable>,
    /// The runtime's state for this type; NULL until the type is initialised
    /// (a type made by `type.__new__` without `__init__` inherits from bases).
    pub state: AtomicPtr<c_void>,
}

static METACLASS: AtomicPtr<PyTypeObject> = AtomicPtr::new(ptr::null_mut());
static OFFSET: AtomicIsize = AtomicIsize::new(0);

/// Record the process's metaclass and table offset (from creation or from
/// another copy's API struct).
pub(crate) fn set_metaclass(meta: *mut PyTypeObject, offset: isize) {
    OFFSET.store(offset, Ordering::Relaxed);
    METACLASS.store(meta, Ordering::Release);
}

/// The `ExtensibleType` metaclass (NULL before initialisation).
#[inline]
pub(crate) fn metaclass() -> *mut PyTypeObject {
    METACLASS.load(Ordering::Acquire)
}

/// Offset of [`TypeData`] from the start of every extensible type object.
#[inline]
pub(crate) fn offset() -> isize {
    OFFSET.load(Ordering::Relaxed)
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

/// Is `tp`'s metaclass ExtensibleType or a sub-metaclass a writer has seen?
/// GIL-free.
///
/// # Safety
/// `tp` must be a live type.
#[inline]
pub(crate) unsafe fn is_extensible(tp: *mut PyTypeObject) -> bool {
    // SAFETY: a live object has a live type.
    let meta = unsafe { Py_TYPE(tp.cast()) };
    meta == metaclass() || is_registered_metaclass(meta)
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

/// The state of an extensible type, created (empty) if needed.
///
/// # Safety
/// `tp` must be a live extensible type and the registry mutex held.
pub(crate) unsafe fn state_or_init(tp: *mut PyTypeObject) -> &'static mut TypeState {
    // SAFETY: the caller holds the mutex, so no other writer races us; the
    // state lives until the type's dealloc takes it.
    unsafe {
        let slot = &(*data(tp)).state;
        let mut state = slot.load(Ordering::Acquire).cast::<TypeState>();
        if state.is_null() {
            state = Box::into_raw(Box::<TypeState>::default());
            slot.store(state.cast(), Ordering::Release);
        }
        &mut *state
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
        d.table.store(ptr::null_mut(), Ordering::Release);
        let state = d.state.swap(ptr::null_mut(), Ordering::AcqRel);
        (!state.is_null()).then(|| Box::from_raw(state.cast::<TypeState>()))
    }
}

impl TypeData {
    /// Publish `table` as `tp`'s current table (release store).
    ///
    /// # Safety
    /// `tp` must be a live extensible type; `table` must stay allocated until
    /// the type is deallocated.
    pub(crate) unsafe fn publish(tp: *mut PyTypeObject, table: *const RawTable) {
        // SAFETY: forwarded.
        unsafe { (*data(tp)).table.store(table.cast_mut(), Ordering::Release) }
    }

    /// The current table of an extensible type (acquire load).
    ///
    /// # Safety
    /// `tp` must be a live extensible type.
    #[inline]
    pub(crate) unsafe fn load(tp: *mut PyTypeObject) -> *const RawTable {
        // SAFETY: forwarded.
        unsafe { (*data(tp)).table.load(Ordering::Acquire) }
    }
}

/// The MRO of a ready type, as borrowed pointers (`tp` holds the tuple).
///
/// # Safety
/// `tp` must be a live, ready type.
pub(crate) unsafe fn mro(tp: *mut PyTypeObject) -> Vec<*mut PyTypeObject> {
    // SAFETY: tp_mro of a ready type is a tuple of types (or NULL mid-creation).
    unsafe {
        let tuple = (*tp).tp_mro;
        if tuple.is_null() {
            return vec![tp];
        }
        (0..PyTuple_GET_SIZE(tuple)).map(|i| PyTuple_GET_ITEM(tuple, i).cast()).collect()
    }
}

/// `tp->tp_base` (the solid base), NULL for `object`.
///
/// # Safety
/// `tp` must be a live type.
#[inline]
pub(crate) unsafe fn base_of(tp: *mut PyTypeObject) -> *mut PyTypeObject {
    // SAFETY: forwarded.
    unsafe { (*tp).tp_base }
}
