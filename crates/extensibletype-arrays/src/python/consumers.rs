//! `sum`, `dot`, `axpy` and `view_info`: the consumers' Python entry points
//! (argument checks, one view per argument, GIL released for large inputs;
//! the loops are in `crate::consumers`).

use core::ffi::{c_int, CStr};
use core::ptr;

use pyo3_ffi::*;

use super::nargs_in;
use crate::abi::{self, with_view, ArrayView, DLDataType};
use crate::consumers::kernels::{self, Elem};
use crate::consumers::nd::Nd;
use crate::consumers::par;
use crate::runtime::pyutil::py_method;
use crate::util::{self, guard, prefix_error, raise, ret, NoGil, Owned, PyErrSet};

/// Element count from which the kernels release the GIL (below it a
/// release/re-acquire costs more than the loop).
pub(super) const NOGIL_MIN: usize = 4096;

/// The element types the kernels support.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    F64,
    F32,
    I64,
}

/// The kernel element type of a view, or TypeError.
fn kind_of(v: &ArrayView, func: &str, arg: &str) -> Result<Kind, PyErrSet> {
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
    f: impl FnOnce(&ArrayView) -> Result<R, PyErrSet>,
) -> Result<R, PyErrSet> {
    // SAFETY: GIL held; obj is an argument of the running call (alive).
    match unsafe { with_view(obj, request, f) } {
        Ok(r) => r,
        Err(_) => {
            prefix_error(&format!("{func}: {arg}"));
            Err(PyErrSet)
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
    fn into_py(self) -> Result<*mut PyObject, PyErrSet> {
        // SAFETY: GIL held (the views are released, the GIL is back).
        let out = Owned::new(unsafe {
            match self {
                Out::F(x) => PyFloat_FromDouble(x),
                Out::I(x) => PyLong_FromLongLong(x),
            }
        })?;
        Ok(out.into_ptr())
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

fn same_kind_and_shape(func: &str, vx: &ArrayView, vy: &ArrayView) -> Result<Kind, PyErrSet> {
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

fn float_arg(a: *mut PyObject) -> Result<f64, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        let v = PyFloat_AsDouble(a);
        if v == -1.0 && !PyErr_Occurred().is_null() {
            prefix_error("axpy(): a");
            return Err(PyErrSet);
        }
        Ok(v)
    }
}

fn int_arg(a: *mut PyObject) -> Result<i64, PyErrSet> {
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
            return Err(PyErrSet);
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
                with_view(obj, request, info_dict)?
            })
        })
    })
}

/// A request-flags argument: a non-negative int that fits the ABI's C `int`
/// (never truncated: `2**32 + 1` is refused, not taken as `REQ_WRITABLE`).
/// Unknown bits inside that range go to the provider, which refuses them
/// with `BufferError` (the array.v1 contract).
unsafe fn request_flags(obj: *mut PyObject, func: &str) -> Result<c_int, PyErrSet> {
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
            return Err(PyErrSet);
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

fn info_dict(v: &ArrayView) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: GIL held by every caller.
    let d = Owned::new(unsafe { PyDict_New() })?;
    let set = |k: &CStr, val: *mut PyObject| -> Result<(), PyErrSet> {
        let val = Owned::new(val)?;
        // SAFETY: GIL held; d is a dict, val owned (the dict takes its own reference).
        if unsafe { PyDict_SetItemString(d.0, k.as_ptr(), val.0) } < 0 {
            return Err(PyErrSet);
        }
        Ok(())
    };
    let ints = |xs: &[i64]| -> *mut PyObject {
        // SAFETY: GIL held; new_tuple takes every new int (NULL: raised).
        unsafe { crate::runtime::pyutil::new_tuple(xs.iter().map(|&x| PyLong_FromLongLong(x))) }
    };
    let name = v.dtype.name();
    // SAFETY: GIL held; each new object goes to `set`, which owns it (NULL: raised).
    unsafe {
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
    }
    for (k, bit) in [
        (c"readonly", abi::READONLY),
        (c"c_contiguous", abi::C_CONTIGUOUS),
        (c"f_contiguous", abi::F_CONTIGUOUS),
        (c"aligned", abi::ALIGNED),
        (c"byteswapped", abi::BYTESWAPPED),
    ] {
        // SAFETY: GIL held.
        set(k, unsafe { PyBool_FromLong((v.flags & bit != 0) as _) })?;
    }
    Ok(d.into_ptr())
}

/// The consumers' method table entries.
pub(super) fn methods() -> Vec<PyMethodDef> {
    vec![
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
    ]
}
