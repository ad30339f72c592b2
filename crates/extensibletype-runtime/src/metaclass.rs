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

use super::convert::{changes_from_mapping, Changes};
use super::pyutil::{keep_forever, Owned, PendingError};
use super::layout::{self, TypeData};
use super::registry::{self, Target};
use super::{guard, Error};

/// Create the metaclass; returns it (a new reference) and the table offset.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); called once per
/// process, by the copy that creates the runtime.
pub(crate) unsafe fn create() -> Result<(*mut PyTypeObject, isize), Error> {
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
    let data_size = core::mem::size_of::<TypeData>() as c_int;
    // SAFETY: GIL held; PyType_Type is a live static type.
    unsafe {
        let type_type = ptr::addr_of_mut!(PyType_Type);
        #[cfg(not(Py_3_12))]
        let (basicsize, offset) = {
            let offset = (layout::type_type_basicsize() + 15) & !15;
            (offset as c_int + data_size, offset)
        };
        #[cfg(Py_3_12)]
        let basicsize = -data_size;
        let spec: &'static mut PyType_Spec = keep_forever(Box::new(PyType_Spec {
            name: c"extensibletype.ExtensibleType".as_ptr(),
            basicsize,
            itemsize: 0,
            flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC) as _,
            slots: slots.as_mut_ptr(),
        }));
        let bases = Owned::new(PyTuple_Pack(1, type_type.cast::<PyObject>()))?;
        #[cfg(not(Py_3_12))]
        let meta = PyType_FromSpecWithBases(spec, bases.0);
        #[cfg(Py_3_12)]
        let meta = PyType_FromMetaclass(ptr::null_mut(), ptr::null_mut(), spec, bases.0);
        let meta = Owned::new(meta)?;
        #[cfg(Py_3_12)]
        let offset = measure_offset(meta.0.cast())?;
        Ok((meta.into_ptr().cast(), offset))
    }
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
        // SAFETY: called by CPython with the GIL; `type`'s setattro validates
        // name and value; cls is a live type whose metaclass derives from ours.
        unsafe {
            let type_setattro: setattrofunc = core::mem::transmute(layout::type_slot(Py_tp_setattro));
            let ready = !layout::metaclass().is_null() && PyUnicode_Check(name) != 0;
            if ready && PyUnicode_CompareWithASCIIString(name, c"__cslots__".as_ptr()) == 0 {
                // `__cslots__` is read once, by the class statement; a later
                // assignment would change nothing a lookup sees.
                PyErr_SetString(
                    PyExc_AttributeError,
                    c"__cslots__ is read only when the class is created; change slots later with \
                      extensibletype.set_slots(cls, {key: value, ...}) (None removes a slot)"
                        .as_ptr(),
                );
                return -1;
            }
            let is_bases =
                ready && !value.is_null() && PyUnicode_CompareWithASCIIString(name, c"__bases__".as_ptr()) == 0;
            let typed = ready
                && !is_bases
                && super::mask::any_typed()
                && super::pyutil::utf8(name).is_some_and(super::mask::is_method_name);
            if !is_bases && !typed {
                return type_setattro(cls, name, value);
            }
            // The value to put back if republishing fails (NULL: absent).
            let old = if is_bases {
                let Ok(old) = Owned::new(PyObject_GetAttr(cls, name)) else { return -1 };
                Some(old)
            } else {
                match own_value(cls.cast(), name) {
                    Ok(old) => old,
                    Err(()) => return -1,
                }
            };
            if type_setattro(cls, name, value) < 0 {
                return -1;
            }
            if typed {
                // Masks gathered before this point are stale.
                super::mask::note_dict_change();
            }
            match publish(cls.cast(), &Changes::default(), false) {
                Ok(()) => 0,
                Err(e) => {
                    // Put the old value back (the published tables are
                    // still those of the old value), then raise the
                    // rebuild's error.
                    e.raise(());
                    let first = PendingError::take();
                    let back = old.as_ref().map_or(ptr::null_mut(), |o| o.0);
                    if type_setattro(cls, name, back) < 0 {
                        PyErr_Clear(); // restoring failed too: report the first error
                    }
                    if typed {
                        super::mask::note_dict_change();
                    }
                    if publish(cls.cast(), &Changes::default(), false).is_err() {
                        PyErr_Clear();
                    }
                    first.restore();
                    -1
                }
            }
        }
    })
}

/// `cls.__dict__[name]` (a new reference), None when absent, Err with an
/// exception set.
///
/// # Safety
/// GIL held; `cls` is a live, ready type and `name` a live str.
unsafe fn own_value(cls: *mut PyTypeObject, name: *mut PyObject) -> Result<Option<Owned>, ()> {
    // SAFETY: the caller's contract.
    unsafe {
        let dict = Owned::new(layout::own_dict(cls))?;
        let value = PyObject_GetItem(dict.0, name);
        if value.is_null() {
            if PyErr_ExceptionMatches(PyExc_KeyError) != 0 {
                PyErr_Clear();
                return Ok(None);
            }
            return Err(());
        }
        Ok(Some(Owned(value)))
    }
}

