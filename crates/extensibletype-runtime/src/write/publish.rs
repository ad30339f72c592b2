//! Publishing a change: a type's new own slots, then the effective tables
//! of the type and of every subclass (found by a `__subclasses__()` walk),
//! all or nothing ([`registry::apply`]). Every writer ends here: a class
//! statement ([`init_class`]), `set_slots`, `ExtType_FromSpec`, and the
//! metaclass's `__setattr__` hook (`__bases__`, typed method names).

use core::ptr;

use pyo3_ffi::*;

use super::convert::{changes_from_mapping, Changes};
use super::registry::{self, Target};
use crate::cpython::layout;
use crate::pyutil::Owned;
use crate::PyErrSet;

/// Set up a new class: own slots from `__cslots__` (own namespace only),
/// then the effective table.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is a live,
/// ready type whose metaclass derives from ours.
pub(crate) unsafe fn init_class(tp: *mut PyTypeObject) -> Result<(), PyErrSet> {
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
pub(crate) unsafe fn publish(tp: *mut PyTypeObject, changes: &Changes, reset: bool) -> Result<(), PyErrSet> {
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
unsafe fn subclasses_of(tp: *mut PyTypeObject) -> Result<Vec<Owned>, PyErrSet> {
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
                return Err(PyErrSet::raise(PyExc_TypeError, "type.__subclasses__() did not return a list"));
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

