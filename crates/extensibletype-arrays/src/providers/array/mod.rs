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

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};
use std::alloc::{alloc_zeroed, dealloc, Layout};

use pyo3_ffi::*;

use crate::abi::{self, ArrayView, DLDataType};
use crate::util::{self, guard, locked, raise, ret, Owned};
use crate::runtime::pyutil::{keep_forever, py_method};
use crate::runtime::{self, SlotDef};

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

/// The instance layout.
#[repr(C)]
pub(crate) struct ArrayObject {
    ob_base: PyObject,
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

impl ArrayObject {
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

/// `exports` while a resize runs (free-threaded builds): far below any
/// count of concurrent, failing pins.
#[cfg(Py_GIL_DISABLED)]
const RESIZING: isize = isize::MIN / 2;

/// The type object (set once in `create_type`, lives for the process).
static ARRAY_TYPE: AtomicPtr<PyObject> = AtomicPtr::new(ptr::null_mut());

/// A fresh block of `bytes` zeroed bytes (at least 1), or MemoryError.
fn alloc_block(bytes: usize) -> Result<(*mut u8, usize), ()> {
    let n = bytes.max(1);
    let Ok(layout) = Layout::from_size_align(n, DATA_ALIGN) else {
        // SAFETY: GIL held by callers.
        unsafe { PyErr_NoMemory() };
        return Err(());
    };
    // SAFETY: non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        // SAFETY: GIL held.
        unsafe { PyErr_NoMemory() };
        return Err(());
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
fn make_dims(shape: &[i64], itemsize: usize, what: &str) -> Result<(*mut i64, usize), ()> {
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
fn parse_shape(obj: *mut PyObject, what: &str) -> Result<Vec<i64>, ()> {
    // SAFETY: GIL held; obj live.
    unsafe {
        let one = |item: *mut PyObject| -> Result<i64, ()> {
            let idx = Owned::new(PyNumber_Index(item)).map_err(|()| {
                PyErr_Clear();
                let _ = raise::<()>(
                    util::type_error(),
                    &format!("{what}: dimensions must be integers, not {}", util::type_name(item)),
                );
            })?;
            let mut overflow = 0;
            let v = PyLong_AsLongLongAndOverflow(idx.0, &mut overflow);
            if v == -1 && !PyErr_Occurred().is_null() {
                return Err(());
            }
            if overflow != 0 {
                let text = Owned::new(PyObject_Str(idx.0)).ok().and_then(|s| util::str_of(s.0));
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
        };
        if PyLong_Check(obj) != 0
            || PyObject_HasAttrString(obj, c"__index__".as_ptr()) != 0 && PySequence_Check(obj) == 0
        {
            return Ok(vec![one(obj)?]);
        }
        if PySequence_Check(obj) == 0 || PyUnicode_Check(obj) != 0 || PyBytes_Check(obj) != 0 {
            return raise(
                util::type_error(),
                &format!("{what}: shape must be an int or a sequence of ints, not {}", util::type_name(obj)),
            );
        }
        let seq = Owned::new(PySequence_Tuple(obj))?;
        let n = PyTuple_Size(seq.0);
        if n as usize > MAX_NDIM {
            return raise(util::value_error(), &format!("{what}: at most {MAX_NDIM} dimensions, got {n}"));
        }
        (0..n).map(|i| one(PyTuple_GetItem(seq.0, i))).collect()
    }
}

unsafe extern "C" fn array_new(subtype: *mut PyTypeObject, args: *mut PyObject, kwds: *mut PyObject) -> *mut PyObject {
    // SAFETY: tp_new contract: GIL held, subtype is Array or a subclass.
    guard(ptr::null_mut(), || ret(unsafe { new_impl(subtype, args, kwds) }))
}

/// `Array(shape, dtype="float64")`.
unsafe fn new_impl(subtype: *mut PyTypeObject, args: *mut PyObject, kwds: *mut PyObject) -> Result<*mut PyObject, ()> {
    // SAFETY: GIL held; CPython passes a tuple and a dict or NULL.
    unsafe {
        let nargs = PyTuple_Size(args);
        let mut shape_arg = if nargs >= 1 { PyTuple_GetItem(args, 0) } else { ptr::null_mut() };
        let mut dtype_arg = if nargs >= 2 { PyTuple_GetItem(args, 1) } else { ptr::null_mut() };
        if nargs > 2 {
            return raise(util::type_error(), &format!("Array() takes at most 2 positional arguments ({nargs} given)"));
        }
        if !kwds.is_null() {
            let mut pos: Py_ssize_t = 0;
            let (mut k, mut v) = (ptr::null_mut(), ptr::null_mut());
            while PyDict_Next(kwds, &mut pos, &mut k, &mut v) != 0 {
                let name = util::str_of(k).unwrap_or_default();
                let slot = match name.as_str() {
                    "shape" => &mut shape_arg,
                    "dtype" => &mut dtype_arg,
                    _ => {
                        return raise(
                            util::type_error(),
                            &format!("Array() got an unexpected keyword argument '{name}'"),
                        )
                    }
                };
                if !slot.is_null() {
                    return raise(util::type_error(), &format!("Array() got multiple values for argument '{name}'"));
                }
                *slot = v;
            }
        }
        if shape_arg.is_null() {
            return raise(util::type_error(), "Array() missing required argument 'shape'");
        }
        let shape = parse_shape(shape_arg, "Array()")?;
        let dtype = if dtype_arg.is_null() || dtype_arg == Py_None() {
            DType::F64
        } else {
            let name = if PyUnicode_Check(dtype_arg) != 0 {
                util::str_of(dtype_arg)
            } else {
                // numpy dtypes and type objects: use str() / __name__.
                let s = if PyType_Check(dtype_arg) != 0 {
                    PyObject_GetAttrString(dtype_arg, c"__name__".as_ptr())
                } else {
                    PyObject_Str(dtype_arg)
                };
                Owned::new(s).ok().and_then(|s| util::str_of(s.0))
            };
            match name.as_deref().and_then(DType::parse) {
                Some(d) => d,
                None => {
                    PyErr_Clear();
                    return raise(
                        util::type_error(),
                        &format!(
                            "Array(): unsupported dtype {:?} (supported: float64, float32, int64)",
                            name.unwrap_or_default()
                        ),
                    );
                }
            }
        };
        let (dims, size) = make_dims(&shape, dtype.itemsize(), "Array()")?;
        let block = match alloc_block(size * dtype.itemsize()) {
            Ok(b) => b,
            Err(()) => {
                free_dims(dims, shape.len() as i32);
                return Err(());
            }
        };
        let alloc: allocfunc = core::mem::transmute(PyType_GetSlot(subtype, Py_tp_alloc));
        let obj = alloc(subtype, 0);
        if obj.is_null() {
            free_dims(dims, shape.len() as i32);
            free_block(block.0, block.1);
            return Err(());
        }
        let a = obj.cast::<ArrayObject>();
        ptr::addr_of_mut!((*a).data).write(block.0);
        ptr::addr_of_mut!((*a).alloc_bytes).write(block.1);
        ptr::addr_of_mut!((*a).dims).write(dims);
        ptr::addr_of_mut!((*a).ndim).write(shape.len() as i32);
        ptr::addr_of_mut!((*a).dtype).write(dtype);
        ptr::addr_of_mut!((*a).size).write(size);
        ptr::addr_of_mut!((*a).exports).write(AtomicIsize::new(0));
        let flags = view_flags(&*a);
        ptr::addr_of_mut!((*a).flags).write(flags);
        Ok(obj)
    }
}

fn view_flags(a: &ArrayObject) -> u32 {
    let (c, f) = abi::contiguity(a.shape(), a.strides(), a.dtype.itemsize() as i64);
    abi::ALIGNED | if c { abi::C_CONTIGUOUS } else { 0 } | if f { abi::F_CONTIGUOUS } else { 0 }
}

unsafe extern "C" fn array_dealloc(obj: *mut PyObject) {
    // SAFETY: called by CPython once, on the last reference. Exports hold
    // references (memoryview) or are bracketed by a caller's reference, so
    // none is outstanding here.
    unsafe {
        let a = obj.cast::<ArrayObject>();
        free_block((*a).data, (*a).alloc_bytes);
        free_dims((*a).dims, (*a).ndim);
        let tp = Py_TYPE(obj);
        let free: freefunc = core::mem::transmute(PyType_GetSlot(tp, Py_tp_free));
        free(obj.cast());
        Py_DECREF(tp.cast());
    }
}

// ---- array.v1 provider -----------------------------------------------------

/// `extensibletype.array.v1:acquire` of Array.
unsafe extern "C" fn array_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: the interface's contract: GIL held, obj a live Array (this
        // slot is registered on the Array type only), view writable for
        // view->size bytes.
        unsafe {
            if ((*view).size as usize) < core::mem::size_of::<ArrayView>() {
                return raise(util::value_error(), "array.v1 acquire: view struct too small (size field not set?)")
                    .unwrap_or(-1);
            }
            if request & !abi::REQ_ALL != 0 {
                return raise(util::buffer_error(), &format!("Array: unsupported array.v1 request flags {request:#x}"))
                    .unwrap_or(-1);
            }
            let a = &*obj.cast::<ArrayObject>();
            // Array memory is writable and C-contiguous: no v1 request can
            // fail (C satisfies ANY).
            a.pin(obj);
            let v = &mut *view;
            v.version = abi::VERSION;
            v.data = a.data.cast();
            v.ndim = a.ndim;
            v.shape = a.dims;
            v.strides = if a.dims.is_null() { ptr::null_mut() } else { a.dims.add(a.ndim as usize) };
            v.flags = a.flags;
            v.dtype = a.dtype.dl();
            v.reserved = 0;
            v.device = abi::DLDevice::CPU;
            v.owner = ptr::null_mut();
            0
        }
    })
}

/// `extensibletype.array.v1:release` of Array.
unsafe extern "C" fn array_release(obj: *mut PyObject, _view: *mut ArrayView) {
    // SAFETY: paired with a successful acquire on this live Array.
    unsafe { (*obj.cast::<ArrayObject>()).unpin() }
}

// ---- buffer protocol ---------------------------------------------------------

unsafe extern "C" fn array_getbuffer(obj: *mut PyObject, view: *mut Py_buffer, flags: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: CPython's bf_getbuffer contract (GIL held, view writable).
        unsafe {
            if view.is_null() {
                return raise(util::value_error(), "NULL view in getbuffer").unwrap_or(-1);
            }
            let a = &*obj.cast::<ArrayObject>();
            a.pin(obj);
            let v = &mut *view;
            v.buf = a.data.cast();
            v.obj = Py_NewRef(obj);
            v.len = a.nbytes() as Py_ssize_t;
            v.itemsize = a.dtype.itemsize() as Py_ssize_t;
            v.readonly = 0;
            v.ndim = a.ndim;
            v.format = if flags & PyBUF_FORMAT != 0 { a.dtype.format() } else { ptr::null_mut() };
            // Py_ssize_t is i64 on the 64-bit targets this builds for.
            v.shape = if flags & PyBUF_ND != 0 { a.dims.cast() } else { ptr::null_mut() };
            v.strides = if flags & PyBUF_STRIDES == PyBUF_STRIDES && !a.dims.is_null() {
                a.dims.add(a.ndim as usize).cast()
            } else {
                ptr::null_mut()
            };
            v.suboffsets = ptr::null_mut();
            v.internal = ptr::null_mut();
            0
        }
    })
}

