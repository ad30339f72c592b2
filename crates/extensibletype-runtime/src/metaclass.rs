//! The `ExtensibleType` metaclass: what happens when a class statement runs,
//! and when a class dies.
//!
//! `class C(Base, metaclass=ExtensibleType): __cslots__ = {...}` runs
//! `type.__new__` (unchanged: no `tp_new` override, docs/spec.md §3), then our
//! `tp_init`: `type.__init__`, then [`init_class`] reads `__cslots__` from the
//! class's own namespace and publishes the effective table (own slots, then
//! each base in MRO order). A type made by `type.__new__` alone has zeroed
//! type data and inherits from its bases until a writer initialises it.
//!
//! Layout of the type data (docs/spec.md §3):
//! - CPython 3.11: `tp_basicsize` = `PyType_Type.tp_basicsize` rounded up to
//!   16, plus `size_of::<TypeData>()`; the offset is that rounded size.
//! - CPython 3.12+: PEP 697 (`basicsize = -size_of::<TypeData>()`); the
//!   offset is measured once with `PyObject_GetTypeData` on a created class.

use core::ffi::{c_int, c_void};
use core::ptr;

use pyo3_ffi::*;

use crate::cpython::{compat, layout};
use crate::pyutil::{keep_forever, Owned, PendingError};
use crate::write::convert::Changes;
use crate::write::{init_class, publish};
use crate::{guard, PyErrSet};

/// Create the metaclass; returns it (a new reference) and the table offset.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); called once per
/// process, by the copy that creates the runtime.
pub(crate) unsafe fn create() -> Result<(*mut PyTypeObject, isize), PyErrSet> {
    let slots: &'static mut [PyType_Slot] = keep_forever(Box::new([
        PyType_Slot { slot: Py_tp_init, pfunc: meta_init as *mut c_void },
        PyType_Slot { slot: Py_tp_dealloc, pfunc: meta_dealloc as *mut c_void },
        PyType_Slot { slot: Py_tp_traverse, pfunc: meta_traverse as *mut c_void },
        PyType_Slot { slot: Py_tp_clear, pfunc: meta_clear as *mut c_void },
        PyType_Slot { slot: Py_tp_setattro, pfunc: meta_setattro as *mut c_void },
        PyType_Slot {
            slot: Py_tp_doc,
            pfunc: c"Metaclass whose classes carry a table of C implementations keyed by name.\n\n\
                     A class body may define __cslots__ = {key: value}; see extensibletype.set_slots."
                .as_ptr() as *mut c_void,
        },
        PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
    ]));
    // SAFETY: GIL held (the caller's contract); `slots` lives for the process.
    unsafe { compat::new_metaclass(slots) }
}

/// `ExtensibleType.__setattr__(cls, name, value)` (and `__delattr__`):
/// `type`'s own, then, when `__bases__` was assigned, or when `name` is the
/// method name of a known typed key (Python overrides win, `crate::mask`),
/// the effective tables of `cls` and of every subclass are rebuilt before
/// the assignment returns (docs/spec.md §4, §9). Costs one
/// `__subclasses__()` walk and one table build per affected class then;
/// any other attribute costs a pointer compare, a string compare and one
/// hash-set probe (only once typed keys exist) on top of `type.__setattr__`.
///
/// If the tables cannot be rebuilt (more than 65,536 merged entries, no
/// memory), the old value is put back and the error raised: the
/// assignment then changes nothing.
///
/// No route around this hook changes `cls`'s namespace or `__bases__`:
/// `type.__setattr__(cls, ..)` and `object.__setattr__(cls, ..)` are refused
/// by CPython itself ("can't apply this __setattr__": it rejects calls that
/// jump over a C-level `tp_setattro` override), and a Python
/// sub-metaclass's `__setattr__` can only reach `type`'s through ours.
///
/// # Safety
/// Called by CPython as `tp_setattro` of a class whose metaclass derives from
/// ours, with the GIL held; `cls` and `name` are live, `value` is NULL (delete)
/// or live.
unsafe extern "C" fn meta_setattro(cls: *mut PyObject, name: *mut PyObject, value: *mut PyObject) -> c_int {
    guard(-1, || {
        // SAFETY: `type`'s own setattro, which we extend: it has this type.
        let type_setattro: setattrofunc = unsafe { core::mem::transmute(layout::type_slot(Py_tp_setattro)) };
        // SAFETY: called by CPython with the GIL; `name` is live.
        let what = unsafe { assignment_of(name, value) };
        match what {
            Assignment::Cslots => {
                // `__cslots__` is read once, by the class statement; a later
                // assignment would change nothing a lookup sees.
                // SAFETY: GIL held.
                unsafe {
                    PyErr_SetString(
                        PyExc_AttributeError,
                        c"__cslots__ is read only when the class is created; change slots later with \
                          extensibletype.set_slots(cls, {key: value, ...}) (None removes a slot)"
                            .as_ptr(),
                    )
                };
                -1
            }
            // SAFETY: CPython's own arguments, with the GIL; `type`'s
            // setattro validates name and value.
            Assignment::Other => unsafe { type_setattro(cls, name, value) },
            // SAFETY: as above; cls is a live type whose metaclass derives from ours.
            Assignment::Bases | Assignment::TypedName => unsafe {
                republishing(type_setattro, cls, name, value, what == Assignment::TypedName)
            },
        }
    })
}

