//! The `extensibletype._core._arrays` submodule (`extensibletype.arrays`):
//! consumers (`sum`, `dot`, `axpy`, `view_info`), provider registration
//! (`register_buffer_type`, `_register_numpy`), and the view-cost
//! benchmark `_bench_view_cost`.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;
use std::hint::black_box;
use std::time::Instant;

use pyo3_ffi::*;

use crate::abi::{self, with_view, ArrayView, DLDataType, Provider};
use crate::consumers::kernels::{self, Elem, Isa};
use crate::consumers::nd::Nd;
use crate::util::{self, guard, prefix_error, raise, ret, NoGil, Owned};
#[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
use crate::providers::array as array_type;
use crate::consumers::par;
use crate::providers::{buffer, numpy};
use crate::runtime::pyutil::{new_module, py_method};
use crate::runtime::{self, SlotDef};

/// Element count from which the kernels release the GIL (below it a
/// release/re-acquire costs more than the loop).
const NOGIL_MIN: usize = 4096;

/// Check a fastcall argument count.
fn nargs_in(name: &str, nargs: Py_ssize_t, min: Py_ssize_t, max: Py_ssize_t) -> Result<(), ()> {
    if (min..=max).contains(&nargs) {
        return Ok(());
    }
    let want = if min == max { format!("exactly {min}") } else { format!("{min} to {max}") };
    raise(util::type_error(), &format!("{name}() takes {want} arguments ({nargs} given)"))
}

/// The element types the kernels support.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    F64,
    F32,
    I64,
}

/// The kernel element type of a view, or TypeError.
fn kind_of(v: &ArrayView, func: &str, arg: &str) -> Result<Kind, ()> {
    if v.device != abi::DLDevice::CPU {
        return raise(
            util::type_error(),
            &format!(
                "{func}: {arg} is not in host memory (DLPack device {}:{})",
                v.device.device_type, v.device.device_id
            ),
        );
    }
    if v.flags & abi::BYTESWAPPED != 0 {
        return raise(util::type_error(), &format!("{func}: {arg} has non-native byte order ({})", v.dtype.name()));
    }
    Ok(match v.dtype {
        DLDataType::F64 => Kind::F64,
        DLDataType::F32 => Kind::F32,
        DLDataType::I64 => Kind::I64,
        other => {
            return raise(
                util::type_error(),
                &format!("{func}: {arg} has dtype {}; supported: float64, float32, int64", other.name()),
            )
        }
    })
}

fn shape_str(shape: &[i64]) -> String {
    match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Acquire `obj` for `func`'s argument `arg`, run `f`, release. Acquire
/// failures are re-raised as "func: arg: <provider's message>".
unsafe fn view_arg<R>(
    func: &str,
    arg: &str,
    obj: *mut PyObject,
    request: c_int,
    f: impl FnOnce(&ArrayView) -> Result<R, ()>,
) -> Result<R, ()> {
    // SAFETY: GIL held; obj is an argument of the running call (alive).
    match unsafe { with_view(obj, request, f) } {
        Ok(r) => r,
        Err(()) => {
            prefix_error(&format!("{func}: {arg}"));
            Err(())
        }
    }
}

// ---- sum / dot / axpy ------------------------------------------------------------

unsafe extern "C" fn py_sum(_m: *mut PyObject, x: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; x is the argument.
        ret(unsafe {
            view_arg("sum()", "x", x, 0, |v| {
                let kind = kind_of(v, "sum()", "x")?;
                let nd = Nd::<1>::new([v], true);
                let _nogil = NoGil::new(nd.size >= NOGIL_MIN);
                let out = match kind {
                    Kind::F64 => Out::F(par::sum::<f64>(&nd)),
                    Kind::F32 => Out::F(par::sum::<f32>(&nd) as f64),
                    Kind::I64 => Out::I(par::sum::<i64>(&nd)),
                };
                Ok(out)
            })
            .and_then(Out::into_py)
        })
    })
}

/// A kernel's scalar result.
enum Out {
    F(f64),
    I(i64),
}

impl Out {
    fn into_py(self) -> Result<*mut PyObject, ()> {
        // SAFETY: GIL held (the views are released, the GIL is back).
        Owned::new(unsafe {
            match self {
                Out::F(x) => PyFloat_FromDouble(x),
                Out::I(x) => PyLong_FromLongLong(x),
            }
        })
        .map(Owned::into_ptr)
    }
}