unsafe extern "C" fn array_releasebuffer(obj: *mut PyObject, _view: *mut Py_buffer) {
    // SAFETY: paired with array_getbuffer on this live Array.
    unsafe { (*obj.cast::<ArrayObject>()).unpin() }
}

const _: () = assert!(core::mem::size_of::<Py_ssize_t>() == 8, "shape/strides are shared as Py_ssize_t");

// ---- element access --------------------------------------------------------

/// Flat element offset (in elements) of an int / tuple-of-ints index.
unsafe fn element_index(a: &ArrayObject, key: *mut PyObject) -> Result<usize, ()> {
    // SAFETY: GIL held; key live.
    unsafe {
        let shape = a.shape();
        let mut idx: Vec<i64> = Vec::with_capacity(shape.len());
        if PyTuple_Check(key) != 0 {
            for i in 0..PyTuple_Size(key) {
                idx.push(index_value(PyTuple_GetItem(key, i))?);
            }
        } else {
            idx.push(index_value(key)?);
        }
        if idx.len() != shape.len() {
            return raise(
                util::index_error(),
                &format!(
                    "Array index needs exactly {} integer(s) for a {}-d array, got {} (slicing is not supported)",
                    shape.len(),
                    shape.len(),
                    idx.len()
                ),
            );
        }
        let mut flat: usize = 0;
        for (axis, (&i, &n)) in idx.iter().zip(shape).enumerate() {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                return raise(
                    util::index_error(),
                    &format!("index {i} is out of bounds for axis {axis} with size {n}"),
                );
            }
            flat = flat * n as usize + j as usize;
        }
        Ok(flat)
    }
}

