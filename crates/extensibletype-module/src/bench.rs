//! Compiled timing loops behind `python -m extensibletype bench` (feature
//! `module`): `extensibletype._core._bench_lookup`.
//!
//! Every row starts from an object (the vtable row from a stand-in object
//! whose type holds a vtable) and is timed two ways: as a *dependent* chain
//! (the object of lookup `i + 1` is picked with an index that depends on the
//! result of lookup `i`: always 0, but the CPU cannot know), the latency an
//! indirect call through the found pointer waits for; and as independent
//! lookups, the throughput of a loop over many objects.
//!
//! The `ExtType_Find` rows run the header's inline path as a C consumer
//! compiles it: src/bench_inline.c includes include/extensibletype.h and is
//! compiled into this module by build.rs (cfg `bench_c`). Where build.rs
//! could not compile it (no `Python.h`), they time the Rust port
//! ([`runtime::find`]) and [`inline_path`] says so.

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

/// The value of `x`, opaque to the optimiser at every use (not `pure`: the
/// compiler may not hoist it, or the lookup using it, out of a loop).
#[inline(always)]
fn launder<T: Copy>(x: *const T) -> *const T {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let mut a = x as usize;
        // SAFETY: an empty asm statement that claims to change a register.
        unsafe {
            core::arch::asm!("/* {0} */", inout(reg) a, options(nomem, nostack, preserves_flags));
        }
        x.wrapping_byte_offset(a.wrapping_sub(x as usize) as isize)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        core::hint::black_box(x)
    }
}

/// A stand-in for a type object with a C++-style vtable pointer at a fixed
/// offset (the baseline every lookup is compared with).
#[repr(C)]
struct VtableType {
    _header: [usize; 50],
    vtable: *const [*const c_void; 16],
}

/// A stand-in for an object of a [`VtableType`]: its type pointer where
/// `ob_type` is, so the vtable row starts from an object like the others.
#[repr(C)]
struct VtableObject {
    _refcnt: usize,
    ty: *const VtableType,
}

/// Sixteen fake implementations (never called).
fn vtable() -> Box<[*const c_void; 16]> {
    Box::new(core::array::from_fn(|i| (0x1000 + i * 16) as *const c_void))
}

/// Latency (a dependent chain) or throughput (independent lookups).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Latency,
    Throughput,
}