/// What an assignment to a class attribute means to the metaclass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Assignment {
    /// `__cslots__`: refused.
    Cslots,
    /// `__bases__` (set, not deleted): every table along the new MRO changes.
    Bases,
    /// The method name of a known typed key: a Python override may mask it.
    TypedName,
    /// Anything else: `type`'s own.
    Other,
}

/// Classify `cls.name = value` (`value` NULL: a delete).
///
/// # Safety
/// GIL held; `name` is a live object, `value` NULL or live.
unsafe fn assignment_of(name: *mut PyObject, value: *mut PyObject) -> Assignment {
    // SAFETY: the caller's contract; the compares only read `name`.
    unsafe {
        if layout::metaclass().is_null() || PyUnicode_Check(name) == 0 {
            return Assignment::Other;
        }
        if PyUnicode_CompareWithASCIIString(name, c"__cslots__".as_ptr()) == 0 {
            return Assignment::Cslots;
        }
        if !value.is_null() && PyUnicode_CompareWithASCIIString(name, c"__bases__".as_ptr()) == 0 {
            return Assignment::Bases;
        }
        if crate::mask::any_typed() && crate::pyutil::utf8(name).is_some_and(crate::mask::is_method_name) {
            return Assignment::TypedName;
        }
    }
    Assignment::Other
}

/// `type_setattro(cls, name, value)`, then republish `cls` and its
/// subclasses; if that fails, put the old value back and raise the
/// rebuild's error (the assignment then changes nothing).
///
/// # Safety
/// GIL held; CPython's `tp_setattro` arguments; `cls` is a live type whose
/// metaclass derives from ours.
unsafe fn republishing(
    type_setattro: setattrofunc,
    cls: *mut PyObject,
    name: *mut PyObject,
    value: *mut PyObject,
    typed: bool,
) -> c_int {
    // SAFETY: the caller's contract (GIL held, live arguments).
    unsafe {
        // The value to put back if republishing fails (NULL: absent).
        let old = if typed {
            match own_value(cls.cast(), name) {
                Ok(old) => old,
                Err(PyErrSet) => return -1,
            }
        } else {
            let Ok(old) = Owned::new(PyObject_GetAttr(cls, name)) else { return -1 };
            Some(old)
        };
        if type_setattro(cls, name, value) < 0 {
            return -1;
        }
        if typed {
            // Masks gathered before this point are stale.
            crate::mask::note_dict_change();
        }
        if publish(cls.cast(), &Changes::default(), false).is_ok() {
            return 0;
        }
        // The published tables are still those of the old value.
        let first = PendingError::take();
        let back = old.as_ref().map_or(ptr::null_mut(), |o| o.0);
        if type_setattro(cls, name, back) < 0 {
            PyErr_Clear(); // restoring failed too: report the first error
        }
        if typed {
            crate::mask::note_dict_change();
        }
        if publish(cls.cast(), &Changes::default(), false).is_err() {
            PyErr_Clear();
        }
        first.restore();
        -1
    }
}

/// `cls.__dict__[name]` (a new reference), None when absent, Err with an
/// exception set.
///
/// # Safety
/// GIL held; `cls` is a live, ready type and `name` a live str.
unsafe fn own_value(cls: *mut PyTypeObject, name: *mut PyObject) -> Result<Option<Owned>, PyErrSet> {
    // SAFETY: the caller's contract.
    unsafe {
        let dict = Owned::new(layout::own_dict(cls))?;
        let value = PyObject_GetItem(dict.0, name);
        if value.is_null() {
            if PyErr_ExceptionMatches(PyExc_KeyError) != 0 {
                PyErr_Clear();
                return Ok(None);
            }
            return Err(PyErrSet);
        }
        Ok(Some(Owned(value)))
    }
}