unsafe fn index_value(item: *mut PyObject) -> Result<i64, ()> {
    // SAFETY: GIL held.
    unsafe {
        if PyLong_Check(item) == 0 && PyObject_HasAttrString(item, c"__index__".as_ptr()) == 0 {
            return raise(
                util::index_error(),
                &format!(
                    "Array indices must be integers or tuples of integers, not {} (slicing is not supported)",
                    util::type_name(item)
                ),
            );
        }
        let idx = Owned::new(PyNumber_Index(item))?;
        let v = PyLong_AsLongLong(idx.0);
        if v == -1 && !PyErr_Occurred().is_null() {
            PyErr_Clear();
            return raise(util::index_error(), "Array index out of range");
        }
        Ok(v)
    }
}

/// A Python scalar converted for `dtype`.
#[derive(Clone, Copy)]
enum Scalar {
    F(f64),
    I(i64),
}

unsafe fn to_scalar(dtype: DType, value: *mut PyObject) -> Result<Scalar, ()> {
    // SAFETY: GIL held.
    unsafe {
        match dtype {
            DType::F64 | DType::F32 => {
                let v = PyFloat_AsDouble(value);
                if v == -1.0 && !PyErr_Occurred().is_null() {
                    return Err(());
                }
                Ok(Scalar::F(v))
            }
            DType::I64 => {
                if PyLong_Check(value) == 0 && PyObject_HasAttrString(value, c"__index__".as_ptr()) == 0 {
                    return raise(
                        util::type_error(),
                        &format!("an int64 Array element must be an integer, not {}", util::type_name(value)),
                    );
                }
                let idx = Owned::new(PyNumber_Index(value))?;
                let v = PyLong_AsLongLong(idx.0);
                if v == -1 && !PyErr_Occurred().is_null() {
                    return Err(());
                }
                Ok(Scalar::I(v))
            }
        }
    }
}

