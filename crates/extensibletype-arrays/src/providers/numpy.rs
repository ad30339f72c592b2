//! `numpy.ndarray` as an `array.v1` provider, NumPy unchanged: a foreign
//! registration (`runtime::set_slots` on the ndarray type) whose acquire
//! reads the array struct directly through a `#[repr(C)]` mirror of NumPy
//! 2.x's `PyArrayObject_fields` and `PyArray_Descr` (the public prefix of
//! both, the same fields NumPy's own `PyArray_DATA`/`PyArray_DIMS`/...
//! macros read).
//!
//! The mirror is only used after `extensibletype.arrays` has checked it
//! against the installed NumPy on probe arrays (`fields()` below vs
//! `__array_interface__`, `.strides`, `.dtype`, `.flags`), and only for
//! NumPy >= 2; otherwise `arrays.py` registers the buffer-protocol adapter
//! on ndarray instead.
//!
//! Shape and strides are copied into the view's scratch (a 1-d copy is
//! two stores): NumPy frees and replaces the dims block on `a.shape = ...`,
//! so pointing into the array would not be stable for the view's lifetime.
//! An exported view holds a reference to the array (`view.owner`), so
//! `ndarray.resize` refuses (its reference-count check) while it lives.
//!
//! The mirrors start after the object header (`PyObject`), which they do
//! not embed: under abi3t (PEP 803) `PyObject` is opaque and its size
//! differs between 3.15 and 3.15t, so [`header_size`] is measured there
//! (`object.__basicsize__`, at module init); elsewhere it is the
//! compile-time `size_of::<PyObject>()`.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;

use pyo3_ffi::*;

use crate::abi::{self, ArrayView, DLDataType};
use crate::runtime::pyutil::new_tuple;
use crate::util::{self, guard, raise, PyErrSet};

/// NumPy 2.x `PyArrayObject_fields` (numpy/_core/include/numpy/ndarraytypes.h),
/// after the object header, up to `flags` (the fields read here).
#[repr(C)]
pub(crate) struct NpyArrayFields {
    data: *mut c_char,
    nd: c_int,
    dimensions: *mut isize,
    strides: *mut isize,
    base: *mut PyObject,
    descr: *mut PyObject,
    flags: c_int,
}

/// NumPy 2.x `PyArray_Descr` (public prefix, after the object header).
#[repr(C)]
pub(crate) struct NpyDescr {
    typeobj: *mut PyTypeObject,
    kind: c_char,
    type_: c_char,
    byteorder: c_char,
    _former_flags: c_char,
    type_num: c_int,
    flags: u64,
    elsize: isize,
    alignment: isize,
}

/// `sizeof(PyArrayObject_fields)` in NumPy 2.x (the header, this prefix
/// plus weakreflist, _buffer_info, mem_handler): `ndarray.__basicsize__`
/// must be at least this.
pub(crate) fn npy_array_basicsize() -> usize {
    header_size() + core::mem::size_of::<NpyArrayFields>() + 3 * core::mem::size_of::<*mut c_void>()
}

/// `sizeof(PyObject)` of the running interpreter (abi3t: measured by
/// [`settle_header_size`]; 0 before, which no ndarray passes).
#[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
static HEADER_SIZE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Bytes of the object header, where the mirrors start.
#[inline(always)]
fn header_size() -> usize {
    #[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
    return core::mem::size_of::<PyObject>();
    #[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
    return HEADER_SIZE.load(core::sync::atomic::Ordering::Relaxed);
}

