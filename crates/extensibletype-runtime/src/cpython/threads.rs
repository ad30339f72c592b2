//! Who may call into CPython from the GIL-free slow path, and when the slow
//! path stops reading type internals at interpreter exit (docs/spec.md §6).
//!
//! Lookups need no thread state: a C pthread that CPython never saw may call
//! `ExtType_Find`. The slow path ([`crate::lookup::slow::find_slow`]) calls into
//! CPython only to give a type a version tag, and only when [`attached`]
//! says the *calling* thread holds an attached thread state, decided from
//! that thread's own state on every version:
//!
//! - CPython 3.11: `_PyThreadState_UncheckedGet()` is the thread state that
//!   holds the GIL (a process-wide variable), not the caller's; the caller's
//!   own is `PyGILState_GetThisThreadState()` (thread-specific storage; NULL
//!   in a thread never registered). The caller holds the GIL iff both are the
//!   same non-NULL thread state (only the thread a thread state belongs to
//!   makes it the holder).
//! - CPython 3.12+: `PyThreadState_GetUnchecked()` (`_PyThreadState_UncheckedGet`
//!   on 3.12) reads a thread-local that CPython clears when the thread
//!   detaches: exact.
//! - The limited API (abi3 wheels) names neither, and `PyGILState_Check`
//!   answers 1 for every thread once a subinterpreter exists. [`init`]
//!   resolves the exact function by name in the running interpreter
//!   (`dlsym`, 3.12+ only); where that fails, [`attached`] answers "no"
//!   (the slow path then assigns no tag: slower, never wrong).
//!
//! Shutdown: at exit CPython frees the MRO and bases tuples of its static
//! types (and un-readies them) while pthreads may still be looking up. A
//! thread without an attached thread state runs the slow path inside a
//! [`Section`]: a counter of threads inside it, and a gate that closes when
//! the main interpreter runs its `atexit` callbacks (our callback closes it,
//! then waits for the sections inside to finish) or once the runtime is
//! finalizing (`Py_IsFinalizing`, for a runtime created in a
//! subinterpreter, whose callback would run too early). Behind a closed gate
//! such a lookup answers NULL unless a fast path (an extensible type's own
//! table, the type cache) answered first. Threads with an attached thread
//! state are serialised with finalisation by CPython and are not counted.

#[cfg(Py_LIMITED_API)]
use core::ffi::{c_char, c_void};
use core::ffi::c_int;
use core::ptr;
#[cfg(Py_LIMITED_API)]
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3_ffi::*;

#[cfg(all(not(Py_3_13), not(Py_LIMITED_API)))]
extern "C" {
    fn _Py_IsFinalizing() -> c_int;
}

#[cfg(all(Py_3_13, not(Py_LIMITED_API)))]
extern "C" {
    #[link_name = "Py_IsFinalizing"]
    fn py_is_finalizing() -> c_int;
}