/// Nanoseconds per lookup of `n` lookups of `f(objs[i])`: dependent
/// (`i` = the previous result & 0) or independent (`i` = 0).
#[inline(always)]
fn timed<T: Copy>(objs: &[T; 1], n: u64, mode: Mode, mut f: impl FnMut(T) -> usize) -> f64 {
    // Opaque base: the optimiser must not infer `dep == 0` from the size of
    // `objs` (an in-bounds offset into a one-element array is 0).
    let base = core::hint::black_box(objs.as_ptr());
    // SAFETY: `dep` is always 0 (zero_dependency); an unchecked read keeps the
    // address dependent on it (a bounds check would let the optimiser
    // replace `objs[dep]` by `objs[0]`).
    let at = |dep: usize| unsafe { *base.add(dep) };
    // SAFETY: `base` points at objs[0]; launder only hides the address.
    let fresh = || unsafe { *launder(base) };
    let mut dep = 0usize;
    let mut acc = 0usize;
    // Warm up (fills caches, branch predictors, the runtime's type cache).
    for _ in 0..1024 {
        dep = zero_dependency(f(at(dep)));
    }
    let t0 = Instant::now();
    match mode {
        Mode::Latency => {
            for _ in 0..n {
                let r = f(at(dep));
                acc = acc.wrapping_add(r);
                dep = zero_dependency(r);
            }
        }
        Mode::Throughput => {
            for _ in 0..n {
                acc = acc.wrapping_add(f(fresh()));
            }
        }
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    core::hint::black_box(acc);
    ns
}

/// The compiled header's loops (src/bench_inline.c, built by build.rs).
#[cfg(bench_c)]
mod header {
    use pyo3_ffi::PyObject;

    /// `(objs, id, n) -> sum of the pointers found`.
    pub(super) type Loop = unsafe extern "C" fn(*const *mut PyObject, u64, u64) -> usize;

    extern "C" {
        /// `ExtType_Import()` of the C translation unit (GIL held).
        pub(super) fn extensibletype_bench_import() -> core::ffi::c_int;
        /// n dependent `ExtType_Find(objs[dep], id)`.
        pub(super) fn extensibletype_bench_chain_obj(objs: *const *mut PyObject, id: u64, n: u64) -> usize;
        /// n independent `ExtType_Find(objs[0], id)`.
        pub(super) fn extensibletype_bench_tput_obj(objs: *const *mut PyObject, id: u64, n: u64) -> usize;
        /// n dependent `ExtType_FindInType(objs[dep], id)` (objs: types).
        pub(super) fn extensibletype_bench_chain_type(objs: *const *mut PyObject, id: u64, n: u64) -> usize;
        /// n independent `ExtType_FindInType(objs[0], id)` (objs: types).
        pub(super) fn extensibletype_bench_tput_type(objs: *const *mut PyObject, id: u64, n: u64) -> usize;
    }
}

/// Nanoseconds per lookup of the header's loop `f` over `n` lookups (after
/// a warm-up of 1024).
///
/// # Safety
/// The GIL is held, the C unit is imported and `target` is alive.
#[cfg(bench_c)]
unsafe fn timed_header(f: header::Loop, target: *mut PyObject, id: u64, n: u64) -> f64 {
    let objs = [target];
    // SAFETY: objs holds one live object; the loops read objs[0] only.
    unsafe {
        core::hint::black_box(f(objs.as_ptr(), id, 1024));
        let t0 = Instant::now();
        core::hint::black_box(f(objs.as_ptr(), id, n));
        t0.elapsed().as_nanos() as f64 / n as f64
    }
}

/// Which lookup code the `find` rows run (for the report).
fn inline_path() -> &'static core::ffi::CStr {
    if cfg!(bench_c) {
        c"extensibletype.h (C, -O2)"
    } else {
        c"Rust port (runtime::find)"
    }
}

/// `target` as a type, or a TypeError (`Err(ptr::null_mut())` to return).
///
/// # Safety
/// GIL held; `target` is live.
unsafe fn type_arg(target: *mut PyObject) -> Result<*mut PyTypeObject, *mut PyObject> {
    // SAFETY: GIL held; target is live (the caller's contract).
    unsafe {
        if PyType_Check(target) == 0 {
            PyErr_SetString(PyExc_TypeError, c"_bench_lookup('find_in_type'): target must be a type".as_ptr());
            return Err(ptr::null_mut());
        }
    }
    Ok(target.cast())
}

/// The rows `_bench_lookup` times (its `method` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// `"path"`: which lookup code the find rows run.
    Path,
    Find,
    FindInType,
    GetSlot,
    GetAttr,
    Vtable,
}

impl Method {
    /// The method named `name`, or `None`.
    fn parse(name: &str) -> Option<Method> {
        Some(match name {
            "path" => Method::Path,
            "find" => Method::Find,
            "find_in_type" => Method::FindInType,
            "getslot" => Method::GetSlot,
            "getattr" => Method::GetAttr,
            "vtable" => Method::Vtable,
            _ => return None,
        })
    }
}

/// What one `_bench_lookup` call does, decided from `method` and `n` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Name the find rows' code.
    Path,
    /// `n == 0` with a find method: one lookup, the pointer found.
    One(Method),
    /// `n` timed lookups (at least 1).
    Timed(Method, u64),
}

/// The ValueError's message for a negative `n`.
const N_NEGATIVE: &core::ffi::CStr = c"_bench_lookup(): n must be >= 0";

/// The plan for `method` and `n`, or the message of the ValueError.
fn plan(method: &str, n: i64) -> Result<Plan, &'static core::ffi::CStr> {
    if n < 0 {
        return Err(N_NEGATIVE);
    }
    let Some(method) = Method::parse(method) else {
        return Err(c"_bench_lookup(): method must be 'find', 'find_in_type', 'getslot', 'getattr', 'vtable' or 'path'");
    };
    Ok(match method {
        Method::Path => Plan::Path,
        Method::Find | Method::FindInType if n == 0 => Plan::One(method),
        _ => Plan::Timed(method, n.max(1) as u64),
    })
}