/// abi3t: measure the object header (`object.__basicsize__`, which is
/// `sizeof(PyObject)`) once, at module init, before any registration can
/// use the mirror. Elsewhere nothing to do.
pub(crate) fn settle_header_size() -> Result<(), PyErrSet> {
    #[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
    // SAFETY: GIL held (module init); PyBaseObject_Type is a live static type.
    unsafe {
        let size = util::Owned::new(PyObject_GetAttrString(
            ptr::addr_of_mut!(PyBaseObject_Type).cast(),
            c"__basicsize__".as_ptr(),
        ))?;
        let n = PyLong_AsSsize_t(size.0);
        if n == -1 && !PyErr_Occurred().is_null() {
            return Err(PyErrSet);
        }
        if n < 2 * core::mem::size_of::<*mut c_void>() as Py_ssize_t || n % 8 != 0 {
            return raise(util::value_error(), &format!("unexpected object.__basicsize__ {n}"));
        }
        HEADER_SIZE.store(n as usize, core::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// The mirror of ndarray `obj`.
///
/// # Safety
/// `obj` is a live ndarray whose layout was verified (see the module doc).
#[inline(always)]
unsafe fn array_fields<'a>(obj: *mut PyObject) -> &'a NpyArrayFields {
    // SAFETY: the caller's contract: the fields follow the header.
    unsafe { &*obj.cast::<u8>().add(header_size()).cast::<NpyArrayFields>() }
}

/// The mirror of an ndarray's (non-NULL) descr.
///
/// # Safety
/// `descr` is the live descr of a verified ndarray.
#[inline(always)]
unsafe fn descr_fields<'a>(descr: *mut PyObject) -> &'a NpyDescr {
    // SAFETY: the caller's contract: the fields follow the header.
    unsafe { &*descr.cast::<u8>().add(header_size()).cast::<NpyDescr>() }
}

const NPY_ARRAY_C_CONTIGUOUS: c_int = 0x0001;
const NPY_ARRAY_F_CONTIGUOUS: c_int = 0x0002;
const NPY_ARRAY_ALIGNED: c_int = 0x0100;
const NPY_ARRAY_WRITEABLE: c_int = 0x0400;
const NPY_LONGDOUBLE: c_int = 13;
const NPY_CLONGDOUBLE: c_int = 16;
const NPY_MAXDIMS: c_int = 64;

/// DLPack type code by NumPy kind character (255: none). A table rather
/// than a `match`, which compiles to an indirect jump on the hot path.
static KIND_CODE: [u8; 256] = {
    let mut t = [255u8; 256];
    t[b'f' as usize] = abi::DL_FLOAT;
    t[b'i' as usize] = abi::DL_INT;
    t[b'u' as usize] = abi::DL_UINT;
    t[b'b' as usize] = abi::DL_BOOL;
    t[b'c' as usize] = abi::DL_COMPLEX;
    t
};

/// The byte-order character of non-native data ('>' on little-endian).
const SWAPPED: u8 = if cfg!(target_endian = "little") { b'>' } else { b'<' };

/// The DLPack type of a NumPy descr and whether it is byte-swapped, or None
/// (object, strings, void, datetimes, long double, user dtypes).
#[inline(always)]
fn dl_of(d: &NpyDescr) -> Option<(DLDataType, bool)> {
    let code = KIND_CODE[d.kind as u8 as usize];
    let elsize = d.elsize;
    if code == 255 || !(1..=16).contains(&elsize) || d.type_num == NPY_LONGDOUBLE || d.type_num == NPY_CLONGDOUBLE {
        return None;
    }
    Some((DLDataType::new(code, (elsize * 8) as u8), d.byteorder as u8 == SWAPPED))
}

/// `extensibletype.array.v1:acquire` for `numpy.ndarray` (and subclasses).
pub(crate) unsafe extern "C" fn np_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: registered on numpy.ndarray only after the mirror was
        // verified, so obj is an ndarray (or subclass) with this layout; the
        // caller holds a reference and the GIL, and passes its view.
        match unsafe { acquire_impl(obj, request, &mut *view) } {
            Ok(()) => 0,
            Err(PyErrSet) => -1,
        }
    })
}

/// See [`np_acquire`].
///
/// # Safety
/// GIL held; `obj` a live ndarray whose layout was verified (module doc);
/// `v` the consumer's view.
#[inline(always)]
unsafe fn acquire_impl(obj: *mut PyObject, request: c_int, v: &mut ArrayView) -> Result<(), PyErrSet> {
    if (v.size as usize) < core::mem::size_of::<ArrayView>() {
        return raise(util::value_error(), "array.v1 acquire: view struct too small (size field not set?)");
    }
    // SAFETY: obj is a live, verified ndarray (this function's contract).
    let a = unsafe { array_fields(obj) };
    // SAFETY: a verified ndarray's descr is live and verified too.
    let d = unsafe { descr_fields(a.descr) };
    let Some((dtype, swapped)) = dl_of(d) else {
        return raise(
            util::type_error(),
            &format!("numpy dtype '{}' has no DLPack equivalent (array.v1 needs a numeric type)", d.type_ as u8 as char),
        );
    };
    let flags = view_flags(a.flags, swapped);
    if request != 0 {
        if request & !abi::REQ_ALL != 0 {
            return raise(util::buffer_error(), &format!("numpy.ndarray: unsupported array.v1 request flags {request:#x}"));
        }
        if let Err(why) = abi::check_request(request, flags) {
            return raise(util::buffer_error(), &format!("numpy.ndarray: {why}"));
        }
    }
    let nd = a.nd;
    if !(0..=NPY_MAXDIMS).contains(&nd) {
        return raise(util::value_error(), "numpy.ndarray: invalid ndim");
    }
    v.version = abi::VERSION;
    v.data = a.data.cast();
    v.ndim = nd;
    v.flags = flags;
    v.dtype = dtype;
    v.reserved = 0;
    v.device = abi::DLDevice::CPU;
    let n = nd as usize;
    if n <= abi::SCRATCH / 2 {
        // Copy (see the module doc); npy_intp is i64 here.
        for k in 0..n {
            // SAFETY: k < nd: a live ndarray's dimensions and strides hold
            // nd values (they may be NULL only for nd == 0).
            let (len, stride) = unsafe { (*a.dimensions.add(k), *a.strides.add(k)) };
            v.scratch[k] = len as i64;
            v.scratch[n + k] = stride as i64;
        }
        v.shape = v.scratch.as_mut_ptr();
        v.strides = v.scratch.as_mut_ptr().wrapping_add(n);
        v.internal[0] = ptr::null_mut();
    } else {
        // SAFETY: nd > 0 values each, alive while the caller's reference
        // (then ours, `owner`) holds the array.
        let (dims, strides) = unsafe { (core::slice::from_raw_parts(a.dimensions, n), core::slice::from_raw_parts(a.strides, n)) };
        let mut block = Vec::with_capacity(2 * n);
        block.extend(dims.iter().map(|&x| x as i64));
        block.extend(strides.iter().map(|&x| x as i64));
        // Freed by np_release (a boxed slice of 2 * ndim values).
        let block = Box::into_raw(block.into_boxed_slice()).cast::<i64>();
        v.shape = block;
        v.strides = block.wrapping_add(n);
        v.internal[0] = block.cast();
    }
    // Pin the array (NumPy's resize refuses while others hold it).
    // SAFETY: GIL held, obj live; np_release drops this reference.
    v.owner = unsafe { Py_NewRef(obj) };
    Ok(())
}

