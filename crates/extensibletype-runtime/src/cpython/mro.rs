//! A type's MRO, read from `tp_mro` (or, under the limited API, rebuilt
//! from `__bases__`): part of [`super`], the one reader of type internals.

use pyo3_ffi::*;

/// The MRO of a ready type, as borrowed pointers (`tp` holds the tuple).
/// Needs the GIL.
///
/// # Safety
/// `tp` must be a live, ready type.
pub(crate) unsafe fn mro(tp: *mut PyTypeObject) -> Vec<*mut PyTypeObject> {
    // SAFETY: tp_mro of a ready type is a tuple of types (or NULL mid-creation).
    #[cfg(not(Py_LIMITED_API))]
    unsafe {
        let tuple = (*tp).tp_mro;
        if tuple.is_null() {
            return vec![tp];
        }
        (0..PyTuple_GET_SIZE(tuple)).map(|i| PyTuple_GET_ITEM(tuple, i).cast()).collect()
    }
    // SAFETY: GIL held; `__mro__` returns the type's own tuple, which keeps
    // its items alive after our reference is dropped.
    #[cfg(Py_LIMITED_API)]
    unsafe {
        let tuple = PyObject_GetAttrString(tp.cast(), c"__mro__".as_ptr());
        if tuple.is_null() {
            PyErr_Clear();
            return vec![tp];
        }
        let items = (0..PyTuple_Size(tuple)).map(|i| PyTuple_GetItem(tuple, i).cast()).collect();
        Py_DECREF(tuple);
        items
    }
}

/// The first `Some(f(t))` for `t` in `tp`'s MRO (from `tp` itself, or from
/// its first base with `skip_self`). GIL-free; calls no CPython function
/// that needs a thread state.
///
/// A type that is not ready (being created, or a static type CPython tore
/// down at exit: its MRO and bases may be freed) counts as its own MRO.
///
/// Under the limited API there is no GIL-free view of `tp_mro`, so the MRO
/// is rebuilt from `__bases__` (see `linearize`).
///
/// # Safety
/// `tp` must be a live type; a thread without an attached thread state must
/// be inside a [`crate::threads::Section`] (which keeps CPython's exit from
/// freeing static types' tuples under it).
pub(crate) unsafe fn find_in_mro<R>(
    tp: *mut PyTypeObject,
    skip_self: bool,
    mut f: impl FnMut(*mut PyTypeObject) -> Option<R>,
) -> Option<R> {
    // SAFETY: PyType_GetFlags reads the flags of a live type.
    if unsafe { PyType_GetFlags(tp) } & Py_TPFLAGS_READY == 0 {
        return if skip_self { None } else { f(tp) };
    }
    // SAFETY: the MRO tuple of a ready type is immutable while the type
    // lives, and holds its items; the pointer is read with a relaxed atomic
    // load (CPython replaces it on `__bases__` assignment).
    #[cfg(not(Py_LIMITED_API))]
    unsafe {
        let at = core::ptr::addr_of!((*tp).tp_mro).cast::<core::sync::atomic::AtomicPtr<PyObject>>();
        let tuple = (*at).load(core::sync::atomic::Ordering::Relaxed);
        if tuple.is_null() {
            return if skip_self { None } else { f(tp) };
        }
        (usize::from(skip_self) as isize..PyTuple_GET_SIZE(tuple)).find_map(|i| f(PyTuple_GET_ITEM(tuple, i).cast()))
    }
    // SAFETY: the bases tuple of a ready type holds its (live) bases.
    #[cfg(Py_LIMITED_API)]
    unsafe {
        let order = linearize(tp);
        order.into_iter().skip(usize::from(skip_self)).find_map(&mut f)
    }
}

/// The MRO rebuilt from `__bases__` without the GIL (the limited API cannot
/// read `tp_mro`): a left-to-right depth-first walk keeping each class's
/// *last* occurrence — C3's order for every consistent hierarchy without
/// conflicting local orders, diamonds included.
///
/// # Safety
/// `tp` must be a live, ready type.
#[cfg(Py_LIMITED_API)]
unsafe fn linearize(tp: *mut PyTypeObject) -> Vec<*mut PyTypeObject> {
    /// Depth-first: `tp`, then each base's walk, left to right.
    ///
    /// # Safety
    /// `tp` is a live, ready type.
    unsafe fn walk(tp: *mut PyTypeObject, out: &mut Vec<*mut PyTypeObject>) {
        out.push(tp);
        // SAFETY: PyType_GetSlot reads the bases tuple of a live type; the
        // tuple holds its items.
        unsafe {
            let bases: *mut PyObject = PyType_GetSlot(tp, Py_tp_bases).cast();
            if bases.is_null() {
                return;
            }
            for i in 0..PyTuple_Size(bases) {
                walk(PyTuple_GetItem(bases, i).cast(), out);
            }
        }
    }
    let mut dfs = Vec::new();
    // SAFETY: `tp` is a live, ready type (the caller's contract).
    unsafe { walk(tp, &mut dfs) };
    let mut order: Vec<*mut PyTypeObject> = Vec::with_capacity(dfs.len());
    for (i, &t) in dfs.iter().enumerate() {
        if !dfs[i + 1..].contains(&t) {
            order.push(t);
        }
    }
    order
}