unsafe extern "C" fn py_dot(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; CPython passes nargs arguments.
        ret(unsafe {
            nargs_in("dot", nargs, 2, 2).and_then(|()| {
                let (x, y) = (*args, *args.add(1));
                view_arg("dot()", "x", x, 0, |vx| {
                    view_arg("dot()", "y", y, 0, |vy| {
                        let kind = same_kind_and_shape("dot()", vx, vy)?;
                        let nd = Nd::<2>::new([vx, vy], true);
                        let _nogil = NoGil::new(nd.size >= NOGIL_MIN);
                        Ok(match kind {
                            Kind::F64 => Out::F(par::dot::<f64>(&nd)),
                            Kind::F32 => Out::F(par::dot::<f32>(&nd) as f64),
                            Kind::I64 => Out::I(par::dot::<i64>(&nd)),
                        })
                    })
                })
                .and_then(Out::into_py)
            })
        })
    })
}

fn same_kind_and_shape(func: &str, vx: &ArrayView, vy: &ArrayView) -> Result<Kind, ()> {
    let kx = kind_of(vx, func, "x")?;
    let ky = kind_of(vy, func, "y")?;
    if kx != ky {
        return raise(
            util::type_error(),
            &format!("{func}: dtype mismatch: x is {}, y is {}", vx.dtype.name(), vy.dtype.name()),
        );
    }
    if vx.shape() != vy.shape() {
        return raise(
            util::value_error(),
            &format!(
                "{func}: shape mismatch: x has shape {}, y has shape {}",
                shape_str(vx.shape()),
                shape_str(vy.shape())
            ),
        );
    }
    Ok(kx)
}

/// Byte range `[lo, hi)` covered by a view's elements (empty: `lo == hi`).
fn extent(v: &ArrayView) -> (usize, usize) {
    if v.size() == 0 {
        return (0, 0);
    }
    let (mut lo, mut hi) = (v.data as isize, v.data as isize + v.itemsize() as isize);
    for (&n, &s) in v.shape().iter().zip(v.strides()) {
        let span = (n as isize - 1) * s as isize;
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    (lo as usize, hi as usize)
}

unsafe extern "C" fn py_axpy(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; CPython passes nargs arguments.
        ret(unsafe {
            nargs_in("axpy", nargs, 3, 3).and_then(|()| {
                let (a, x, y) = (*args, *args.add(1), *args.add(2));
                view_arg("axpy()", "x", x, 0, |vx| {
                    view_arg("axpy()", "y", y, abi::REQ_WRITABLE, |vy| {
                        if vy.flags & abi::READONLY != 0 {
                            return raise(
                                util::buffer_error(),
                                "axpy(): y is read-only (its provider ignored the writable request)",
                            );
                        }
                        let kind = same_kind_and_shape("axpy()", vx, vy)?;
                        match kind {
                            Kind::F64 => axpy_typed::<f64>(float_arg(a)?, vx, vy),
                            Kind::F32 => axpy_typed::<f32>(float_arg(a)? as f32, vx, vy),
                            Kind::I64 => axpy_typed::<i64>(int_arg(a)?, vx, vy),
                        }
                        Ok(())
                    })
                })
                .map(|()| Py_NewRef(Py_None()))
            })
        })
    })
}

fn float_arg(a: *mut PyObject) -> Result<f64, ()> {
    // SAFETY: GIL held.
    unsafe {
        let v = PyFloat_AsDouble(a);
        if v == -1.0 && !PyErr_Occurred().is_null() {
            prefix_error("axpy(): a");
            return Err(());
        }
        Ok(v)
    }
}

fn int_arg(a: *mut PyObject) -> Result<i64, ()> {
    // SAFETY: GIL held.
    unsafe {
        if PyLong_Check(a) == 0 && PyObject_HasAttrString(a, c"__index__".as_ptr()) == 0 {
            return raise(
                util::type_error(),
                &format!("axpy(): a must be an integer for int64 arrays, not {}", util::type_name(a)),
            );
        }
        let idx = Owned::new(PyNumber_Index(a))?;
        let v = PyLong_AsLongLong(idx.0);
        if v == -1 && !PyErr_Occurred().is_null() {
            prefix_error("axpy(): a");
            return Err(());
        }
        Ok(v)
    }
}