/// array.v1 flags of an ndarray with NumPy flags `nf`.
#[inline(always)]
fn view_flags(nf: c_int, swapped: bool) -> u32 {
    let mut flags = if nf & NPY_ARRAY_WRITEABLE == 0 { abi::READONLY } else { 0 };
    if nf & NPY_ARRAY_C_CONTIGUOUS != 0 {
        flags |= abi::C_CONTIGUOUS;
    }
    if nf & NPY_ARRAY_F_CONTIGUOUS != 0 {
        flags |= abi::F_CONTIGUOUS;
    }
    if nf & NPY_ARRAY_ALIGNED != 0 {
        flags |= abi::ALIGNED;
    }
    if swapped {
        flags |= abi::BYTESWAPPED;
    }
    flags
}

/// `extensibletype.array.v1:release` for `numpy.ndarray`.
pub(crate) unsafe extern "C" fn np_release(_obj: *mut PyObject, view: *mut ArrayView) {
    // SAFETY: paired with a successful np_acquire on this view: owner is the
    // reference it took, internal[0] the heap dims block (ndim > 8) or NULL.
    unsafe {
        let v = &mut *view;
        let block = v.internal[0].cast::<i64>();
        if !block.is_null() {
            let n = 2 * v.ndim as usize;
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(block, n)));
            v.internal[0] = ptr::null_mut();
        }
        let owner = core::mem::replace(&mut v.owner, ptr::null_mut());
        if !owner.is_null() {
            Py_DECREF(owner);
        }
    }
}

/// What the mirror reads from `arr` (for the registration check):
/// `(data, nd, shape, strides, descr_address, kind, char, byteorder,
/// type_num, elsize, flags)`.
///
/// # Safety
/// GIL held; `arr` must be an instance of `ndarray_type`, and that type's
/// `__basicsize__` at least [`npy_array_basicsize`] (checked by the caller).
pub(crate) unsafe fn fields(arr: *mut PyObject) -> *mut PyObject {
    // SAFETY: the caller's contract; nd is bounded before the dims are read.
    unsafe {
        let a = array_fields(arr);
        if !(0..=NPY_MAXDIMS).contains(&a.nd) || a.descr.is_null() {
            let _ = raise::<()>(util::value_error(), "unexpected ndarray layout (nd or descr)");
            return ptr::null_mut();
        }
        let n = a.nd as usize;
        let ints = |p: *const isize| -> *mut PyObject {
            // NumPy leaves `dimensions`/`strides` NULL for a 0-d array (nd 0).
            new_tuple((0..n).map(|k| PyLong_FromSsize_t(*p.add(k))))
        };
        let d = descr_fields(a.descr);
        let ch = |c: c_char| PyUnicode_FromStringAndSize(ptr::addr_of!(c), 1);
        let items = [
            PyLong_FromVoidPtr(a.data.cast()),
            PyLong_FromLong(a.nd as _),
            ints(a.dimensions),
            ints(a.strides),
            PyLong_FromVoidPtr(a.descr.cast()),
            ch(d.kind),
            ch(d.type_),
            ch(d.byteorder),
            PyLong_FromLong(d.type_num as _),
            PyLong_FromSsize_t(d.elsize),
            PyLong_FromLong(a.flags as _),
        ];
        new_tuple(items)
    }
}