/// Read element `flat` (caller: inside `locked`, index in bounds).
unsafe fn read(a: &ArrayObject, flat: usize) -> Scalar {
    // SAFETY: flat < size; data is aligned for every dtype. Relaxed atomic
    // loads: other threads may write elements concurrently (free-threaded).
    unsafe {
        match a.dtype {
            DType::F64 => Scalar::F(f64::from_bits(
                (*a.data.cast::<core::sync::atomic::AtomicU64>().add(flat)).load(Ordering::Relaxed),
            )),
            DType::F32 => Scalar::F(f32::from_bits(
                (*a.data.cast::<core::sync::atomic::AtomicU32>().add(flat)).load(Ordering::Relaxed),
            ) as f64),
            DType::I64 => {
                Scalar::I((*a.data.cast::<core::sync::atomic::AtomicI64>().add(flat)).load(Ordering::Relaxed))
            }
        }
    }
}

unsafe fn write(a: &ArrayObject, flat: usize, v: Scalar) {
    // SAFETY: as read.
    unsafe {
        match (a.dtype, v) {
            (DType::F64, Scalar::F(x)) => {
                (*a.data.cast::<core::sync::atomic::AtomicU64>().add(flat)).store(x.to_bits(), Ordering::Relaxed)
            }
            (DType::F32, Scalar::F(x)) => (*a.data.cast::<core::sync::atomic::AtomicU32>().add(flat))
                .store((x as f32).to_bits(), Ordering::Relaxed),
            (DType::I64, Scalar::I(x)) => {
                (*a.data.cast::<core::sync::atomic::AtomicI64>().add(flat)).store(x, Ordering::Relaxed)
            }
            _ => unreachable!("to_scalar converts for the dtype"),
        }
    }
}

unsafe fn scalar_to_py(v: Scalar) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe {
        match v {
            Scalar::F(x) => PyFloat_FromDouble(x),
            Scalar::I(x) => PyLong_FromLongLong(x),
        }
    }
}

unsafe extern "C" fn array_getitem(obj: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = &*obj.cast::<ArrayObject>();
            match locked(obj, || element_index(a, key).map(|i| read(a, i))) {
                Ok(v) => scalar_to_py(v),
                Err(()) => ptr::null_mut(),
            }
        }
    })
}

