//! `extensibletype.arrays.Array`: a zero-filled, C-contiguous n-d array
//! owned by Rust, created with the `ExtensibleType` metaclass
//! (`runtime::type_from_spec`) and providing `array.v1` plus the buffer
//! protocol on the same memory.
//!
//! Lifetime rule (the interface's contract, as bytearray's for buffers):
//! while a view or a buffer is exported (`exports > 0`), `resize` raises
//! `BufferError`, so `data` and the shape/strides block never move. With
//! the GIL, `exports` is a plain counter. On free-threaded builds it is
//! atomic and exports stay lock-free: `resize` runs in a critical section
//! on the object and claims it with a compare-and-swap `0 -> RESIZING`
//! (negative), which an export's `fetch_add` detects (it then backs off and
//! waits for the critical section); the other methods that read `data` or
//! the dims block (indexing, `shape`, `tolist`, ...) run in the critical
//! section too.
//!
//! Instance data: [`ArrayData`], which embeds no `PyObject` header. On
//! CPython 3.12+ (also the abi3 and abi3t wheels) it is PEP 697 type data
//! (the spec's basicsize is `-size_of::<ArrayData>()`), so the same code
//! serves abi3t (PEP 803), where `PyObject` is opaque and its size differs
//! between 3.15 and 3.15t; on 3.11 it follows the header. Only
//! [`data_ptr`] knows where it is.
//!
//! Files: this one holds the instance data (`ArrayData`, `DType`, the data
//! and dims blocks); `exports.rs` the array.v1 and buffer-protocol exports;
//! `methods.rs` indexing, methods and getters; `type_object.rs` `tp_new`,
//! dealloc and the type's creation.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};
use std::alloc::{alloc_zeroed, dealloc, Layout};

use pyo3_ffi::*;

use crate::abi::{self, ArrayView, DLDataType};
use crate::util::{self, guard, locked, raise, ret, Owned, PyErrSet};
use crate::runtime::pyutil::{keep_forever, py_method};
use crate::runtime::{self, SlotDef};

mod exports;
mod methods;
mod type_object;

use exports::*;
use methods::*;
pub(crate) use type_object::create_type;

/// Most dimensions an Array may have (NumPy 2's limit).
pub(crate) const MAX_NDIM: usize = 64;
/// Alignment of the data block (a cache line: SIMD loads never split one).
const DATA_ALIGN: usize = 64;

/// Element types of `Array`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum DType {
    F64,
    F32,
    I64,
}

impl DType {
    fn parse(name: &str) -> Option<DType> {
        Some(match name {
            "float64" | "f8" | "d" | "<f8" | "=f8" | "double" | "float" => DType::F64,
            "float32" | "f4" | "f" | "<f4" | "=f4" | "single" => DType::F32,
            "int64" | "i8" | "q" | "<i8" | "=i8" | "int" => DType::I64,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::I64 => "int64",
        }
    }
    pub fn itemsize(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }
    fn dl(self) -> DLDataType {
        match self {
            DType::F64 => DLDataType::F64,
            DType::F32 => DLDataType::F32,
            DType::I64 => DLDataType::I64,
        }
    }
    /// struct-module format for the buffer protocol (native).
    fn format(self) -> *mut c_char {
        let f: &'static core::ffi::CStr = match self {
            DType::F64 => c"d",
            DType::F32 => c"f",
            DType::I64 => c"q",
        };
        f.as_ptr().cast_mut()
    }
}

/// An Array's instance data (see the module doc for where it lives).
#[repr(C)]
pub(crate) struct ArrayData {
    /// DATA_ALIGN-aligned, `alloc_bytes` long (never NULL once initialised).
    data: *mut u8,
    alloc_bytes: usize,
    /// `3 * ndim` i64: the shape, the byte strides, then the element
    /// strides (for DLPack's non-owning fill; NULL when ndim == 0).
    dims: *mut i64,
    ndim: i32,
    dtype: DType,
    /// View flags (`abi::C_CONTIGUOUS | ...`), fixed by shape.
    flags: u32,
    /// Number of elements.
    size: usize,
    /// Views + buffers currently exported.
    exports: AtomicIsize,
}