#[cfg(all(Py_LIMITED_API, unix))]
extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `RTLD_DEFAULT`: search the global scope (the interpreter and what it
/// loaded with it).
#[cfg(all(Py_LIMITED_API, unix))]
const RTLD_DEFAULT: *mut c_void = if cfg!(any(target_os = "macos", target_os = "ios")) {
    -2isize as *mut c_void
} else {
    ptr::null_mut()
};

/// The gate interpreter exit closes on GIL-free slow paths, and the
/// interpreter functions it needs (the owner's: `crate::owner::Owner::exit`).
pub(crate) struct ExitGate {
    /// Under the limited API: the interpreter's exact "attached thread state
    /// of this thread" function (`PyThreadState *(void)`), or NULL.
    #[cfg(Py_LIMITED_API)]
    this_thread: AtomicPtr<c_void>,
    /// Under the limited API: the interpreter's `Py_IsFinalizing`, or NULL.
    #[cfg(Py_LIMITED_API)]
    finalizing: AtomicPtr<c_void>,
    /// Threads without an attached thread state inside the slow path.
    active: AtomicUsize,
    /// Set at interpreter exit: no new unattached slow path starts.
    closed: AtomicBool,
}

impl ExitGate {
    /// Open, nothing resolved.
    pub(crate) const fn new() -> ExitGate {
        ExitGate {
            #[cfg(Py_LIMITED_API)]
            this_thread: AtomicPtr::new(ptr::null_mut()),
            #[cfg(Py_LIMITED_API)]
            finalizing: AtomicPtr::new(ptr::null_mut()),
            active: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }
}

/// The owner's gate.
#[inline(always)]
fn gate() -> &'static ExitGate {
    &crate::owner::OWNER.exit
}

/// Does the calling thread have an attached thread state (hold the GIL, on
/// free-threaded builds: be attached)? Exact (from this thread's own state)
/// or, under the limited API when the interpreter's function could not be
/// found, `false`. Callable from any thread, with or without a thread
/// state, at any time (also during finalisation).
#[inline]
pub(crate) fn attached() -> bool {
    // SAFETY: each function called here reads a thread-local or a
    // process-wide pointer and may be called from any thread at any time.
    unsafe {
        #[cfg(all(not(Py_LIMITED_API), not(Py_3_12)))]
        {
            let mine = PyGILState_GetThisThreadState();
            !mine.is_null() && mine == pyo3_ffi::compat::PyThreadState_GetUnchecked()
        }
        #[cfg(all(not(Py_LIMITED_API), Py_3_12))]
        {
            !pyo3_ffi::compat::PyThreadState_GetUnchecked().is_null()
        }
        #[cfg(Py_LIMITED_API)]
        {
            let f = gate().this_thread.load(Ordering::Acquire);
            if f.is_null() {
                return false;
            }
            let f = core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *mut c_void>(f);
            !f().is_null()
        }
    }
}

/// Is the runtime finalizing (`Py_IsFinalizing`)? `false` when unknown.
fn finalizing() -> bool {
    // SAFETY: Py_IsFinalizing / _Py_IsFinalizing read one process-wide
    // atomic and may be called from any thread.
    unsafe {
        #[cfg(all(not(Py_3_13), not(Py_LIMITED_API)))]
        {
            _Py_IsFinalizing() != 0
        }
        #[cfg(all(Py_3_13, not(Py_LIMITED_API)))]
        {
            py_is_finalizing() != 0
        }
        #[cfg(Py_LIMITED_API)]
        {
            let f = gate().finalizing.load(Ordering::Acquire);
            if f.is_null() {
                return false;
            }
            let f = core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(f);
            f() != 0
        }
    }
}

/// A slow-path lookup in progress: for a thread without an attached thread
/// state, counted until dropped (interpreter exit waits for it).
pub(crate) struct Section {
    counted: bool,
}

impl Section {
    /// Enter the slow path, or `None` when a thread without an attached
    /// thread state may no longer read type internals (interpreter exit:
    /// the lookup answers NULL).
    #[inline]
    pub(crate) fn enter() -> Option<Section> {
        if attached() {
            return Some(Section { counted: false });
        }
        gate().active.fetch_add(1, Ordering::SeqCst);
        if gate().closed.load(Ordering::SeqCst) || finalizing() {
            gate().active.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(Section { counted: true })
    }
}

impl Drop for Section {
    #[inline]
    fn drop(&mut self) {
        if self.counted {
            gate().active.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Close the gate and wait until no unattached slow path is running. Runs
/// in the main interpreter's `atexit` callbacks (with an attached thread
/// state), before CPython tears its types down.
fn close() {
    gate().closed.store(true, Ordering::SeqCst);
    while gate().active.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// The `atexit` callback.
///
/// # Safety
/// Called by CPython (METH_NOARGS) with an attached thread state.
unsafe extern "C" fn at_exit(_module: *mut PyObject, _args: *mut PyObject) -> *mut PyObject {
    close();
    // SAFETY: an attached thread state (the contract); Py_None is immortal
    // on 3.12+ and Py_NewRef counts the reference on 3.11.
    unsafe { Py_NewRef(Py_None()) }
}

/// Is the calling thread's interpreter the main interpreter?
///
/// # Safety
/// An attached thread state.
unsafe fn in_main_interpreter() -> bool {
    // SAFETY: the caller has an attached thread state.
    unsafe { PyInterpreterState_GetID(PyInterpreterState_Get()) == 0 }
}

/// Resolve `name` in the running interpreter (limited API, Unix).
///
/// # Safety
/// Any thread.
#[cfg(Py_LIMITED_API)]
unsafe fn resolve(name: &core::ffi::CStr) -> *mut c_void {
    #[cfg(unix)]
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    unsafe {
        dlsym(RTLD_DEFAULT, name.as_ptr())
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        ptr::null_mut()
    }
}

/// Set up (once, by the copy that creates the process's runtime): resolve
/// the limited API's functions, and in the main interpreter register the
/// `atexit` callback that closes the gate. Errors are cleared (without the
/// callback the gate closes at `Py_IsFinalizing`).
///
/// # Safety
/// An attached thread state (GIL held).
pub(crate) unsafe fn init() {
    #[cfg(Py_LIMITED_API)]
    // SAFETY: `resolve` may run on any thread; Py_Version is a constant.
    unsafe {
        // 3.13+ exports PyThreadState_GetUnchecked; 3.12's
        // _PyThreadState_UncheckedGet reads the same thread-local (on
        // 3.11 the same name is the GIL holder's: never used there).
        let mut f = resolve(c"PyThreadState_GetUnchecked");
        if f.is_null() && Py_Version >= 0x030C_0000 {
            f = resolve(c"_PyThreadState_UncheckedGet");
        }
        gate().this_thread.store(f, Ordering::Release);
        let mut g = resolve(c"Py_IsFinalizing");
        if g.is_null() {
            g = resolve(c"_Py_IsFinalizing");
        }
        gate().finalizing.store(g, Ordering::Release);
    }
    // SAFETY: the caller holds the GIL.
    if unsafe { in_main_interpreter() } {
        // SAFETY: as above.
        unsafe { register_at_exit() };
    }
}

/// `atexit.register(<closes the gate>)`; errors are cleared.
///
/// # Safety
/// An attached thread state (GIL held).
unsafe fn register_at_exit() {
    let def: &'static mut PyMethodDef = crate::pyutil::keep_forever(Box::new(PyMethodDef {
        ml_name: c"_extensibletype_close_lookups".as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunction: at_exit },
        ml_flags: METH_NOARGS,
        ml_doc: ptr::null(),
    }));
    // SAFETY: the caller holds the GIL; `def` lives for the process; every
    // new reference is released.
    unsafe {
        let func = PyCFunction_NewEx(def, ptr::null_mut(), ptr::null_mut());
        let atexit = PyImport_ImportModule(c"atexit".as_ptr());
        let done = if func.is_null() || atexit.is_null() {
            ptr::null_mut()
        } else {
            PyObject_CallMethod(atexit, c"register".as_ptr(), c"O".as_ptr(), func)
        };
        if done.is_null() {
            PyErr_Clear();
        } else {
            Py_DECREF(done);
        }
        for o in [func, atexit] {
            if !o.is_null() {
                Py_DECREF(o);
            }
        }
    }
}