unsafe extern "C" fn array_setitem(obj: *mut PyObject, key: *mut PyObject, value: *mut PyObject) -> c_int {
    guard(-1, || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            if value.is_null() {
                return raise(util::type_error(), "Array elements cannot be deleted").unwrap_or(-1);
            }
            let a = &*obj.cast::<ArrayObject>();
            let Ok(v) = to_scalar(a.dtype, value) else { return -1 };
            match locked(obj, || element_index(a, key).map(|i| write(a, i, v))) {
                Ok(()) => 0,
                Err(()) => -1,
            }
        }
    })
}

unsafe extern "C" fn array_len(obj: *mut PyObject) -> Py_ssize_t {
    guard(-1, || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = &*obj.cast::<ArrayObject>();
            match locked(obj, || a.shape().first().copied()) {
                Some(n) => n as Py_ssize_t,
                None => raise(util::type_error(), "len() of a 0-d Array").unwrap_or(-1),
            }
        }
    })
}

// ---- methods -----------------------------------------------------------------

unsafe extern "C" fn array_fill(obj: *mut PyObject, value: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = &*obj.cast::<ArrayObject>();
            let Ok(v) = to_scalar(a.dtype, value) else { return ptr::null_mut() };
            // Like any consumer: pin the memory with an export, then fill
            // outside the lock (and without the GIL when large: detaching
            // would suspend the critical section anyway).
            a.pin(obj);
            let (data, n) = (a.data, a.size);
            {
                let _nogil = util::NoGil::new(n >= 1 << 16);
                match (a.dtype, v) {
                    (DType::F64, Scalar::F(x)) => core::slice::from_raw_parts_mut(data.cast::<f64>(), n).fill(x),
                    (DType::F32, Scalar::F(x)) => core::slice::from_raw_parts_mut(data.cast::<f32>(), n).fill(x as f32),
                    (DType::I64, Scalar::I(x)) => core::slice::from_raw_parts_mut(data.cast::<i64>(), n).fill(x),
                    _ => unreachable!("to_scalar converts for the dtype"),
                }
            }
            a.unpin();
            Py_NewRef(Py_None())
        }
    })
}

unsafe extern "C" fn array_tolist(obj: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array. The values are copied out under
        // the lock; the lists are built after it.
        unsafe {
            let a = &*obj.cast::<ArrayObject>();
            let (shape, values) =
                locked(obj, || (a.shape().to_vec(), (0..a.size).map(|i| read(a, i)).collect::<Vec<_>>()));
            ret(build_list(&shape, &values))
        }
    })
}

fn build_list(shape: &[i64], values: &[Scalar]) -> Result<*mut PyObject, ()> {
    // SAFETY: GIL held.
    unsafe {
        let Some((&n, rest)) = shape.split_first() else {
            return Owned::new(scalar_to_py(values[0])).map(Owned::into_ptr);
        };
        let list = Owned::new(PyList_New(n as Py_ssize_t))?;
        let step = rest.iter().product::<i64>() as usize;
        for i in 0..n as usize {
            let item = build_list(rest, &values[i * step..(i + 1) * step])?;
            PyList_SetItem(list.0, i as Py_ssize_t, item); // steals item
        }
        Ok(list.into_ptr())
    }
}

unsafe extern "C" fn array_resize(obj: *mut PyObject, shape: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array. Under the lock, no acquire or
        // getbuffer can run, and exports == 0 means nobody holds the memory.
        unsafe {
            let Ok(new_shape) = parse_shape(shape, "Array.resize()") else { return ptr::null_mut() };
            let a = obj.cast::<ArrayObject>();
            let r = locked(obj, || -> Result<(), ()> {
                let refuse = |n: isize| {
                    raise(
                        util::buffer_error(),
                        &format!(
                            "Array.resize(): cannot resize an Array while it has {n} exported view(s) or buffer(s)"
                        ),
                    )
                };
                if (*a).exported() != 0 {
                    return refuse((*a).exported());
                }
                let itemsize = (*a).dtype.itemsize();
                let (dims, size) = make_dims(&new_shape, itemsize, "Array.resize()")?;
                let (block, bytes) = match alloc_block(size * itemsize) {
                    Ok(b) => b,
                    Err(()) => {
                        free_dims(dims, new_shape.len() as i32);
                        return Err(());
                    }
                };
                if !(*a).claim_for_resize() {
                    // An export started since the check (free-threaded).
                    free_dims(dims, new_shape.len() as i32);
                    free_block(block, bytes);
                    return refuse((*a).exported().max(1));
                }
                // Flat C-order contents are kept (as ndarray.resize): the
                // common prefix is copied, the rest stays zero.
                ptr::copy_nonoverlapping((*a).data, block, (*a).nbytes().min(size * itemsize));
                let (old_data, old_bytes, old_dims, old_ndim) = ((*a).data, (*a).alloc_bytes, (*a).dims, (*a).ndim);
                (*a).data = block;
                (*a).alloc_bytes = bytes;
                (*a).dims = dims;
                (*a).ndim = new_shape.len() as i32;
                (*a).size = size;
                (*a).flags = view_flags(&*a);
                (*a).end_resize();
                free_block(old_data, old_bytes);
                free_dims(old_dims, old_ndim);
                Ok(())
            });
            match r {
                Ok(()) => Py_NewRef(Py_None()),
                Err(()) => ptr::null_mut(),
            }
        }
    })
}

