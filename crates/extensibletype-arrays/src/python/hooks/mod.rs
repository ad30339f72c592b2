//! Test and benchmark hooks of `_arrays` (private names, `_` prefix).
//!
//! Always built: `_set_isa` / `_isa` (the kernels' instruction set; tests
//! and the demo's report). With cargo feature `hooks` (the test and demo
//! builds, scripts/lib.sh; not release wheels): `_set_threads`, `_set_par_min`,
//! `_set_stream_min` and the
//! compiled timing loops `_bench_view_cost` ([`view_cost`]) and
//! `_bench_dlpack_cost` (`crate::providers::dlpack::bench`).

use core::ptr;

use pyo3_ffi::*;

use crate::consumers::kernels::{self, Isa};
#[cfg(feature = "hooks")]
use crate::consumers::par;
use crate::runtime::pyutil::py_method;
use crate::util::{self, guard, raise, ret};

#[cfg(feature = "hooks")]
mod view_cost;

unsafe extern "C" fn py_set_isa(_m: *mut PyObject, name: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        let level = match util::str_of(name).as_deref() {
            Some("base") => Isa::Base,
            Some("avx2") => Isa::Avx2,
            Some("avx512") => Isa::Avx512,
            Some("best") => kernels::detect(),
            _ => return ret(raise(util::value_error(), "_set_isa(): 'base', 'avx2', 'avx512' or 'best'")),
        };
        // SAFETY: GIL held.
        unsafe { PyBool_FromLong(kernels::set_isa(level) as _) }
    })
}

/// `n` as a count >= 0 for the hook `what`; None with the exception set.
///
/// # Safety
/// The GIL is held; `n` is a live object.
#[cfg(feature = "hooks")]
unsafe fn count_arg(n: *mut PyObject, what: &str) -> Option<usize> {
    // SAFETY: the caller's contract.
    let v = unsafe { PyLong_AsLong(n) };
    // SAFETY: GIL held.
    if v == -1 && unsafe { !PyErr_Occurred().is_null() } {
        return None;
    }
    if v < 0 {
        return raise(util::value_error(), &format!("{what}(): n must be >= 0")).ok();
    }
    Some(v as usize)
}

#[cfg(feature = "hooks")]
unsafe extern "C" fn py_set_threads(_m: *mut PyObject, n: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held (a METH_O function); n is its live argument.
        let Some(n) = (unsafe { count_arg(n, "_set_threads") }) else { return ptr::null_mut() };
        par::set_threads(n);
        // SAFETY: GIL held.
        unsafe {
            Py_BuildValue(
                c"(nn)".as_ptr(),
                par::threads() as Py_ssize_t,
                par::WORKER_PARTS.load(core::sync::atomic::Ordering::Relaxed) as Py_ssize_t,
            )
        }
    })
}

/// The hook `what`: force `threshold` to the count `n`; the previous forced
/// value, or NULL with the exception set.
///
/// # Safety
/// The GIL is held; `n` is a live object.
#[cfg(feature = "hooks")]
unsafe fn force(n: *mut PyObject, what: &str, threshold: &par::Forced) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: the caller's contract.
        let Some(n) = (unsafe { count_arg(n, what) }) else { return ptr::null_mut() };
        // SAFETY: GIL held.
        unsafe { PyLong_FromSize_t(threshold.set(n)) }
    })
}

#[cfg(feature = "hooks")]
unsafe extern "C" fn py_set_par_min(_m: *mut PyObject, n: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held (a METH_O function); n is its live argument.
    unsafe { force(n, "_set_par_min", &par::PAR_MIN_FORCED) }
}

#[cfg(feature = "hooks")]
unsafe extern "C" fn py_set_stream_min(_m: *mut PyObject, n: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held (a METH_O function); n is its live argument.
    unsafe { force(n, "_set_stream_min", &par::STREAM_MIN_FORCED) }
}

unsafe extern "C" fn py_isa(_m: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    let name = match kernels::isa() {
        Isa::Base => "base",
        Isa::Avx2 => "avx2",
        Isa::Avx512 => "avx512",
    };
    // SAFETY: GIL held.
    unsafe { PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as Py_ssize_t) }
}

/// The hooks' method table entries (see the module doc for which are built).
pub(super) fn methods() -> Vec<PyMethodDef> {
    #[allow(unused_mut)]
    let mut methods = vec![
        py_method!(c"_set_isa", PyCFunction, py_set_isa, METH_O,
            c"_set_isa(level) -> bool\n--\n\nForce the kernels' instruction set ('base', 'avx2', 'avx512', 'best'); False if unsupported."),
        py_method!(c"_isa", PyCFunction, py_isa, METH_NOARGS, c"_isa() -> str\n--\n\nThe kernels' instruction set in use."),
    ];
    #[cfg(feature = "hooks")]
    methods.extend([
        py_method!(c"_set_threads", PyCFunction, py_set_threads, METH_O,
            c"_set_threads(n) -> (threads, worker_parts)\n--\n\nThreads for sum/dot/axpy on large inputs (0: automatic);\n\
              returns the count in use and how many parts pool workers have computed so far."),
        py_method!(c"_set_par_min", PyCFunction, py_set_par_min, METH_O,
            c"_set_par_min(n) -> int\n--\n\nForce the element count from which sum/dot/axpy use several threads\n\
              (0: PAR_MIN); returns the previously forced value (0: none). For the threshold sweep."),
        py_method!(c"_set_stream_min", PyCFunction, py_set_stream_min, METH_O,
            c"_set_stream_min(n) -> int\n--\n\nForce the bytes of input from which dot takes its streaming loop\n\
              (0: STREAM_MIN; 1: always; 2**62: never); returns the previously forced value (0: none)."),
        py_method!(c"_bench_view_cost", PyCFunctionFast, view_cost::py_bench_view_cost, METH_FASTCALL,
            c"_bench_view_cost(obj, method, iterations) -> float\n--\n\nNanoseconds per view of obj, timed in a compiled loop.\n\
              method: 'slots' (find acquire+release, acquire, release), 'slots_cached', 'find', 'buffer'\n\
              (PyObject_GetBuffer + release), 'array_struct', 'dlpack', 'array_interface'."),
    ]);
    methods
}