/// `y += a * x`, copying x first when it overlaps y other than element
/// for element (as NumPy does for overlapping operands).
fn axpy_typed<T: Elem>(a: T, vx: &ArrayView, vy: &ArrayView) {
    let (xl, xh) = extent(vx);
    let (yl, yh) = extent(vy);
    let overlap = xl < yh && yl < xh;
    let identical = vx.data == vy.data && vx.strides() == vy.strides();
    let size = vy.size() as usize;
    let _nogil = NoGil::new(size >= NOGIL_MIN);
    // SAFETY: both views are acquired (y writable) and outlive this call;
    // the temporary view below points into `tmp`, alive until the end.
    unsafe {
        if overlap && !identical {
            let mut tmp: Vec<T> = Vec::with_capacity(size);
            kernels::gather::<T>(&Nd::<1>::new([vx], false), &mut tmp);
            let mut strides = vec![0i64; vx.shape().len()];
            let mut s = core::mem::size_of::<T>() as i64;
            for k in (0..strides.len()).rev() {
                strides[k] = s;
                s *= vx.shape()[k].max(1);
            }
            let mut shape = vx.shape().to_vec();
            let mut tv = ArrayView::new();
            tv.data = tmp.as_mut_ptr().cast();
            tv.ndim = vx.ndim;
            tv.shape = shape.as_mut_ptr();
            tv.strides = strides.as_mut_ptr();
            tv.dtype = vx.dtype;
            par::axpy::<T>(&Nd::<2>::new([vy, &tv], true), a);
        } else {
            par::axpy::<T>(&Nd::<2>::new([vy, vx], true), a);
        }
    }
}

// ---- view_info ---------------------------------------------------------------

unsafe extern "C" fn py_view_info(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; CPython passes nargs arguments.
        ret(unsafe {
            nargs_in("view_info", nargs, 1, 2).and_then(|()| {
                let obj = *args;
                let request = if nargs > 1 { request_flags(*args.add(1), "view_info")? } else { 0 };
                with_view(obj, request, info_dict).and_then(|d| d)
            })
        })
    })
}

/// A request-flags argument: a non-negative int that fits the ABI's C `int`
/// (never truncated: `2**32 + 1` is refused, not taken as `REQ_WRITABLE`).
/// Unknown bits inside that range go to the provider, which refuses them
/// with `BufferError` (the array.v1 contract).
unsafe fn request_flags(obj: *mut PyObject, func: &str) -> Result<c_int, ()> {
    // SAFETY: GIL held; obj is a live argument.
    unsafe {
        if PyLong_Check(obj) == 0 || PyBool_Check(obj) != 0 {
            return raise(
                util::type_error(),
                &format!("{func}() argument 'request' must be an int of REQ_* flags, not {}", util::type_name(obj)),
            );
        }
        let mut overflow: c_int = 0;
        let r = PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        if r == -1 && !PyErr_Occurred().is_null() {
            return Err(());
        }
        if overflow != 0 || !(0..=i64::from(c_int::MAX)).contains(&r) {
            let text = Owned::new(PyObject_Repr(obj)).ok().and_then(|s| util::str_of(s.0));
            return raise(
                util::value_error(),
                &format!(
                    "{func}() argument 'request' must be a combination of REQ_* flags in 0..={}, not {}",
                    c_int::MAX,
                    text.unwrap_or_else(|| "?".into())
                ),
            );
        }
        Ok(r as c_int)
    }
}

