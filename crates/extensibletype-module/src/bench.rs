//! Compiled timing loops behind `python -m extensibletype bench` (feature
//! `module`): `extensibletype._core._bench_lookup`.
//!
//! Every loop is a *dependent* chain: the object of lookup `i + 1` is picked
//! with an index that depends on the result of lookup `i` (always 0, but the
//! CPU cannot know), so the figure is the latency of one lookup, which is
//! what an indirect call through the found pointer waits for. The lookup
//! under test is the inline path a consumer compiles in
//! ([`runtime::find`], the Rust port of `ExtType_Find`), not a call
//! through the Python API.

use core::ffi::c_void;
use core::ptr;
use std::time::Instant;

use pyo3_ffi::*;

use extensibletype_runtime::{self as runtime, pyutil::guard};

/// `x & 0`, opaque to the optimiser: the next iteration's index depends on
/// this iteration's result.
#[inline(always)]
fn zero_dependency(mut x: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a register-only instruction.
    unsafe {
        core::arch::asm!("and {0}, 0", inout(reg) x, options(pure, nomem, nostack));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a register-only instruction.
    unsafe {
        core::arch::asm!("and {0}, {0}, xzr", inout(reg) x, options(pure, nomem, nostack));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        x = core::hint::black_box(x) & 0;
    }
    x
}

/// A stand-in for a type object with a C++-style vtable pointer at a fixed
/// offset (the baseline every lookup is compared with).
#[repr(C)]
struct VtableType {
    _header: [usize; 50],
    vtable: *const [*const c_void; 16],
}

/// Sixteen fake implementations (never called).
fn vtable() -> Box<[*const c_void; 16]> {
    Box::new(core::array::from_fn(|i| (0x1000 + i * 16) as *const c_void))
}

/// Nanoseconds per lookup of `n` dependent lookups of `f(objs[dep])`.
#[inline(always)]
fn chain<T: Copy>(objs: &[T; 1], n: u64, mut f: impl FnMut(T) -> usize) -> f64 {
    // Opaque base: the optimiser must not infer `dep == 0` from the size of
    // `objs` (an in-bounds offset into a one-element array is 0).
    let base = core::hint::black_box(objs.as_ptr());
    // SAFETY: `dep` is always 0 (zero_dependency); an unchecked read keeps the
    // address dependent on it (a bounds check would let the optimiser
    // replace `objs[dep]` by `objs[0]`).
    let at = |dep: usize| unsafe { *base.add(dep) };
    let mut dep = 0usize;
    let mut acc = 0usize;
    // Warm up (fills caches, branch predictors, the runtime's type cache).
    for _ in 0..1024 {
        dep = zero_dependency(f(at(dep)));
    }
    let t0 = Instant::now();
    for _ in 0..n {
        let r = f(at(dep));
        acc = acc.wrapping_add(r);
        dep = zero_dependency(r);
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    core::hint::black_box(acc);
    ns
}

/// `target` as a type, or a TypeError (`Err(ptr::null_mut())` to return).
unsafe fn type_arg(target: *mut PyObject) -> Result<*mut PyTypeObject, *mut PyObject> {
    // SAFETY: GIL held; target is live.
    unsafe {
        if PyType_Check(target) == 0 {
            PyErr_SetString(PyExc_TypeError, c"_bench_lookup('find_in_type'): target must be a type".as_ptr());
            return Err(ptr::null_mut());
        }
    }
    Ok(target.cast())
}

/// `_bench_lookup(method, target, arg, n) -> float`: ns per lookup (with
/// `n == 0` and a find method: one lookup, the pointer found as an int).
///
/// - `"find"`: `find(target, arg)` (arg: an int id) — the inline lookup.
/// - `"find_in_type"`: `find_in_type(target, arg)` (target: a type).
/// - `"getslot"`: `PyType_GetSlot(type(target), arg)` (arg: a slot number).
/// - `"getattr"`: `PyObject_GetAttr(target, arg)` then
///   `PyCapsule_GetPointer` (arg: a str; the attribute a capsule with name
///   NULL).
/// - `"vtable"`: a fixed-offset vtable load (target and arg ignored).
unsafe extern "C" fn bench_lookup(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; CPython passes nargs live arguments.
        unsafe {
            if nargs != 4 {
                PyErr_SetString(PyExc_TypeError, c"_bench_lookup(method, target, arg, n) takes 4 arguments".as_ptr());
                return ptr::null_mut();
            }
            let (method, target, arg) = (*args, *args.add(1), *args.add(2));
            let n = PyLong_AsLongLong(*args.add(3));
            if n == -1 && !PyErr_Occurred().is_null() {
                return ptr::null_mut();
            }
            if n < 0 {
                PyErr_SetString(PyExc_ValueError, c"_bench_lookup(): n must be >= 0".as_ptr());
                return ptr::null_mut();
            }
            if runtime::import().is_err() {
                return ptr::null_mut();
            }
            let Some(method) = runtime::pyutil::utf8(method) else {
                PyErr_SetString(PyExc_TypeError, c"_bench_lookup(): method must be a str".as_ptr());
                return ptr::null_mut();
            };
            if n == 0 && (method == "find" || method == "find_in_type") {
                // One lookup: the pointer found (0 = none).
                let id = PyLong_AsUnsignedLongLong(arg);
                if !PyErr_Occurred().is_null() {
                    return ptr::null_mut();
                }
                let tp = if method == "find" {
                    Py_TYPE(target)
                } else {
                    match type_arg(target) {
                        Ok(tp) => tp,
                        Err(e) => return e,
                    }
                };
                return PyLong_FromSize_t(runtime::find_in_type(tp, id) as usize);
            }
            let n = n.max(1) as u64;
            let ns = match method {
                "find" => {
                    let id = PyLong_AsUnsignedLongLong(arg);
                    if !PyErr_Occurred().is_null() {
                        return ptr::null_mut();
                    }
                    // SAFETY: target is alive for the call (held by the caller).
                    chain(&[target], n, |o| runtime::find(o, id) as usize)
                }
                "find_in_type" => {
                    let id = PyLong_AsUnsignedLongLong(arg);
                    if !PyErr_Occurred().is_null() {
                        return ptr::null_mut();
                    }
                    let tp = match type_arg(target) {
                        Ok(tp) => tp,
                        Err(e) => return e,
                    };
                    chain(&[tp], n, |t| runtime::find_in_type(t, id) as usize)
                }
                "getslot" => {
                    let slot = PyLong_AsLong(arg);
                    if !PyErr_Occurred().is_null() {
                        return ptr::null_mut();
                    }
                    let tp = Py_TYPE(target);
                    chain(&[tp], n, |t| PyType_GetSlot(t, slot as _) as usize)
                }
                "getattr" => {
                    if PyUnicode_Check(arg) == 0 {
                        PyErr_SetString(PyExc_TypeError, c"_bench_lookup('getattr'): arg must be a str".as_ptr());
                        return ptr::null_mut();
                    }
                    let probe = PyObject_GetAttr(target, arg);
                    if probe.is_null() {
                        return ptr::null_mut();
                    }
                    let ok = PyCapsule_IsValid(probe, ptr::null()) != 0;
                    Py_DECREF(probe);
                    if !ok {
                        PyErr_SetString(PyExc_TypeError, c"_bench_lookup('getattr'): the attribute must be a PyCapsule with name NULL".as_ptr());
                        return ptr::null_mut();
                    }
                    chain(&[target], n, |o| {
                        let cap = PyObject_GetAttr(o, arg);
                        if cap.is_null() {
                            PyErr_Clear();
                            return 0;
                        }
                        let p = PyCapsule_GetPointer(cap, ptr::null());
                        Py_DECREF(cap);
                        p as usize
                    })
                }
                "vtable" => {
                    let table = vtable();
                    let fake = Box::new(VtableType { _header: [0; 50], vtable: &*table });
                    let fake: *const VtableType = &*fake;
                    chain(&[fake], n, |t| {
                        // SAFETY: `fake` lives until the end of this arm.
                        let vt = core::ptr::read_volatile(ptr::addr_of!((*t).vtable));
                        (*vt)[3] as usize
                    })
                }
                _ => {
                    PyErr_SetString(
                        PyExc_ValueError,
                        c"_bench_lookup(): method must be 'find', 'find_in_type', 'getslot', 'getattr' or 'vtable'"
                            .as_ptr(),
                    );
                    return ptr::null_mut();
                }
            };
            PyFloat_FromDouble(ns)
        }
    })
}

/// The method table entry of `_bench_lookup` (added to `_core`).
pub(crate) fn method() -> PyMethodDef {
    extensibletype_runtime::pyutil::py_method!(c"_bench_lookup", PyCFunctionFast, bench_lookup, METH_FASTCALL,
        c"_bench_lookup(method, target, arg, n, /)\n--\n\nNanoseconds per lookup of a dependent chain of n \
          lookups, timed in a compiled loop (see python -m extensibletype bench).\n\
          method: 'find' (arg: id), 'getslot' (arg: slot number), 'getattr' (arg: attribute name of a capsule), 'vtable'.")
}