impl ArrayData {
    fn shape(&self) -> &[i64] {
        if self.ndim == 0 {
            return &[];
        }
        // SAFETY: dims holds 3*ndim values while the object lives.
        unsafe { core::slice::from_raw_parts(self.dims, self.ndim as usize) }
    }
    fn strides(&self) -> &[i64] {
        if self.ndim == 0 {
            return &[];
        }
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts(self.dims.add(self.ndim as usize), self.ndim as usize) }
    }
    fn nbytes(&self) -> usize {
        self.size * self.dtype.itemsize()
    }

    /// Pin the memory for an export (acquire, `bf_getbuffer`, `fill`): until
    /// the matching [`unpin`](Self::unpin), `resize` refuses.
    ///
    /// With the GIL every access is serialized: a plain load and store.
    #[cfg(not(Py_GIL_DISABLED))]
    #[inline(always)]
    fn pin(&self, _obj: *mut PyObject) {
        self.exports.store(self.exports.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Free-threaded: lock-free (no critical section on the hot path). A
    /// negative count means a resize holds the array ([`RESIZING`]); then
    /// undo, wait for the resize by entering the object's critical section
    /// (which it holds), and retry. The acquire ordering makes the resize's
    /// writes of `data`/`dims` visible before they are read.
    #[cfg(Py_GIL_DISABLED)]
    #[inline(always)]
    fn pin(&self, obj: *mut PyObject) {
        while self.exports.fetch_add(1, Ordering::AcqRel) < 0 {
            self.exports.fetch_sub(1, Ordering::AcqRel);
            locked(obj, || ());
        }
    }

    /// End an export.
    #[inline(always)]
    fn unpin(&self) {
        #[cfg(not(Py_GIL_DISABLED))]
        self.exports.store(self.exports.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        #[cfg(Py_GIL_DISABLED)]
        self.exports.fetch_sub(1, Ordering::Release);
    }

    /// Claim the array for a resize (inside its critical section): false
    /// while anything is exported.
    fn claim_for_resize(&self) -> bool {
        #[cfg(not(Py_GIL_DISABLED))]
        return self.exports.load(Ordering::Relaxed) == 0;
        #[cfg(Py_GIL_DISABLED)]
        return self.exports.compare_exchange(0, RESIZING, Ordering::Acquire, Ordering::Relaxed).is_ok();
    }

    /// End a resize started by a successful [`claim_for_resize`](Self::claim_for_resize).
    fn end_resize(&self) {
        #[cfg(Py_GIL_DISABLED)]
        self.exports.fetch_sub(RESIZING, Ordering::Release);
    }

    /// Exports outstanding (0 while resizing).
    fn exported(&self) -> isize {
        self.exports.load(Ordering::Acquire).max(0)
    }
}

/// CPython 3.11 (no PEP 697): the data follows the object header.
#[cfg(not(Py_3_12))]
#[repr(C)]
struct Layout311 {
    ob_base: PyObject,
    data: ArrayData,
}

/// The spec's `basicsize`: PEP 697's negative "this much type data" on
/// 3.12+, the whole instance on 3.11.
#[cfg(Py_3_12)]
const SPEC_BASICSIZE: c_int = -(core::mem::size_of::<ArrayData>() as c_int);
#[cfg(not(Py_3_12))]
const SPEC_BASICSIZE: c_int = core::mem::size_of::<Layout311>() as c_int;

/// Bytes from an Array object to its [`ArrayData`] where the build knows
/// the header's size. 3.12+: PEP 697 puts type data at the base's
/// (`object`'s) basicsize rounded up to `max_align_t` (16 on the 64-bit
/// targets built for; `create_type` checks it against CPython).
#[cfg(not(Py_3_12))]
const DATA_OFFSET: usize = core::mem::offset_of!(Layout311, data);
#[cfg(all(Py_3_12, not(all(Py_LIMITED_API, Py_GIL_DISABLED))))]
const DATA_OFFSET: usize = (core::mem::size_of::<PyObject>() + 15) & !15;

/// abi3t: `PyObject` is opaque (its size differs between 3.15 and 3.15t),
/// so the offset is measured once, by `create_type`, before any Array
/// exists.
#[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
static DATA_OFFSET: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Where Array `obj`'s [`ArrayData`] is: one add (abi3t: a load and an
/// add), the same address as `PyObject_GetTypeData(obj, Array)` on 3.12+.
/// The one place that knows the layout. Safe: it only computes an address
/// (valid to dereference when `obj` is an Array, see [`data`]).
#[inline(always)]
pub(super) fn data_ptr(obj: *mut PyObject) -> *mut ArrayData {
    #[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
    let offset = DATA_OFFSET;
    #[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
    let offset = DATA_OFFSET.load(Ordering::Relaxed);
    obj.cast::<u8>().wrapping_add(offset).cast()
}

/// Array `obj`'s instance data.
///
/// # Safety
/// `obj` is a live Array (or subclass instance) made by `tp_new`/`tp_alloc`
/// of the type `create_type` made; the reference is not used past `obj`'s
/// life. Fields that `resize` changes are read as the lifetime rule allows.
#[inline(always)]
pub(super) unsafe fn data<'a>(obj: *mut PyObject) -> &'a ArrayData {
    // SAFETY: the caller's contract: data_ptr(obj) is this Array's ArrayData.
    unsafe { &*data_ptr(obj) }
}

/// Check (version-specific and abi3 builds) or record (abi3t) where
/// CPython puts `tp`'s instance data: `tp.__basicsize__` minus
/// `PyType_GetTypeDataSize(tp)`, which is `PyObject_GetTypeData`'s offset.
///
/// # Safety
/// GIL held; `tp` is the Array type just made from the spec, no instance yet.
#[cfg(Py_3_12)]
unsafe fn settle_data_offset(tp: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: GIL held; tp is a live type.
    unsafe {
        let size = Owned::new(PyObject_GetAttrString(tp, c"__basicsize__".as_ptr()))?;
        let basicsize = PyLong_AsSsize_t(size.0);
        if basicsize == -1 && !PyErr_Occurred().is_null() {
            return Err(PyErrSet);
        }
        let data_size = PyType_GetTypeDataSize(tp.cast());
        let offset = basicsize - data_size;
        if data_size < core::mem::size_of::<ArrayData>() as Py_ssize_t || offset <= 0 || offset % 8 != 0 {
            return raise(
                PyExc_SystemError,
                &format!("Array: unexpected PEP 697 layout (basicsize {basicsize}, type data {data_size})"),
            );
        }
        #[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
        DATA_OFFSET.store(offset as usize, Ordering::Relaxed);
        #[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
        if offset as usize != DATA_OFFSET {
            return raise(
                PyExc_SystemError,
                &format!("Array: PEP 697 type data at offset {offset}, this build expects {DATA_OFFSET}"),
            );
        }
        Ok(())
    }
}

/// `exports` while a resize runs (free-threaded builds): far below any
/// count of concurrent, failing pins.
#[cfg(Py_GIL_DISABLED)]
const RESIZING: isize = isize::MIN / 2;

/// The type object (set once in `create_type`, lives for the process).
static ARRAY_TYPE: AtomicPtr<PyObject> = AtomicPtr::new(ptr::null_mut());

/// A fresh block of `bytes` zeroed bytes (at least 1), or MemoryError.
fn alloc_block(bytes: usize) -> Result<(*mut u8, usize), PyErrSet> {
    let n = bytes.max(1);
    let Ok(layout) = Layout::from_size_align(n, DATA_ALIGN) else {
        // SAFETY: GIL held by callers.
        unsafe { PyErr_NoMemory() };
        return Err(PyErrSet);
    };
    // SAFETY: non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        // SAFETY: GIL held.
        unsafe { PyErr_NoMemory() };
        return Err(PyErrSet);
    }
    Ok((p, n))
}

fn free_block(p: *mut u8, n: usize) {
    if !p.is_null() {
        // SAFETY: allocated by alloc_block with this size and alignment.
        unsafe { dealloc(p, Layout::from_size_align_unchecked(n, DATA_ALIGN)) }
    }
}

/// Shape + C strides block for `shape` (NULL for ndim 0) and the element count.
fn make_dims(shape: &[i64], itemsize: usize, what: &str) -> Result<(*mut i64, usize), PyErrSet> {
    // Both the element count and the largest stride (zero-size dimensions
    // count as 1 there) must stay within isize::MAX bytes.
    let too_large = || raise(util::value_error(), &format!("{what}: shape {} is too large", shape_text(shape)));
    let mut size: u128 = 1;
    let mut span: u128 = itemsize as u128;
    for &n in shape {
        size *= n as u128;
        span *= (n as u128).max(1);
        if size * itemsize as u128 > isize::MAX as u128 || span > isize::MAX as u128 {
            return too_large();
        }
    }
    let size = size as usize;
    if shape.is_empty() {
        return Ok((ptr::null_mut(), 1));
    }
    let nd = shape.len();
    let mut dims = vec![0i64; 3 * nd].into_boxed_slice();
    let mut stride = itemsize as i64;
    for k in (0..nd).rev() {
        dims[k] = shape[k];
        dims[nd + k] = stride;
        dims[2 * nd + k] = stride / itemsize as i64;
        stride *= shape[k].max(1);
    }
    Ok((Box::into_raw(dims).cast(), size))
}

/// `(2, 3)` / `(2,)`: a shape as Python writes it.
fn shape_text(shape: &[i64]) -> String {
    let items: Vec<String> = shape.iter().map(i64::to_string).collect();
    if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    }
}