/// The arguments of `_bench_lookup`, checked.
struct Args {
    method: *mut PyObject,
    target: *mut PyObject,
    arg: *mut PyObject,
    n: i64,
    mode: Mode,
}

/// Unpack `_bench_lookup`'s arguments (`None` with an exception set).
///
/// # Safety
/// GIL held; `args` holds `nargs` live objects (a fastcall vector).
unsafe fn bench_args(args: *mut *mut PyObject, nargs: Py_ssize_t) -> Option<Args> {
    if nargs != 4 && nargs != 5 {
        // SAFETY: GIL held (the caller's contract).
        unsafe {
            PyErr_SetString(
                PyExc_TypeError,
                c"_bench_lookup(method, target, arg, n, throughput=False) takes 4 or 5 arguments".as_ptr(),
            );
        }
        return None;
    }
    // SAFETY: GIL held; args holds nargs (4 or 5, checked above) live objects.
    unsafe {
        let mode = if nargs == 5 {
            match PyObject_IsTrue(*args.add(4)) {
                -1 => return None,
                0 => Mode::Latency,
                _ => Mode::Throughput,
            }
        } else {
            Mode::Latency
        };
        let n = PyLong_AsLongLong(*args.add(3));
        if n == -1 && !PyErr_Occurred().is_null() {
            return None;
        }
        Some(Args { method: *args, target: *args.add(1), arg: *args.add(2), n, mode })
    }
}

/// `arg` as an id (`None` with an exception set).
///
/// # Safety
/// GIL held; `arg` is live.
unsafe fn id_arg(arg: *mut PyObject) -> Option<u64> {
    // SAFETY: GIL held; arg is live (the caller's contract).
    unsafe {
        let id = PyLong_AsUnsignedLongLong(arg);
        if !PyErr_Occurred().is_null() {
            return None;
        }
        Some(id)
    }
}

