//! Several interpreters in one process (docs/spec.md §7 and §11).
//!
//! Since CPython 3.12 a *mutable* heap type takes its `tp_version_tag` from
//! a counter of its interpreter, and every fresh interpreter starts that
//! counter at the same value; static and immutable types take theirs from
//! one process-wide counter (`assign_version_tag` in
//! `Objects/typeobject.c`, 3.12 – 3.15). The type cache is process-wide and
//! keyed by (type address, tag), so a dead class's entry could answer for a
//! class of another interpreter at the same address with the same tag. Once
//! a second interpreter exists, the cache therefore keeps only types whose
//! tags are process-wide ([`tag_is_process_wide`]); this module says when
//! that moment has come ([`another_exists`]).

use pyo3_ffi::*;

// Not in the limited API's headers, but exported by every CPython since 3.x
// (and documented: "Advanced Debugger Support"). Windows' python3.dll (the
// stable ABI's import library) does not export them: there the abi3 build
// assumes another interpreter may exist.
#[cfg(all(Py_LIMITED_API, not(windows)))]
extern "C" {
    fn PyInterpreterState_Head() -> *mut PyInterpreterState;
    fn PyInterpreterState_Main() -> *mut PyInterpreterState;
}

/// Does (or did, if it returns true once) an interpreter other than the main
/// one exist? Needs no GIL and no thread state: it compares the head of
/// CPython's interpreter list with the main interpreter (the first created,
/// so the list's tail); any subinterpreter sits in front of it. The pointers
/// are only compared, never followed.
pub(crate) fn another_exists() -> bool {
    #[cfg(not(all(Py_LIMITED_API, windows)))]
    // SAFETY: both functions only read a field of CPython's runtime state,
    // callable from any thread at any time (NULL after finalisation).
    unsafe {
        PyInterpreterState_Head() != PyInterpreterState_Main()
    }
    #[cfg(all(Py_LIMITED_API, windows))]
    true
}

/// Is `tp`'s version tag taken from CPython's process-wide counter (never
/// reused, so an entry keyed by it can never answer for another type)? True
/// for static and immutable types on 3.12+ and for every type before 3.12
/// (one counter then). Read the tag again *after* this answer: a type made
/// immutable (`PyType_Freeze`) gets a new tag.
///
/// # Safety
/// `tp` must be a live type.
pub(crate) unsafe fn tag_is_process_wide(tp: *mut PyTypeObject) -> bool {
    #[cfg(Py_3_12)]
    // SAFETY: `tp` is live; PyType_GetFlags only reads `tp_flags` (no GIL).
    unsafe {
        (PyType_GetFlags(tp) & Py_TPFLAGS_IMMUTABLETYPE) != 0
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = tp;
        true
    }
}