fn info_dict(v: &ArrayView) -> Result<*mut PyObject, ()> {
    // SAFETY: GIL held.
    unsafe {
        let d = Owned::new(PyDict_New())?;
        let set = |k: &CStr, val: *mut PyObject| -> Result<(), ()> {
            let val = Owned::new(val)?;
            if PyDict_SetItemString(d.0, k.as_ptr(), val.0) < 0 {
                return Err(());
            }
            Ok(())
        };
        let ints = |xs: &[i64]| -> *mut PyObject {
            let t = PyTuple_New(xs.len() as Py_ssize_t);
            for (i, &x) in xs.iter().enumerate() {
                PyTuple_SetItem(t, i as Py_ssize_t, PyLong_FromLongLong(x));
            }
            t
        };
        let name = v.dtype.name();
        set(c"version", PyLong_FromUnsignedLong(v.version as _))?;
        set(c"data", PyLong_FromVoidPtr(v.data))?;
        set(c"ndim", PyLong_FromLong(v.ndim as _))?;
        set(c"shape", ints(v.shape()))?;
        set(c"strides", ints(v.strides()))?;
        set(c"dtype", PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as Py_ssize_t))?;
        set(c"dtype_code", PyLong_FromLong(v.dtype.code as _))?;
        set(c"dtype_bits", PyLong_FromLong(v.dtype.bits as _))?;
        set(c"dtype_lanes", PyLong_FromLong(v.dtype.lanes as _))?;
        set(c"itemsize", PyLong_FromSize_t(v.itemsize()))?;
        set(c"device", ints(&[v.device.device_type as i64, v.device.device_id as i64]))?;
        set(c"flags", PyLong_FromUnsignedLong(v.flags as _))?;
        for (k, bit) in [
            (c"readonly", abi::READONLY),
            (c"c_contiguous", abi::C_CONTIGUOUS),
            (c"f_contiguous", abi::F_CONTIGUOUS),
            (c"aligned", abi::ALIGNED),
            (c"byteswapped", abi::BYTESWAPPED),
        ] {
            set(k, PyBool_FromLong((v.flags & bit != 0) as _))?;
        }
        Ok(d.into_ptr())
    }
}

// ---- registration --------------------------------------------------------------

fn slot_defs(acquire: abi::AcquireFn, release: abi::ReleaseFn) -> [SlotDef; 2] {
    [
        SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: acquire as *const c_void },
        SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: release as *const c_void },
    ]
}

unsafe fn require_type(tp: *mut PyObject, func: &str) -> Result<(), ()> {
    // SAFETY: GIL held; tp is a live argument.
    if unsafe { PyType_Check(tp) } == 0 {
        let name = unsafe { util::type_name(tp) };
        return raise(util::type_error(), &format!("{func}() argument must be a type, not {name}"));
    }
    Ok(())
}

unsafe extern "C" fn py_register_buffer_type(_m: *mut PyObject, tp: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; runtime imported at module init.
        ret(unsafe {
            require_type(tp, "register_buffer_type")
                .and_then(|()| runtime::set_slots(tp, &slot_defs(buffer::buf_acquire, buffer::buf_release)))
                .map(|()| Py_NewRef(Py_None()))
        })
    })
}

/// `ndarray.__basicsize__` >= the mirror's, and the type is numpy's.
unsafe fn check_ndarray_type(tp: *mut PyObject) -> Result<(), ()> {
    // SAFETY: GIL held.
    unsafe {
        require_type(tp, "_register_numpy")?;
        // abi3t (PEP 803): PyObject is opaque and its size differs between
        // 3.15 and 3.15t, so the #[repr(C)] mirror cannot place the fields;
        // the buffer-protocol adapter serves ndarray instead.
        #[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
        return raise(util::type_error(), "the direct NumPy adapter is unavailable under abi3t (opaque PyObject)");
        #[allow(unreachable_code)]
        let attr = |name: &CStr| Owned::new(PyObject_GetAttrString(tp, name.as_ptr()));
        let module = attr(c"__module__")?;
        let qualname = attr(c"__qualname__")?;
        if util::str_of(module.0).as_deref() != Some("numpy") || util::str_of(qualname.0).as_deref() != Some("ndarray")
        {
            return raise(util::type_error(), "expected numpy.ndarray");
        }
        let basicsize = attr(c"__basicsize__")?;
        let n = PyLong_AsSsize_t(basicsize.0);
        if n < 0 || (n as usize) < numpy::NPY_ARRAY_BASICSIZE {
            return raise(
                util::type_error(),
                &format!(
                    "numpy.ndarray.__basicsize__ is {n}, smaller than NumPy 2's PyArrayObject_fields ({})",
                    numpy::NPY_ARRAY_BASICSIZE
                ),
            );
        }
        Ok(())
    }
}

unsafe extern "C" fn py_numpy_fields(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; the type checks precede any raw read.
        unsafe {
            if nargs_in("_numpy_fields", nargs, 2, 2).is_err() {
                return ptr::null_mut();
            }
            let (tp, arr) = (*args, *args.add(1));
            if check_ndarray_type(tp).is_err() {
                return ptr::null_mut();
            }
            if PyObject_TypeCheck(arr, tp.cast()) == 0 {
                return ret(raise(util::type_error(), "_numpy_fields(): not an ndarray"));
            }
            numpy::fields(arr)
        }
    })
}