unsafe extern "C" fn array_repr(obj: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = &*obj.cast::<ArrayObject>();
            let (shape, dtype) = locked(obj, || (a.shape().to_vec(), a.dtype));
            let shape = match shape.len() {
                1 => format!("({},)", shape[0]),
                _ => format!("({})", shape.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
            };
            let s = format!("Array(shape={shape}, dtype='{}')", dtype.name());
            PyUnicode_FromStringAndSize(s.as_ptr().cast(), s.len() as Py_ssize_t)
        }
    })
}

// ---- attributes --------------------------------------------------------------

unsafe fn tuple_of(values: &[i64]) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe {
        let t = PyTuple_New(values.len() as Py_ssize_t);
        if t.is_null() {
            return t;
        }
        for (i, &v) in values.iter().enumerate() {
            let item = PyLong_FromLongLong(v);
            if item.is_null() {
                Py_DECREF(t);
                return ptr::null_mut();
            }
            PyTuple_SetItem(t, i as Py_ssize_t, item);
        }
        t
    }
}

macro_rules! getter {
    ($name:ident, |$a:ident| $body:expr) => {
        unsafe extern "C" fn $name(obj: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
            guard(ptr::null_mut(), || {
                // SAFETY: GIL held; obj is an Array; values are read under the lock.
                unsafe {
                    let $a = &*obj.cast::<ArrayObject>();
                    $body
                }
            })
        }
    };
}

getter!(get_shape, |a| {
    let shape = locked(a as *const ArrayObject as *mut PyObject, || a.shape().to_vec());
    tuple_of(&shape)
});
getter!(get_strides, |a| {
    let strides = locked(a as *const ArrayObject as *mut PyObject, || a.strides().to_vec());
    tuple_of(&strides)
});
getter!(get_ndim, |a| PyLong_FromLong(locked(a as *const ArrayObject as *mut PyObject, || a.ndim) as _));
getter!(get_size, |a| PyLong_FromSize_t(locked(a as *const ArrayObject as *mut PyObject, || a.size)));
getter!(get_nbytes, |a| PyLong_FromSize_t(locked(a as *const ArrayObject as *mut PyObject, || a.nbytes())));
getter!(get_itemsize, |a| PyLong_FromSize_t(a.dtype.itemsize()));
getter!(get_dtype, |a| {
    let n = a.dtype.name();
    PyUnicode_FromStringAndSize(n.as_ptr().cast(), n.len() as Py_ssize_t)
});
getter!(get_exports, |a| PyLong_FromSsize_t(a.exported()));

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
        let a = &*obj.cast::<ArrayObject>();
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
        let a = &*obj.cast::<ArrayObject>();
        a.pin(obj);
        f(a.data);
        a.unpin();
    }
}

// ---- the type ----------------------------------------------------------------