/// `ExtensibleType.__init__(cls, name, bases, namespace, **kwds)`.
///
/// # Safety
/// Called by CPython as `tp_init` of a new class whose metaclass derives from
/// ours, with the GIL held; `cls` and `args` are live, `kwds` is NULL or live.
unsafe extern "C" fn meta_init(cls: *mut PyObject, args: *mut PyObject, kwds: *mut PyObject) -> c_int {
    guard(-1, || {
        // SAFETY: called by CPython with the GIL; type.__init__ validates args.
        unsafe {
            let type_init: initproc = core::mem::transmute(layout::type_slot(Py_tp_init));
            if type_init(cls, args, kwds) < 0 {
                return -1;
            }
            if layout::metaclass().is_null() {
                return 0; // the layout probe, before the runtime is ready
            }
            match init_class(cls.cast()) {
                Ok(()) => 0,
                Err(PyErrSet) => -1,
            }
        }
    })
}

/// Free the type's tables and release the owners of its slots.
///
/// # Safety
/// Called by CPython as `tp_dealloc` of a class whose metaclass derives from
/// ours and whose refcount reached zero: no other reference (and so no reader)
/// exists.
unsafe extern "C" fn meta_dealloc(cls: *mut PyObject) {
    // SAFETY: called by CPython on a dead heap type whose metaclass derives
    // from ours; no other reference exists, so no reader can use its tables.
    unsafe {
        let meta = Py_TYPE(cls);
        PyObject_GC_UnTrack(cls.cast());
        release_state(cls.cast());
        PyObject_GC_Track(cls.cast());
        let type_dealloc: destructor = core::mem::transmute(layout::type_slot(Py_tp_dealloc));
        type_dealloc(cls);
        // Heap-type instances own a reference to their (heap) type.
        Py_DECREF(meta.cast());
    }
}

/// Visit the metaclass, the owners of the class's slots, then `type`'s own references.
///
/// # Safety
/// Called by the cycle collector as `tp_traverse` (GIL held or the world
/// stopped); `cls` is a live class whose metaclass derives from ours.
unsafe extern "C" fn meta_traverse(cls: *mut PyObject, visit: visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: called by the collector with the world stopped (or the GIL).
    unsafe {
        let rc = visit(Py_TYPE(cls).cast(), arg);
        if rc != 0 {
            return rc;
        }
        if let Some(state) = layout::state_of(cls.cast()) {
            let rc = (*state).traverse(visit, arg);
            if rc != 0 {
                return rc;
            }
        }
        let type_traverse: traverseproc = core::mem::transmute(layout::type_slot(Py_tp_traverse));
        type_traverse(cls, visit, arg)
    }
}

/// Break the class's reference cycles: its slot owners first, then `type`'s.
///
/// # Safety
/// Called by the cycle collector as `tp_clear` of unreachable garbage, with the
/// GIL held; `cls` is a class whose metaclass derives from ours.
unsafe extern "C" fn meta_clear(cls: *mut PyObject) -> c_int {
    // SAFETY: the class is unreachable garbage; unpublishing its table first
    // means a finaliser that still looks it up sees a miss, not freed memory.
    unsafe {
        release_state(cls.cast());
        let type_clear: inquiry = core::mem::transmute(layout::type_slot(Py_tp_clear));
        type_clear(cls)
    }
}

/// Unpublish the table, free all tables, DECREF the owners.
///
/// # Safety
/// `tp` is a type whose metaclass derives from ours, and no other thread
/// uses it (it is being deallocated or cleared as garbage); the GIL is held.
unsafe fn release_state(tp: *mut PyTypeObject) {
    // SAFETY: forwarded from dealloc/clear; take_state only on extensible types.
    unsafe {
        if layout::metaclass().is_null() && layout::offset() == 0 {
            return; // nothing was ever set up
        }
        if let Some(state) = layout::take_state(tp) {
            // The type cache may hold this type's tables (or its own-slot
            // table, for a subclass): forget them before they are freed.
            super::cache::invalidate_all();
            for owner in state.into_owners() {
                Py_DECREF(owner);
            }
        }
    }
}