unsafe extern "C" fn py_register_numpy(
    _m: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held.
        ret(unsafe {
            nargs_in("_register_numpy", nargs, 2, 2).and_then(|()| {
                let (tp, mode) = (*args, *args.add(1));
                let defs = match util::str_of(mode).as_deref() {
                    Some("direct") => {
                        check_ndarray_type(tp)?;
                        slot_defs(numpy::np_acquire, numpy::np_release)
                    }
                    Some("buffer") => {
                        require_type(tp, "_register_numpy")?;
                        slot_defs(buffer::buf_acquire, buffer::buf_release)
                    }
                    _ => return raise(util::value_error(), "_register_numpy(): mode must be 'direct' or 'buffer'"),
                };
                runtime::set_slots(tp, &defs).map(|()| Py_NewRef(Py_None()))
            })
        })
    })
}

unsafe extern "C" fn py_slot_addresses(_m: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held.
        unsafe {
            let pair = |a: abi::AcquireFn, r: abi::ReleaseFn| {
                let t = PyTuple_New(2);
                PyTuple_SetItem(t, 0, PyLong_FromVoidPtr(a as *mut c_void));
                PyTuple_SetItem(t, 1, PyLong_FromVoidPtr(r as *mut c_void));
                t
            };
            let d = PyDict_New();
            for (k, v) in [
                (c"numpy", pair(numpy::np_acquire, numpy::np_release)),
                (c"buffer", pair(buffer::buf_acquire, buffer::buf_release)),
            ] {
                PyDict_SetItemString(d, k.as_ptr(), v);
                Py_DECREF(v);
            }
            d
        }
    })
}

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

unsafe extern "C" fn py_set_threads(_m: *mut PyObject, n: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held.
        unsafe {
            let v = PyLong_AsLong(n);
            if v == -1 && !PyErr_Occurred().is_null() {
                return ptr::null_mut();
            }
            if v < 0 {
                return ret(raise(util::value_error(), "_set_threads(): n must be >= 0"));
            }
            par::set_threads(v as usize);
            Py_BuildValue(
                c"(nn)".as_ptr(),
                par::threads() as Py_ssize_t,
                par::WORKER_PARTS.load(core::sync::atomic::Ordering::Relaxed) as Py_ssize_t,
            )
        }
    })
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

// ---- view-cost benchmark --------------------------------------------------------

/// NumPy's `PyArrayInterface` (`__array_struct__` capsule).
#[repr(C)]
struct PyArrayInterface {
    two: c_int,
    nd: c_int,
    typekind: c_char,
    itemsize: c_int,
    flags: c_int,
    shape: *mut isize,
    strides: *mut isize,
    data: *mut c_void,
    descr: *mut PyObject,
}

/// DLPack's `DLTensor` (first member of `DLManagedTensor`).
#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: abi::DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

/// What a consumer reads from a view, whatever the protocol; folded into
/// one checksum so that the timing loop keeps every read.
#[derive(Default)]
struct Seen {
    data: usize,
    ndim: i64,
    shape0: i64,
    stride0: i64,
    code: u8,
}

impl Seen {
    #[inline(always)]
    fn fold(self) -> u64 {
        (self.data as u64)
            ^ (self.ndim as u64).rotate_left(8)
            ^ (self.shape0 as u64).rotate_left(16)
            ^ (self.stride0 as u64).rotate_left(24)
            ^ self.code as u64
    }
}

/// Parse an `__array_interface__` typestr such as "<f8" to a DLPack code.
fn typestr_code(s: &[u8]) -> u8 {
    match s.get(1) {
        Some(b'f') => abi::DL_FLOAT,
        Some(b'i') => abi::DL_INT,
        Some(b'u') => abi::DL_UINT,
        Some(b'b') => abi::DL_BOOL,
        Some(b'c') => abi::DL_COMPLEX,
        _ => 255,
    }
}

unsafe fn int_at(t: *mut PyObject, i: Py_ssize_t) -> i64 {
    // SAFETY: GIL held; t a tuple with > i items.
    unsafe { PyLong_AsLongLong(PyTuple_GetItem(t, i)) }
}