fn free_dims(dims: *mut i64, ndim: i32) {
    if !dims.is_null() {
        // SAFETY: made by make_dims as a boxed slice of 3*ndim values.
        drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(dims, 3 * ndim as usize)) });
    }
}

/// Parse a shape argument: an int or a sequence of ints, each >= 0.
fn parse_shape(obj: *mut PyObject, what: &str) -> Result<Vec<i64>, PyErrSet> {
    // SAFETY: GIL held by every caller; obj live.
    let scalar = unsafe {
        PyLong_Check(obj) != 0 || PyObject_HasAttrString(obj, c"__index__".as_ptr()) != 0 && PySequence_Check(obj) == 0
    };
    if scalar {
        return Ok(vec![parse_dim(obj, what)?]);
    }
    // SAFETY: as above.
    if unsafe { PySequence_Check(obj) == 0 || PyUnicode_Check(obj) != 0 || PyBytes_Check(obj) != 0 } {
        // SAFETY: as above.
        let name = unsafe { util::type_name(obj) };
        return raise(util::type_error(), &format!("{what}: shape must be an int or a sequence of ints, not {name}"));
    }
    // SAFETY: as above; the new tuple is owned.
    let seq = Owned::new(unsafe { PySequence_Tuple(obj) })?;
    // SAFETY: GIL held; seq is a tuple.
    let n = unsafe { PyTuple_Size(seq.0) };
    if n as usize > MAX_NDIM {
        return raise(util::value_error(), &format!("{what}: at most {MAX_NDIM} dimensions, got {n}"));
    }
    // SAFETY: GIL held; i < n, the items borrowed from seq, alive meanwhile.
    (0..n).map(|i| parse_dim(unsafe { PyTuple_GetItem(seq.0, i) }, what)).collect()
}