/// One lookup by the runtime (`n == 0`): the pointer found as an int (0:
/// none), NULL with an exception set.
///
/// # Safety
/// GIL held; the runtime is imported; `target` and `arg` are live.
unsafe fn lookup_once(method: Method, target: *mut PyObject, arg: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held; target and arg are live (the caller's contract).
    unsafe {
        let Some(id) = id_arg(arg) else { return ptr::null_mut() };
        let found = if method == Method::Find {
            runtime::find(target, id)
        } else {
            match type_arg(target) {
                Ok(tp) => runtime::find_in_type(tp, id),
                Err(e) => return e,
            }
        };
        PyLong_FromSize_t(found as usize)
    }
}

/// The `find` (`from_type`: `find_in_type`) rows: ns per lookup, `None`
/// with an exception set.
///
/// # Safety
/// GIL held; the runtime and the C unit are imported; `target` and `arg`
/// are live for the call.
unsafe fn time_find(from_type: bool, target: *mut PyObject, arg: *mut PyObject, n: u64, mode: Mode) -> Option<f64> {
    // SAFETY: GIL held; arg is live.
    let id = unsafe { id_arg(arg) }?;
    // SAFETY: GIL held; target is live.
    if from_type && unsafe { type_arg(target) }.is_err() {
        return None;
    }
    #[cfg(bench_c)]
    {
        let f: header::Loop = match (from_type, mode) {
            (false, Mode::Latency) => header::extensibletype_bench_chain_obj,
            (false, Mode::Throughput) => header::extensibletype_bench_tput_obj,
            (true, Mode::Latency) => header::extensibletype_bench_chain_type,
            (true, Mode::Throughput) => header::extensibletype_bench_tput_type,
        };
        // SAFETY: GIL held, the C unit imported, target alive for the call
        // (held by the caller).
        Some(unsafe { timed_header(f, target, id, n) })
    }
    #[cfg(not(bench_c))]
    {
        // SAFETY: GIL held; target alive for the call (held by the caller)
        // and, for find_in_type, a type (checked above).
        unsafe {
            Some(if from_type {
                timed(&[target.cast::<PyTypeObject>()], n, mode, |t| runtime::find_in_type(t, id) as usize)
            } else {
                timed(&[target], n, mode, |o| runtime::find(o, id) as usize)
            })
        }
    }
}

/// The `PyType_GetSlot` row (`None` with an exception set).
///
/// # Safety
/// GIL held; `target` and `arg` are live for the call.
unsafe fn time_getslot(target: *mut PyObject, arg: *mut PyObject, n: u64, mode: Mode) -> Option<f64> {
    // SAFETY: GIL held; target and arg are live (the caller's contract).
    unsafe {
        let slot = PyLong_AsLong(arg);
        if !PyErr_Occurred().is_null() {
            return None;
        }
        Some(timed(&[target], n, mode, |o| PyType_GetSlot(Py_TYPE(o), slot as _) as usize))
    }
}

/// The `PyObject_GetAttr` + `PyCapsule_GetPointer` row (`None` with an
/// exception set).
///
/// # Safety
/// GIL held; `target` and `arg` are live for the call.
unsafe fn time_getattr(target: *mut PyObject, arg: *mut PyObject, n: u64, mode: Mode) -> Option<f64> {
    // SAFETY: GIL held; target and arg are live (the caller's contract);
    // every new reference is released.
    unsafe {
        if PyUnicode_Check(arg) == 0 {
            PyErr_SetString(PyExc_TypeError, c"_bench_lookup('getattr'): arg must be a str".as_ptr());
            return None;
        }
        let probe = PyObject_GetAttr(target, arg);
        if probe.is_null() {
            return None;
        }
        let ok = PyCapsule_IsValid(probe, ptr::null()) != 0;
        Py_DECREF(probe);
        if !ok {
            PyErr_SetString(PyExc_TypeError, c"_bench_lookup('getattr'): the attribute must be a PyCapsule with name NULL".as_ptr());
            return None;
        }
        Some(timed(&[target], n, mode, |o| {
            let cap = PyObject_GetAttr(o, arg);
            if cap.is_null() {
                PyErr_Clear();
                return 0;
            }
            let p = PyCapsule_GetPointer(cap, ptr::null());
            Py_DECREF(cap);
            p as usize
        }))
    }
}

/// The fixed-offset vtable row (the baseline).
fn time_vtable(n: u64, mode: Mode) -> f64 {
    let table = vtable();
    let fake_type = Box::new(VtableType { _header: [0; 50], vtable: &*table });
    let fake = Box::new(VtableObject { _refcnt: 1, ty: &*fake_type });
    let fake: *const VtableObject = &*fake;
    timed(&[fake], n, mode, |o| {
        // SAFETY: `fake`, its type and `table` live until the end of this function.
        unsafe {
            let ty = core::ptr::read_volatile(ptr::addr_of!((*o).ty));
            let vt = core::ptr::read_volatile(ptr::addr_of!((*ty).vtable));
            (*vt)[3] as usize
        }
    })
}

/// `_bench_lookup(method, target, arg, n, throughput=False) -> float`: ns
/// per lookup (with `n == 0` and a find method: one lookup by the runtime's Rust `find` or `find_in_type`,
/// the pointer found as an int; with `method == "path"`: which lookup code
/// the find rows run, as a str).
///
/// - `"find"`: `ExtType_Find(target, arg)` (arg: an int id).
/// - `"find_in_type"`: `ExtType_FindInType(target, arg)` (target: a type).
/// - `"getslot"`: `PyType_GetSlot(type(target), arg)` (arg: a slot number).
/// - `"getattr"`: `PyObject_GetAttr(target, arg)` then
///   `PyCapsule_GetPointer` (arg: a str; the attribute a capsule with name
///   NULL).
/// - `"vtable"`: a vtable at a fixed offset of a stand-in object's type
///   (target and arg ignored).
unsafe extern "C" fn bench_lookup(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; CPython passes nargs live arguments.
        let Some(a) = (unsafe { bench_args(args, nargs) }) else { return ptr::null_mut() };
        if a.n < 0 {
            // SAFETY: GIL held.
            unsafe { PyErr_SetString(PyExc_ValueError, N_NEGATIVE.as_ptr()) };
            return ptr::null_mut();
        }
        if runtime::import().is_err() {
            return ptr::null_mut();
        }
        #[cfg(bench_c)]
        // SAFETY: GIL held.
        if unsafe { header::extensibletype_bench_import() } < 0 {
            return ptr::null_mut();
        }
        // SAFETY: GIL held; a.method is live (an argument).
        let Some(method) = (unsafe { runtime::pyutil::utf8(a.method) }) else {
            // SAFETY: GIL held.
            unsafe { PyErr_SetString(PyExc_TypeError, c"_bench_lookup(): method must be a str".as_ptr()) };
            return ptr::null_mut();
        };
        let plan = match plan(method, a.n) {
            Ok(plan) => plan,
            Err(msg) => {
                // SAFETY: GIL held.
                unsafe { PyErr_SetString(PyExc_ValueError, msg.as_ptr()) };
                return ptr::null_mut();
            }
        };
        // SAFETY: GIL held; target and arg are live for the call (held by
        // the caller); the runtime (and the C unit) are imported above.
        unsafe {
            let ns = match plan {
                Plan::Path => return PyUnicode_FromString(inline_path().as_ptr()),
                Plan::One(method) => return lookup_once(method, a.target, a.arg),
                Plan::Timed(m @ (Method::Find | Method::FindInType), n) => {
                    time_find(m == Method::FindInType, a.target, a.arg, n, a.mode)
                }
                Plan::Timed(Method::GetSlot, n) => time_getslot(a.target, a.arg, n, a.mode),
                Plan::Timed(Method::GetAttr, n) => time_getattr(a.target, a.arg, n, a.mode),
                Plan::Timed(Method::Vtable, n) => Some(time_vtable(n, a.mode)),
                Plan::Timed(Method::Path, _) => unreachable!("plan() maps path to Plan::Path"),
            };
            match ns {
                Some(ns) => PyFloat_FromDouble(ns),
                None => ptr::null_mut(),
            }
        }
    })
}
/// The method table entry of `_bench_lookup` (added to `_core`).
pub(crate) fn method() -> PyMethodDef {
    extensibletype_runtime::pyutil::py_method!(c"_bench_lookup", PyCFunctionFast, bench_lookup, METH_FASTCALL,
        c"_bench_lookup(method, target, arg, n, throughput=False, /)\n--\n\nNanoseconds per lookup of n \
          lookups (a dependent chain, or independent with throughput), timed in a compiled loop (see \
          python -m extensibletype bench).\n\
          method: 'find' (arg: id), 'find_in_type' (target: a type), 'getslot' (arg: slot number), \
          'getattr' (arg: attribute name of a capsule), 'vtable'; 'path' names the find rows' code.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(plan("path", 0), Ok(Plan::Path));
        assert_eq!(plan("path", 5), Ok(Plan::Path));
        assert_eq!(plan("find", 0), Ok(Plan::One(Method::Find)));
        assert_eq!(plan("find_in_type", 0), Ok(Plan::One(Method::FindInType)));
        assert_eq!(plan("find", 7), Ok(Plan::Timed(Method::Find, 7)));
        // n == 0 times one lookup for the other rows.
        assert_eq!(plan("getslot", 0), Ok(Plan::Timed(Method::GetSlot, 1)));
        assert_eq!(plan("getattr", 3), Ok(Plan::Timed(Method::GetAttr, 3)));
        assert_eq!(plan("vtable", 1), Ok(Plan::Timed(Method::Vtable, 1)));
        assert_eq!(plan("find", -1), Err(N_NEGATIVE));
        assert_eq!(plan("nope", -1), Err(N_NEGATIVE), "n is checked first");
        let unknown = plan("Find", 1).unwrap_err().to_str().unwrap();
        assert!(unknown.contains("method must be"), "{unknown}");
        assert_eq!(plan("", 1).unwrap_err().to_str().unwrap(), unknown);
    }

    #[test]
    fn vtable_row_reads_the_table() {
        assert!(time_vtable(10, Mode::Latency) >= 0.0);
        assert!(time_vtable(10, Mode::Throughput) >= 0.0);
    }
}