/// One view of `obj` through `method`, as a consumer would get it.
#[inline(always)]
unsafe fn one_view(method: &Method, obj: *mut PyObject, view: &mut ArrayView) -> Result<Seen, ()> {
    // SAFETY: GIL held; obj alive; names interned and alive.
    unsafe {
        match method {
            Method::Find => {
                let p = Provider::of(obj);
                Ok(Seen { data: p.map_or(0, |p| p.acquire as usize), ..Seen::default() })
            }
            Method::Slots | Method::SlotsCached(_) => {
                let p = match method {
                    Method::SlotsCached(p) => *p,
                    _ => match Provider::of(obj) {
                        Some(p) => p,
                        None => return Provider::of_or_raise(obj).map(|_| Seen::default()),
                    },
                };
                view.size = core::mem::size_of::<ArrayView>() as u32;
                if (p.acquire)(obj, 0, view) != 0 {
                    return Err(());
                }
                let seen = Seen {
                    data: view.data as usize,
                    ndim: view.ndim as i64,
                    shape0: *view.shape,
                    stride0: *view.strides,
                    code: view.dtype.code,
                };
                (p.release)(obj, view);
                Ok(seen)
            }
            Method::Buffer => {
                let mut b = Py_buffer::new();
                if PyObject_GetBuffer(obj, &mut b, PyBUF_RECORDS_RO) < 0 {
                    return Err(());
                }
                let fmt = if b.format.is_null() { b"B"[0] } else { *b.format as u8 };
                let seen = Seen {
                    data: b.buf as usize,
                    ndim: b.ndim as i64,
                    shape0: *b.shape as i64,
                    stride0: *b.strides as i64,
                    code: fmt,
                };
                PyBuffer_Release(&mut b);
                Ok(seen)
            }
            Method::ArrayStruct(name) => {
                let cap = Owned::new(PyObject_GetAttr(obj, *name))?;
                let s = PyCapsule_GetPointer(cap.0, ptr::null()).cast::<PyArrayInterface>();
                if s.is_null() {
                    return Err(());
                }
                let s = &*s;
                Ok(Seen {
                    data: s.data as usize,
                    ndim: s.nd as i64,
                    shape0: *s.shape as i64,
                    stride0: if s.strides.is_null() { s.itemsize as i64 } else { *s.strides as i64 },
                    code: s.typekind as u8,
                })
            }
            Method::DLPack(name) => {
                let argv = [obj];
                let cap = Owned::new(PyObject_VectorcallMethod(*name, argv.as_ptr(), 1, ptr::null_mut()))?;
                let t = PyCapsule_GetPointer(cap.0, c"dltensor".as_ptr()).cast::<DLTensor>();
                if t.is_null() {
                    return Err(());
                }
                let t = &*t;
                Ok(Seen {
                    data: t.data as usize + t.byte_offset as usize,
                    ndim: t.ndim as i64,
                    shape0: *t.shape,
                    stride0: if t.strides.is_null() { 1 } else { *t.strides },
                    code: t.dtype.code,
                })
                // Dropping the unconsumed capsule calls the tensor's deleter.
            }
            Method::ArrayInterface(names) => {
                let d = Owned::new(PyObject_GetAttr(obj, names[0]))?;
                let data = PyDict_GetItemWithError(d.0, names[1]);
                let shape = PyDict_GetItemWithError(d.0, names[2]);
                let strides = PyDict_GetItemWithError(d.0, names[3]);
                let typestr = PyDict_GetItemWithError(d.0, names[4]);
                if data.is_null() || shape.is_null() || typestr.is_null() {
                    if PyErr_Occurred().is_null() {
                        return raise(util::value_error(), "incomplete __array_interface__");
                    }
                    return Err(());
                }
                let mut dims = [0i64; 8];
                let nd = PyTuple_Size(shape).min(8);
                for k in 0..nd {
                    dims[k as usize] = int_at(shape, k);
                }
                let mut st = [0i64; 8];
                if !strides.is_null() && strides != Py_None() {
                    for k in 0..nd {
                        st[k as usize] = int_at(strides, k);
                    }
                }
                let addr = PyLong_AsVoidPtr(PyTuple_GetItem(data, 0)) as usize;
                let mut len: Py_ssize_t = 0;
                let ts = PyUnicode_AsUTF8AndSize(typestr, &mut len);
                if ts.is_null() {
                    return Err(());
                }
                let code = typestr_code(core::slice::from_raw_parts(ts.cast::<u8>(), len as usize));
                Ok(Seen { data: addr, ndim: nd as i64, shape0: dims[0], stride0: st[0], code })
            }
        }
    }
}

enum Method {
    Find,
    Slots,
    SlotsCached(Provider),
    Buffer,
    ArrayStruct(*mut PyObject),
    DLPack(*mut PyObject),
    ArrayInterface([*mut PyObject; 5]),
}