/// One dimension of a shape: an integer (`__index__`) >= 0.
fn parse_dim(item: *mut PyObject, what: &str) -> Result<i64, PyErrSet> {
    // SAFETY: GIL held by every caller; item live; the new int is owned.
    let Ok(idx) = Owned::new(unsafe { PyNumber_Index(item) }) else {
        // SAFETY: GIL held; item live.
        let name = unsafe {
            PyErr_Clear();
            util::type_name(item)
        };
        return raise(util::type_error(), &format!("{what}: dimensions must be integers, not {name}"));
    };
    let mut overflow = 0;
    // SAFETY: GIL held; idx is an int.
    let v = unsafe { PyLong_AsLongLongAndOverflow(idx.0, &mut overflow) };
    // SAFETY: GIL held.
    if v == -1 && unsafe { !PyErr_Occurred().is_null() } {
        return Err(PyErrSet);
    }
    if overflow != 0 {
        // SAFETY: GIL held; idx live; the new str is owned.
        let text = Owned::new(unsafe { PyObject_Str(idx.0) }).ok().and_then(|s| util::str_of(s.0));
        let text = text.unwrap_or_else(|| "?".into());
        return if overflow < 0 {
            raise(util::value_error(), &format!("{what}: negative dimension {text}"))
        } else {
            raise(util::value_error(), &format!("{what}: dimension {text} is too large"))
        };
    }
    if v < 0 {
        return raise(util::value_error(), &format!("{what}: negative dimension {v}"));
    }
    Ok(v)
}

// ---- DLPack (the exchange table's non-owning fill) ---------------------------

/// The Array type (after module init).
pub(crate) fn array_type() -> *mut PyTypeObject {
    ARRAY_TYPE.load(Ordering::Acquire).cast()
}

/// Fill a DLTensor describing Array `obj` without allocating: `shape` and
/// the element `strides` point into the array's dims block.
///
/// # Safety
/// GIL held (or the caller otherwise excludes `resize`); `obj` is an Array.
pub(crate) unsafe fn dl_fill(obj: *mut PyObject, out: &mut crate::dlpack_abi::DLTensor) {
    // SAFETY: obj is an Array; dims holds 3*ndim values (or is NULL).
    unsafe {
        let a = data(obj);
        out.data = a.data.cast();
        out.device = abi::DLDevice::CPU;
        out.ndim = a.ndim;
        out.dtype = a.dtype.dl();
        out.shape = a.dims;
        out.strides = if a.dims.is_null() { ptr::null_mut() } else { a.dims.add(2 * a.ndim as usize) };
        out.byte_offset = 0;
    }
}

/// Run `f` on the data of a fresh, unshared Array (e.g. to copy into it).
///
/// # Safety
/// GIL held; `obj` is an Array; `f` writes at most `nbytes` bytes.
pub(crate) unsafe fn with_data(obj: *mut PyObject, f: impl FnOnce(*mut u8)) {
    // SAFETY: pinned for the duration, so resize cannot move the data.
    unsafe {
        let a = data(obj);
        a.pin(obj);
        f(a.data);
        a.unpin();
    }
}