/// Create the `Array` type (metaclass `ExtensibleType`, slots
/// acquire/release) and add it to `module`.
pub(crate) fn create_type(module: *mut PyObject) -> Result<(), ()> {
    macro_rules! g {
        ($name:literal, $f:expr, $doc:literal) => {
            PyGetSetDef { name: $name.as_ptr(), get: Some($f), set: None, doc: $doc.as_ptr(), closure: ptr::null_mut() }
        };
    }
    let methods: &'static mut [PyMethodDef] = Box::leak(Box::new([
        py_method!(c"fill", PyCFunction, array_fill, METH_O, c"fill(value)\n--\n\nSet every element to value."),
        py_method!(
            c"tolist",
            PyCFunction,
            array_tolist,
            METH_NOARGS,
            c"tolist()\n--\n\nThe elements as nested lists of Python scalars."
        ),
        py_method!(c"__dlpack__", PyCFunctionFastWithKeywords, crate::providers::dlpack::array_dlpack, METH_FASTCALL | METH_KEYWORDS,
            c"__dlpack__($self, /, *, stream=None, max_version=None, dl_device=None, copy=None)\n--\n\n\
              A DLPack capsule sharing this array's memory (copy=True: a copy); resize refuses until it is deleted."),
        py_method!(c"__dlpack_device__", PyCFunction, crate::providers::dlpack::array_dlpack_device, METH_NOARGS,
            c"__dlpack_device__($self, /)\n--\n\n(1, 0): host memory (kDLCPU)."),
        py_method!(c"resize", PyCFunction, array_resize, METH_O,
            c"resize(shape)\n--\n\nChange the shape in place, keeping the flat C-order contents (new elements are 0).\n\
              Raises BufferError while a view (array.v1 or buffer protocol) is exported."),
        PyMethodDef::zeroed(),
    ]));
    let getset: &'static mut [PyGetSetDef] = Box::leak(Box::new([
        g!(c"shape", get_shape, c"Tuple of extents."),
        g!(c"strides", get_strides, c"Tuple of byte strides (C order)."),
        g!(c"ndim", get_ndim, c"Number of dimensions."),
        g!(c"size", get_size, c"Number of elements."),
        g!(c"nbytes", get_nbytes, c"Bytes of element data."),
        g!(c"itemsize", get_itemsize, c"Bytes per element."),
        g!(c"dtype", get_dtype, c"Element type name: 'float64', 'float32' or 'int64'."),
        g!(c"_exports", get_exports, c"Number of views and buffers currently exported (for tests)."),
        PyGetSetDef { name: ptr::null(), get: None, set: None, doc: ptr::null(), closure: ptr::null_mut() },
    ]));
    let slots: &'static mut [PyType_Slot] = keep_forever(Box::new([
        PyType_Slot { slot: Py_tp_new, pfunc: array_new as *mut c_void },
        PyType_Slot { slot: Py_tp_dealloc, pfunc: array_dealloc as *mut c_void },
        PyType_Slot { slot: Py_tp_repr, pfunc: array_repr as *mut c_void },
        PyType_Slot { slot: Py_tp_methods, pfunc: methods.as_mut_ptr().cast() },
        PyType_Slot { slot: Py_tp_getset, pfunc: getset.as_mut_ptr().cast() },
        PyType_Slot { slot: Py_mp_length, pfunc: array_len as *mut c_void },
        PyType_Slot { slot: Py_mp_subscript, pfunc: array_getitem as *mut c_void },
        PyType_Slot { slot: Py_mp_ass_subscript, pfunc: array_setitem as *mut c_void },
        PyType_Slot { slot: Py_bf_getbuffer, pfunc: array_getbuffer as *mut c_void },
        PyType_Slot { slot: Py_bf_releasebuffer, pfunc: array_releasebuffer as *mut c_void },
        PyType_Slot {
            slot: Py_tp_doc,
            pfunc: c"Array(shape, dtype='float64')\n--\n\n\
                A zero-filled, C-contiguous n-d array (float64, float32 or int64) owned by Rust.\n\
                Provides extensibletype.array.v1 (acquire/release slots) and the buffer protocol\n\
                (numpy.asarray(a) shares its memory). Indexing: a[i] (1-d) or a[i, j, ...] (scalars)."
                .as_ptr() as *mut c_void,
        },
        PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
    ]));
    let spec: &'static mut PyType_Spec = keep_forever(Box::new(PyType_Spec {
        name: c"extensibletype.arrays.Array".as_ptr(),
        basicsize: core::mem::size_of::<ArrayObject>() as c_int,
        itemsize: 0,
        flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE) as _,
        slots: slots.as_mut_ptr(),
    }));
    let defs = [
        SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: array_acquire as *const c_void },
        SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: array_release as *const c_void },
    ];
    // SAFETY: GIL held (module init); the spec and its tables are leaked.
    unsafe {
        let tp = runtime::type_from_spec(module, spec, ptr::null_mut(), &defs);
        if tp.is_null() {
            return Err(());
        }
        ARRAY_TYPE.store(Py_NewRef(tp), Ordering::Release);
        util::add(module, c"Array", tp)
    }
}