unsafe extern "C" fn py_bench_view_cost(
    _m: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; CPython passes nargs arguments.
        ret(unsafe {
            nargs_in("_bench_view_cost", nargs, 3, 3).and_then(|()| {
                let (obj, method, iters) = (*args, *args.add(1), *args.add(2));
                let n = PyLong_AsLongLong(iters);
                if n == -1 && !PyErr_Occurred().is_null() {
                    return Err(());
                }
                let n = n.max(1) as u64;
                let mut keep: Vec<Owned> = Vec::new();
                let mut intern = |s: &CStr| -> Result<*mut PyObject, ()> {
                    let o = Owned::new(PyUnicode_InternFromString(s.as_ptr()))?;
                    let p = o.0;
                    keep.push(o);
                    Ok(p)
                };
                let m = match util::str_of(method).as_deref() {
                    Some("find") => Method::Find,
                    Some("slots") => Method::Slots,
                    Some("slots_cached") => Method::SlotsCached(Provider::of_or_raise(obj)?),
                    Some("buffer") => Method::Buffer,
                    Some("array_struct") => Method::ArrayStruct(intern(c"__array_struct__")?),
                    Some("dlpack") => Method::DLPack(intern(c"__dlpack__")?),
                    Some("array_interface") => Method::ArrayInterface([
                        intern(c"__array_interface__")?,
                        intern(c"data")?,
                        intern(c"shape")?,
                        intern(c"strides")?,
                        intern(c"typestr")?,
                    ]),
                    _ => {
                        return raise(
                            util::value_error(),
                            "_bench_view_cost(): method must be one of 'find', 'slots', 'slots_cached', 'buffer', \
                             'array_struct', 'dlpack', 'array_interface'",
                        )
                    }
                };
                let mut view = ArrayView::new();
                // One untimed call: errors (e.g. no __dlpack__) surface here.
                let mut check = one_view(&m, obj, &mut view)?.fold();
                let t = Instant::now();
                for _ in 0..n {
                    check = check.wrapping_add(one_view(&m, black_box(obj), &mut view)?.fold());
                }
                let ns = t.elapsed().as_nanos() as f64 / n as f64;
                black_box(check);
                Owned::new(PyFloat_FromDouble(ns)).map(Owned::into_ptr)
            })
        })
    })
}

// ---- the module ----------------------------------------------------------------


/// Create the `_arrays` submodule and attach it to `core` as `_arrays`.
/// Returns 0, or -1 with an exception set. GIL held (module init).
pub fn add_submodule(core: *mut PyObject) -> c_int {
    guard(-1, || match create(core) {
        Ok(()) => 0,
        Err(()) => -1,
    })
}

