//! `_bench_view_cost(obj, method, iterations)`: nanoseconds per view of
//! `obj` through array.v1 or another protocol, timed in a compiled loop
//! (examples/arrays_demo.py). Carries its own mirrors of NumPy's
//! `PyArrayInterface` and DLPack's `DLTensor`, for this benchmark only.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;
use std::hint::black_box;
use std::time::Instant;

use pyo3_ffi::*;

use crate::abi::{self, ArrayView, DLDataType, Provider};
use crate::python::nargs_in;
use crate::util::{self, guard, raise, ret, Owned, PyErrSet};

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

/// Item `i` of the tuple `t` as an `i64` (-1 with an exception set).
///
/// # Safety
/// GIL held; `t` is a tuple with more than `i` items.
unsafe fn int_at(t: *mut PyObject, i: Py_ssize_t) -> i64 {
    // SAFETY: GIL held; t a tuple with > i items.
    unsafe { PyLong_AsLongLong(PyTuple_GetItem(t, i)) }
}

/// One view of `obj` through `method`, as a consumer would get it.
///
/// # Safety
/// GIL held; `obj` is live; the names in `method` are interned and alive;
/// `view` is this call's scratch view.
#[inline(always)]
unsafe fn one_view(method: &Method, obj: *mut PyObject, view: &mut ArrayView) -> Result<Seen, PyErrSet> {
    match method {
        Method::Find => {
            // SAFETY: GIL held; obj is live.
            let p = unsafe { Provider::of(obj) };
            Ok(Seen { data: p.map_or(0, |p| p.acquire as usize), ..Seen::default() })
        }
        Method::Slots | Method::SlotsCached(_) => {
            let p = match method {
                Method::SlotsCached(p) => *p,
                // SAFETY: GIL held; obj is live.
                _ => match unsafe { Provider::of(obj) } {
                    Some(p) => p,
                    // SAFETY: GIL held; obj is live.
                    None => return unsafe { Provider::of_or_raise(obj) }.map(|_| Seen::default()),
                },
            };
            view.size = core::mem::size_of::<ArrayView>() as u32;
            // SAFETY: GIL held; p is obj's provider (found on type(obj), or
            // of_or_raise'd for this obj); a filled view has ndim >= 1 here
            // (the bench views 1-d arrays) and is released once.
            unsafe {
                if (p.acquire)(obj, 0, view) != 0 {
                    return Err(PyErrSet);
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
        }
        // SAFETY: GIL held; obj is live; a filled buffer (1-d here) is
        // released once.
        Method::Buffer => unsafe {
            let mut b = Py_buffer::new();
            if PyObject_GetBuffer(obj, &mut b, PyBUF_RECORDS_RO) < 0 {
                return Err(PyErrSet);
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
        },
        // SAFETY: GIL held; obj is live, name an interned str; the capsule
        // (kept alive by `cap`) holds a PyArrayInterface with nd >= 1.
        Method::ArrayStruct(name) => unsafe {
            let cap = Owned::new(PyObject_GetAttr(obj, *name))?;
            let s = PyCapsule_GetPointer(cap.0, ptr::null()).cast::<PyArrayInterface>();
            if s.is_null() {
                return Err(PyErrSet);
            }
            let s = &*s;
            Ok(Seen {
                data: s.data as usize,
                ndim: s.nd as i64,
                shape0: *s.shape as i64,
                stride0: if s.strides.is_null() { s.itemsize as i64 } else { *s.strides as i64 },
                code: s.typekind as u8,
            })
        },
        // SAFETY: GIL held; obj is live, name an interned str; the capsule
        // (kept alive by `cap`) holds a DLManagedTensor with ndim >= 1.
        Method::DLPack(name) => unsafe {
            let argv = [obj];
            let cap = Owned::new(PyObject_VectorcallMethod(*name, argv.as_ptr(), 1, ptr::null_mut()))?;
            let t = PyCapsule_GetPointer(cap.0, c"dltensor".as_ptr()).cast::<DLTensor>();
            if t.is_null() {
                return Err(PyErrSet);
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
        },
        Method::ArrayInterface(names) => {
            // SAFETY: GIL held; obj is live, names interned strs; the dict's
            // items are borrowed while `d` lives; shape and strides are
            // tuples of at least `nd` items (NumPy's interface).
            unsafe {
                let d = Owned::new(PyObject_GetAttr(obj, names[0]))?;
                let data = PyDict_GetItemWithError(d.0, names[1]);
                let shape = PyDict_GetItemWithError(d.0, names[2]);
                let strides = PyDict_GetItemWithError(d.0, names[3]);
                let typestr = PyDict_GetItemWithError(d.0, names[4]);
                if data.is_null() || shape.is_null() || typestr.is_null() {
                    if PyErr_Occurred().is_null() {
                        return raise(util::value_error(), "incomplete __array_interface__");
                    }
                    return Err(PyErrSet);
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
                    return Err(PyErrSet);
                }
                let code = typestr_code(core::slice::from_raw_parts(ts.cast::<u8>(), len as usize));
                Ok(Seen { data: addr, ndim: nd as i64, shape0: dims[0], stride0: st[0], code })
            }
        }
    }
}

/// How `_bench_view_cost` views the object, with the names it needs.
enum Method {
    Find,
    Slots,
    SlotsCached(Provider),
    Buffer,
    ArrayStruct(*mut PyObject),
    DLPack(*mut PyObject),
    ArrayInterface([*mut PyObject; 5]),
}

/// The `method` argument of `_bench_view_cost`, checked without Python.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MethodName {
    Find,
    Slots,
    SlotsCached,
    Buffer,
    ArrayStruct,
    DLPack,
    ArrayInterface,
}

impl MethodName {
    /// The method named `name`, or `None`.
    fn parse(name: &str) -> Option<MethodName> {
        Some(match name {
            "find" => MethodName::Find,
            "slots" => MethodName::Slots,
            "slots_cached" => MethodName::SlotsCached,
            "buffer" => MethodName::Buffer,
            "array_struct" => MethodName::ArrayStruct,
            "dlpack" => MethodName::DLPack,
            "array_interface" => MethodName::ArrayInterface,
            _ => return None,
        })
    }
}

pub(super) unsafe extern "C" fn py_bench_view_cost(
    _m: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        ret(nargs_in("_bench_view_cost", nargs, 3, 3).and_then(|()| {
            // SAFETY: CPython passes nargs (3, checked) live arguments.
            let (obj, method, iters) = unsafe { (*args, *args.add(1), *args.add(2)) };
            // SAFETY: GIL held; iters is live.
            let n = unsafe { PyLong_AsLongLong(iters) };
            // SAFETY: GIL held.
            if n == -1 && unsafe { !PyErr_Occurred().is_null() } {
                return Err(PyErrSet);
            }
            let n = n.max(1) as u64;
            let mut keep: Vec<Owned> = Vec::new();
            let mut intern = |s: &CStr| -> Result<*mut PyObject, PyErrSet> {
                // SAFETY: GIL held; s is NUL-terminated.
                let o = Owned::new(unsafe { PyUnicode_InternFromString(s.as_ptr()) })?;
                let p = o.0;
                keep.push(o);
                Ok(p)
            };
            let m = match util::str_of(method).as_deref().and_then(MethodName::parse) {
                Some(MethodName::Find) => Method::Find,
                Some(MethodName::Slots) => Method::Slots,
                // SAFETY: GIL held; obj is live.
                Some(MethodName::SlotsCached) => Method::SlotsCached(unsafe { Provider::of_or_raise(obj) }?),
                Some(MethodName::Buffer) => Method::Buffer,
                Some(MethodName::ArrayStruct) => Method::ArrayStruct(intern(c"__array_struct__")?),
                Some(MethodName::DLPack) => Method::DLPack(intern(c"__dlpack__")?),
                Some(MethodName::ArrayInterface) => Method::ArrayInterface([
                    intern(c"__array_interface__")?,
                    intern(c"data")?,
                    intern(c"shape")?,
                    intern(c"strides")?,
                    intern(c"typestr")?,
                ]),
                None => {
                    return raise(
                        util::value_error(),
                        "_bench_view_cost(): method must be one of 'find', 'slots', 'slots_cached', 'buffer', \
                         'array_struct', 'dlpack', 'array_interface'",
                    )
                }
            };
            let mut view = ArrayView::new();
            // SAFETY: GIL held; obj is live (an argument) and m's names are
            // kept alive by `keep` until the end of this closure.
            unsafe {
                // One untimed call: errors (e.g. no __dlpack__) surface here.
                let mut check = one_view(&m, obj, &mut view)?.fold();
                let t = Instant::now();
                for _ in 0..n {
                    check = check.wrapping_add(one_view(&m, black_box(obj), &mut view)?.fold());
                }
                let ns = t.elapsed().as_nanos() as f64 / n as f64;
                black_box(check);
                Ok(Owned::new(PyFloat_FromDouble(ns))?.into_ptr())
            }
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names() {
        assert_eq!(MethodName::parse("find"), Some(MethodName::Find));
        assert_eq!(MethodName::parse("slots_cached"), Some(MethodName::SlotsCached));
        assert_eq!(MethodName::parse("array_interface"), Some(MethodName::ArrayInterface));
        assert_eq!(MethodName::parse("dlpack"), Some(MethodName::DLPack));
        assert_eq!(MethodName::parse("DLPack"), None);
        assert_eq!(MethodName::parse(""), None);
    }

    #[test]
    fn typestr_codes() {
        assert_eq!(typestr_code(b"<f8"), abi::DL_FLOAT);
        assert_eq!(typestr_code(b"|b1"), abi::DL_BOOL);
        assert_eq!(typestr_code(b">u2"), abi::DL_UINT);
        assert_eq!(typestr_code(b"<c16"), abi::DL_COMPLEX);
        assert_eq!(typestr_code(b"<i4"), abi::DL_INT);
        assert_eq!(typestr_code(b"<M8"), 255);
        assert_eq!(typestr_code(b"<"), 255);
    }
}