/// PEP 697: where `PyObject_GetTypeData` puts our data in a created class.
/// Runs before the runtime is ready, so the probe's `tp_init` skips set-up.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `meta` is the
/// live, newly created metaclass.
#[cfg(Py_3_12)]
unsafe fn measure_offset(meta: *mut PyTypeObject) -> Result<isize, Error> {
    // SAFETY: GIL held; meta is a live metaclass.
    unsafe {
        let probe = Owned::new(PyObject_CallFunction(
            meta.cast(),
            c"s()N".as_ptr(),
            c"_ExtensibleTypeProbe".as_ptr(),
            PyDict_New(),
        ))?;
        let data = PyObject_GetTypeData(probe.0, meta);
        if data.is_null() {
            return Err(Error::Python);
        }
        let offset = data.cast::<u8>().offset_from(probe.0.cast::<u8>());
        // The probe dies with `probe`; its dealloc must see the real offset.
        layout::set_fast_path(ptr::null_mut(), offset, ptr::null());
        Ok(offset)
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
                Err(e) => e.raise(-1),
            }
        }
    })
}

/// Set up a new class: own slots from `__cslots__` (own namespace only),
/// then the effective table.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is a live,
/// ready type whose metaclass derives from ours.
pub(crate) unsafe fn init_class(tp: *mut PyTypeObject) -> Result<(), Error> {
    // SAFETY: tp is a live, ready heap type; the GIL is held.
    unsafe {
        let cslots = layout::own_attribute(tp, c"__cslots__")?.map(Owned);
        let changes = match &cslots {
            None => Changes::default(),
            Some(mapping) => changes_from_mapping(mapping.0, "__cslots__")?,
        };
        if layout::state_of(tp).is_none() && !layout::may_have_subclasses(tp) {
            // First set-up of a class with no subclasses (the usual class
            // statement): skip the __subclasses__() walk.
            return registry::apply(&Target::new(tp), &[], &changes.list, true);
        }
        publish(tp, &changes, true)
    }
}

/// Apply changes to `tp` (its own slots: merged, or replaced with `reset`)
/// and republish it and every subclass. GIL held.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is a live,
/// ready type.
pub(crate) unsafe fn publish(tp: *mut PyTypeObject, changes: &Changes, reset: bool) -> Result<(), Error> {
    // SAFETY: GIL held; tp is live.
    unsafe {
        let subclasses = subclasses_of(tp)?;
        let targets: Vec<Target> = subclasses.iter().map(|s| Target::new(s.0.cast())).collect();
        registry::apply(&Target::new(tp), &targets, &changes.list, reset)?;
        // A subclass created after the listing above may have built its
        // table from tp's old slots before apply() took the mutex (a real
        // race on free-threaded builds): rebuild those from the current
        // slots. Subclasses created after this second listing initialise
        // after apply() committed, so they already see the new slots.
        // The change is published: this repair pass must not report
        // failure. If it cannot run (MemoryError), late subclasses keep the
        // tables they built.
        let seen: crate::idhash::IdSet<usize> = subclasses.iter().map(|s| s.0 as usize).collect();
        let Ok(again) = subclasses_of(tp) else {
            PyErr_Clear();
            return Ok(());
        };
        let late: Vec<Target> = again
            .iter()
            .filter(|s| !seen.contains(&(s.0 as usize)))
            .map(|s| Target::new(s.0.cast()))
            .collect();
        if !late.is_empty() && registry::apply(&Target::new(tp), &late, &[], false).is_err() {
            // Only a late subclass's own table can fail to build (too many
            // entries): nothing of this pass was published.
        }
        Ok(())
    }
}

/// All transitive subclasses of `tp` (strong references), via
/// `type.__subclasses__(t)` itself: a class or metaclass may shadow the
/// attribute, so it is never looked up on `t`, and only types are kept.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is a live
/// type.
unsafe fn subclasses_of(tp: *mut PyTypeObject) -> Result<Vec<Owned>, Error> {
    let mut out: Vec<Owned> = Vec::new();
    let mut stack = vec![tp.cast::<PyObject>()];
    let mut seen = crate::idhash::IdSet::default();
    // `type.__subclasses__`, the method descriptor, looked up once and
    // called with one argument per class (no format string to parse, no
    // method lookup per class; the limited API has this call in every version).
    // SAFETY: GIL held; PyType_Type is a live static type.
    let method = unsafe {
        Owned::new(PyObject_GetAttrString(ptr::addr_of_mut!(PyType_Type).cast(), c"__subclasses__".as_ptr()))?
    };
    while let Some(t) = stack.pop() {
        // SAFETY: GIL held; t is held by `out` or is `tp`; `method` is live.
        unsafe {
            let list = Owned::new(PyObject_CallFunctionObjArgs(method.0, t, ptr::null_mut::<PyObject>()))?;
            if PyList_Check(list.0) == 0 {
                return Err(Error::Type("type.__subclasses__() did not return a list".into()));
            }
            for i in 0..PyList_Size(list.0) {
                let sub = PyList_GetItem(list.0, i);
                if PyType_Check(sub) != 0 && seen.insert(sub as usize) {
                    Py_INCREF(sub);
                    out.push(Owned(sub));
                    stack.push(sub);
                }
            }
        }
    }
    Ok(out)
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

// The lookup's slow path (`ExtType_API.find_slow`) is the read side's:
// `crate::lookup::slow`.
pub(crate) use crate::lookup::slow::find_slow;