fn create(core: *mut PyObject) -> Result<(), ()> {
    let methods = vec![
        py_method!(c"sum", PyCFunction, py_sum, METH_O,
            c"sum(x)\n--\n\nSum of all elements of any array.v1 provider (float64, float32: float; int64: int, wrapping).\n\
              Pairwise summation; the GIL is released for large arrays."),
        py_method!(c"dot", PyCFunctionFast, py_dot, METH_FASTCALL,
            c"dot(x, y)\n--\n\nSum of x * y over all elements (x @ y for 1-d); same shape and dtype required."),
        py_method!(c"axpy", PyCFunctionFast, py_axpy, METH_FASTCALL,
            c"axpy(a, x, y)\n--\n\ny += a * x in place (y needs a writable view); same shape and dtype required.\n\
              Overlapping x is read before y is written (as NumPy)."),
        py_method!(c"view_info", PyCFunctionFast, py_view_info, METH_FASTCALL,
            c"view_info(obj, request=0) -> dict\n--\n\nAcquire a view of obj through its array.v1 slots, describe it, release it."),
        py_method!(c"register_buffer_type", PyCFunction, py_register_buffer_type, METH_O,
            c"register_buffer_type(tp)\n--\n\nProvide array.v1 on a buffer-protocol type through the generic buffer adapter."),
        py_method!(c"_register_numpy", PyCFunctionFast, py_register_numpy, METH_FASTCALL,
            c"_register_numpy(ndarray, mode)\n--\n\nRegister the 'direct' (struct mirror) or 'buffer' adapter on numpy.ndarray."),
        py_method!(c"_numpy_fields", PyCFunctionFast, py_numpy_fields, METH_FASTCALL,
            c"_numpy_fields(ndarray, arr) -> tuple\n--\n\nWhat the NumPy struct mirror reads from arr (layout check)."),
        py_method!(c"_slot_addresses", PyCFunction, py_slot_addresses, METH_NOARGS,
            c"_slot_addresses() -> dict\n--\n\nAddresses of the adapters' acquire/release functions (tests)."),
        py_method!(c"_set_isa", PyCFunction, py_set_isa, METH_O,
            c"_set_isa(level) -> bool\n--\n\nForce the kernels' instruction set ('base', 'avx2', 'avx512', 'best'); False if unsupported."),
        py_method!(c"_isa", PyCFunction, py_isa, METH_NOARGS, c"_isa() -> str\n--\n\nThe kernels' instruction set in use."),
        py_method!(c"_set_threads", PyCFunction, py_set_threads, METH_O,
            c"_set_threads(n) -> (threads, worker_parts)\n--\n\nThreads for sum/dot/axpy on large inputs (0: automatic);\n\
              returns the count in use and how many parts pool workers have computed so far."),
        py_method!(c"_bench_view_cost", PyCFunctionFast, py_bench_view_cost, METH_FASTCALL,
            c"_bench_view_cost(obj, method, iterations) -> float\n--\n\nNanoseconds per view of obj, timed in a compiled loop.\n\
              method: 'slots' (find acquire+release, acquire, release), 'slots_cached', 'find', 'buffer'\n\
              (PyObject_GetBuffer + release), 'array_struct', 'dlpack', 'array_interface'."),
        PyMethodDef::zeroed(),
    ];
    // SAFETY: GIL held during module init.
    unsafe {
        runtime::import()?;
        let m = new_module(
            c"extensibletype.arrays",
            c"Duck-typed arrays over extensibletype slots (array.v1); see extensibletype.arrays.",
            methods,
        )?;
        let s = |v: &CStr| PyUnicode_FromString(v.as_ptr());
        util::add(m.0, c"KEY_ACQUIRE", s(abi::KEY_ACQUIRE))?;
        util::add(m.0, c"KEY_RELEASE", s(abi::KEY_RELEASE))?;
        util::add(m.0, c"ID_ACQUIRE", PyLong_FromUnsignedLongLong(abi::ID_ACQUIRE))?;
        util::add(m.0, c"ID_RELEASE", PyLong_FromUnsignedLongLong(abi::ID_RELEASE))?;
        util::add(m.0, c"VERSION", PyLong_FromLong(abi::VERSION as _))?;
        for (name, v) in [
            (c"READONLY", abi::READONLY as i64),
            (c"C_CONTIGUOUS", abi::C_CONTIGUOUS as i64),
            (c"F_CONTIGUOUS", abi::F_CONTIGUOUS as i64),
            (c"ALIGNED", abi::ALIGNED as i64),
            (c"BYTESWAPPED", abi::BYTESWAPPED as i64),
            (c"REQ_WRITABLE", abi::REQ_WRITABLE as i64),
            (c"REQ_C_CONTIGUOUS", abi::REQ_C_CONTIGUOUS as i64),
            (c"REQ_ANY_CONTIGUOUS", abi::REQ_ANY_CONTIGUOUS as i64),
            (c"NOGIL_MIN", NOGIL_MIN as i64),
            (c"PAR_MIN", par::PAR_MIN as i64),
            (c"NPY_ARRAY_BASICSIZE", numpy::NPY_ARRAY_BASICSIZE as i64),
        ] {
            util::add(m.0, name, PyLong_FromLongLong(v))?;
        }
        let (fields, size) = abi::layout();
        util::add(m.0, c"VIEW_SIZE", PyLong_FromSize_t(size))?;
        let layout = Owned::new(PyDict_New())?;
        for (name, off) in fields {
            let v = Owned::new(PyLong_FromSize_t(*off))?;
            let k = std::ffi::CString::new(*name).expect("no NUL");
            if PyDict_SetItemString(layout.0, k.as_ptr(), v.0) < 0 {
                return Err(());
            }
        }
        util::add(m.0, c"VIEW_LAYOUT", layout.into_ptr())?;
        #[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
        array_type::create_type(m.0)?;
        #[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
        crate::providers::dlpack::add_to_module(m.0)?;
        util::add(core, c"_arrays", Py_NewRef(m.0))
    }
}
