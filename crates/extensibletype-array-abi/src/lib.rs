//! # extensibletype-array-abi
//!
//! The `array.v1` interface: the Rust twin of `include/extensibletype_array.h`
//! (layouts: docs/spec.md §12, asserted by the compiler here and in
//! `tests/abi/abi_layout.c`; checked live by `python/tests/test_arrays.py`).
//! Re-exported as `extensibletype::arrays::abi` (and
//! `extensibletype_arrays::abi`); [`dlpack`] also as `dlpack_abi` there.
//!
//! A provider registers two slots on its type:
//! [`KEY_ACQUIRE`] → [`AcquireFn`] and [`KEY_RELEASE`] → [`ReleaseFn`].
//! A consumer finds them with `extensibletype::runtime::find` (or `Provider::of`)
//! and brackets its use of the memory with one acquire and one release; the
//! full contract (threads, lifetimes, exceptions) is in the header.
//!
//! Without feature `python` this crate is the pure layout (structs, keys,
//! ids, flags, [`contiguity`], [`check_request`]), usable with no Python;
//! feature `python` adds `Provider`, `with_view` and `acquire_with`.
//!
//! This crate is also the template for a new slot set (docs/spec.md §13):
//! its ABI in a small crate like this one (`src/lib.rs`: keys, ids,
//! `#[repr(C)]` structs with their layout asserts, the consumer helpers),
//! its providers and Python names in a crate like `extensibletype-arrays`.
//!
//! ```no_run
//! # #[cfg(feature = "python")] mod demo {
//! use extensibletype_array_abi::{self as abi, with_view}; // extensibletype::arrays::abi
//! # use extensibletype_runtime::pyo3_ffi;
//! # unsafe fn demo(obj: *mut pyo3_ffi::PyObject) -> Result<(), extensibletype_runtime::PyErrSet> {
//! // GIL held, extensibletype::runtime::import() done, obj kept alive:
//! let first = unsafe {
//!     with_view(obj, abi::REQ_C_CONTIGUOUS, |v| {
//!         (v.dtype == abi::DLDataType::F64 && v.size() > 0).then(|| *(v.data as *const f64))
//!     })?
//! };
//! # Ok(()) } }
//! # fn main() {}
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_int, c_void, CStr};
use core::ptr;

#[cfg(not(feature = "python"))]
use extensibletype_core::abi::OpaqueObject as PyObject;
#[cfg(feature = "python")]
use pyo3_ffi::*;

pub mod dlpack;
pub use dlpack::{DLDataType, DLDevice};
use extensibletype_core::id;
#[cfg(feature = "python")]
use extensibletype_core::table;
#[cfg(feature = "python")]
use extensibletype_runtime as runtime;

/// Version of the view layout filled by providers of the v1 keys.
pub const VERSION: u32 = 1;

/// Key of the acquire slot.
pub const KEY_ACQUIRE: &CStr = c"extensibletype.array.v1:acquire";
/// Key of the release slot.
pub const KEY_RELEASE: &CStr = c"extensibletype.array.v1:release";
/// Id of [`KEY_ACQUIRE`] (`0x90fba73fde02ade2`).
pub const ID_ACQUIRE: u64 = id!("extensibletype.array.v1:acquire");
/// Id of [`KEY_RELEASE`] (`0xb474eca712320062`).
pub const ID_RELEASE: u64 = id!("extensibletype.array.v1:release");

/// DLPack `kDLInt`.
pub const DL_INT: u8 = 0;
/// DLPack `kDLUInt`.
pub const DL_UINT: u8 = 1;
/// DLPack `kDLFloat`.
pub const DL_FLOAT: u8 = 2;
/// DLPack `kDLOpaqueHandle`.
pub const DL_OPAQUE_HANDLE: u8 = 3;
/// DLPack `kDLBfloat`.
pub const DL_BFLOAT: u8 = 4;
/// DLPack `kDLComplex`.
pub const DL_COMPLEX: u8 = 5;
/// DLPack `kDLBool`.
pub const DL_BOOL: u8 = 6;
/// DLPack `kDLCPU` (host memory).
pub const DL_CPU: i32 = 1;

/// View flag: the memory must not be written through this view.
pub const READONLY: u32 = 0x1;
/// View flag: C-contiguous (see the header for the exact rule).
pub const C_CONTIGUOUS: u32 = 0x2;
/// View flag: Fortran-contiguous.
pub const F_CONTIGUOUS: u32 = 0x4;
/// View flag: `data` and the strides are multiples of the element alignment.
pub const ALIGNED: u32 = 0x8;
/// View flag: elements are stored in the non-native byte order.
pub const BYTESWAPPED: u32 = 0x10;

/// Request flag: a writable view (else `BufferError`).
pub const REQ_WRITABLE: c_int = 0x1;
/// Request flag: a C-contiguous view (else `BufferError`; providers never copy).
pub const REQ_C_CONTIGUOUS: c_int = 0x2;
/// Request flag: a C- or Fortran-contiguous view (else `BufferError`).
pub const REQ_ANY_CONTIGUOUS: c_int = 0x4;
/// All request flags defined by version 1.
pub const REQ_ALL: c_int = REQ_WRITABLE | REQ_C_CONTIGUOUS | REQ_ANY_CONTIGUOUS;

/// Number of `i64` in [`ArrayView::scratch`].
pub const SCRATCH: usize = 16;

/// `ExtType_ArrayView`: what `acquire` fills in. Must stay at one address
/// between acquire and release (`shape`/`strides` may point into `scratch`).
#[repr(C)]
#[derive(Debug)]
pub struct ArrayView {
    /// In: `size_of::<ArrayView>()` as the consumer knows it.
    pub size: u32,
    /// Out: [`VERSION`].
    pub version: u32,
    /// Address of element `[0, ..., 0]`.
    pub data: *mut c_void,
    /// `ndim` extents, owned by the provider until release.
    pub shape: *mut i64,
    /// `ndim` strides in bytes, owned by the provider until release.
    pub strides: *mut i64,
    /// Number of dimensions (0: one element at `data`).
    pub ndim: i32,
    /// [`READONLY`] | [`C_CONTIGUOUS`] | ...
    pub flags: u32,
    /// Element type.
    pub dtype: DLDataType,
    /// 0.
    pub reserved: u32,
    /// Where the memory lives.
    pub device: DLDevice,
    /// Provider's bookkeeping (e.g. a reference it holds).
    pub owner: *mut PyObject,
    /// Provider's bookkeeping.
    pub internal: [*mut c_void; 2],
    /// Provider's scratch space (e.g. shape and strides for ndim <= 8).
    pub scratch: [i64; SCRATCH],
}

// ABI layout of the array.v1 structs (docs/spec.md section 12), checked by
// the compiler: the same numbers as tests/abi/abi_layout.c.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<DLDataType>() == 4 && align_of::<DLDataType>() == 2);
    assert!(offset_of!(DLDataType, code) == 0);
    assert!(offset_of!(DLDataType, bits) == 1);
    assert!(offset_of!(DLDataType, lanes) == 2);
    assert!(size_of::<DLDevice>() == 8 && align_of::<DLDevice>() == 4);
    assert!(offset_of!(DLDevice, device_type) == 0);
    assert!(offset_of!(DLDevice, device_id) == 4);
    assert!(size_of::<ArrayView>() == 208 && align_of::<ArrayView>() == 8);
    assert!(offset_of!(ArrayView, size) == 0);
    assert!(offset_of!(ArrayView, version) == 4);
    assert!(offset_of!(ArrayView, data) == 8);
    assert!(offset_of!(ArrayView, shape) == 16);
    assert!(offset_of!(ArrayView, strides) == 24);
    assert!(offset_of!(ArrayView, ndim) == 32);
    assert!(offset_of!(ArrayView, flags) == 36);
    assert!(offset_of!(ArrayView, dtype) == 40);
    assert!(offset_of!(ArrayView, reserved) == 44);
    assert!(offset_of!(ArrayView, device) == 48);
    assert!(offset_of!(ArrayView, owner) == 56);
    assert!(offset_of!(ArrayView, internal) == 64);
    assert!(offset_of!(ArrayView, scratch) == 80);
};

impl Default for ArrayView {
    fn default() -> Self {
        ArrayView::new()
    }
}

impl ArrayView {
    /// An empty view with `size` set, ready for `acquire`.
    pub const fn new() -> ArrayView {
        ArrayView {
            size: core::mem::size_of::<ArrayView>() as u32,
            version: 0,
            data: ptr::null_mut(),
            shape: ptr::null_mut(),
            strides: ptr::null_mut(),
            ndim: 0,
            flags: 0,
            dtype: DLDataType { code: 0, bits: 0, lanes: 0 },
            reserved: 0,
            device: DLDevice { device_type: 0, device_id: 0 },
            owner: ptr::null_mut(),
            internal: [ptr::null_mut(); 2],
            scratch: [0; SCRATCH],
        }
    }

    /// The extents (empty for ndim 0).
    pub fn shape(&self) -> &[i64] {
        if self.ndim <= 0 || self.shape.is_null() {
            return &[];
        }
        // SAFETY: a filled view's shape holds ndim values until release.
        unsafe { core::slice::from_raw_parts(self.shape, self.ndim as usize) }
    }

    /// The byte strides (empty for ndim 0).
    pub fn strides(&self) -> &[i64] {
        if self.ndim <= 0 || self.strides.is_null() {
            return &[];
        }
        // SAFETY: as for shape.
        unsafe { core::slice::from_raw_parts(self.strides, self.ndim as usize) }
    }

    /// Number of elements (1 for ndim 0).
    pub fn size(&self) -> i64 {
        self.shape().iter().product()
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> usize {
        self.dtype.itemsize()
    }

    /// Set the [`C_CONTIGUOUS`] and [`F_CONTIGUOUS`] bits from shape,
    /// strides and dtype (for providers).
    pub fn set_contiguity(&mut self) {
        let (c, f) = contiguity(self.shape(), self.strides(), self.itemsize() as i64);
        self.flags &= !(C_CONTIGUOUS | F_CONTIGUOUS);
        self.flags |= if c { C_CONTIGUOUS } else { 0 } | if f { F_CONTIGUOUS } else { 0 };
    }

    /// Point `shape`/`strides` at `scratch` (ndim ≤ 8) and copy them there.
    ///
    /// # Safety
    /// The view must not move until release; `ndim <= SCRATCH / 2`.
    pub unsafe fn store_dims_in_scratch(
        &mut self,
        shape: impl Iterator<Item = i64>,
        strides: impl Iterator<Item = i64>,
    ) {
        let n = self.ndim as usize;
        debug_assert!(n <= SCRATCH / 2);
        for (slot, v) in self.scratch[..n].iter_mut().zip(shape) {
            *slot = v;
        }
        for (slot, v) in self.scratch[n..2 * n].iter_mut().zip(strides) {
            *slot = v;
        }
        self.shape = self.scratch.as_mut_ptr();
        // SAFETY: n <= SCRATCH / 2, so scratch + n is in bounds.
        self.strides = unsafe { self.scratch.as_mut_ptr().add(n) };
    }
}

/// (C-contiguous, F-contiguous) by the rule in the header.
pub fn contiguity(shape: &[i64], strides: &[i64], itemsize: i64) -> (bool, bool) {
    if shape.contains(&0) {
        return (true, true);
    }
    let check = |axes: &mut dyn Iterator<Item = usize>| {
        let mut expect = itemsize;
        for k in axes {
            if shape[k] != 1 {
                if strides[k] != expect {
                    return false;
                }
                expect = expect.wrapping_mul(shape[k]);
            }
        }
        true
    };
    (check(&mut (0..shape.len()).rev()), check(&mut (0..shape.len())))
}

/// Does a view with `flags` satisfy the request? (`Err` names what fails.)
pub fn check_request(request: c_int, flags: u32) -> Result<(), &'static str> {
    if request & REQ_WRITABLE != 0 && flags & READONLY != 0 {
        return Err("the array is read-only (a writable view was requested)");
    }
    if request & REQ_C_CONTIGUOUS != 0 && flags & C_CONTIGUOUS == 0 {
        return Err("the array is not C-contiguous (a C-contiguous view was requested)");
    }
    if request & REQ_ANY_CONTIGUOUS != 0 && flags & (C_CONTIGUOUS | F_CONTIGUOUS) == 0 {
        return Err("the array is not contiguous (a contiguous view was requested)");
    }
    Ok(())
}

/// `int acquire(PyObject *obj, int request, ExtType_ArrayView *view)`.
pub type AcquireFn = unsafe extern "C" fn(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int;
/// `void release(PyObject *obj, ExtType_ArrayView *view)`.
pub type ReleaseFn = unsafe extern "C" fn(obj: *mut PyObject, view: *mut ArrayView);

/// The acquire/release pair registered on a type.
#[cfg(feature = "python")]
#[derive(Clone, Copy, Debug)]
pub struct Provider {
    /// The acquire slot.
    pub acquire: AcquireFn,
    /// The release slot.
    pub release: ReleaseFn,
}

#[cfg(feature = "python")]
impl Provider {
    /// The provider of `type(obj)`, if it has both slots. No GIL needed.
    ///
    /// Through the runtime's lookup reader ([`runtime::reader`]): both ids
    /// are probed in the one table its fast rungs resolve (own table or
    /// type cache entry); otherwise (a type not cached yet) each through the
    /// reader's whole ladder (the first fills the cache entry).
    ///
    /// # Safety
    /// [`runtime::import`] has succeeded; the caller holds a reference to `obj`.
    #[inline]
    pub unsafe fn of(obj: *mut PyObject) -> Option<Provider> {
        // SAFETY: forwarded (a live object's type is a live type, whose type
        // is its metaclass); tables live as long as their type; registered
        // pointers under these keys are functions of these signatures (the
        // interface's contract).
        unsafe {
            let (reader, tp) = (runtime::reader(), Py_TYPE(obj));
            let meta = Py_TYPE(tp.cast());
            let table = reader.table_of(tp, meta);
            let (a, r) = if table.is_null() {
                (reader.find_in_type(tp, meta, ID_ACQUIRE), reader.find_in_type(tp, meta, ID_RELEASE))
            } else {
                (crate::table::raw_lookup(table, ID_ACQUIRE), crate::table::raw_lookup(table, ID_RELEASE))
            };
            if a.is_null() || r.is_null() {
                return None;
            }
            Some(Provider {
                acquire: core::mem::transmute::<*const c_void, AcquireFn>(a),
                release: core::mem::transmute::<*const c_void, ReleaseFn>(r),
            })
        }
    }

    /// [`Provider::of`]; on a miss, the consumers' one slow path (docs/spec.md
    /// §12.3): a type exposing DLPack (`__dlpack_c_exchange_api__`, the older
    /// `__c_dlpack_exchange_api__`, or `__dlpack__`) is adopted as a provider
    /// (once: later lookups are ordinary hits). Otherwise a `TypeError`
    /// naming the missing key and the DLPack names looked for. The adoption
    /// is the array slot set's ([`set_adopt_on_miss`], else
    /// `extensibletype.arrays._adopt`).
    ///
    /// Adoption runs Python code (attribute lookups, `set_slots`): call this
    /// holding no lock that such code could need.
    ///
    /// # Safety
    /// As [`Provider::of`]; the GIL is held (an attached thread state).
    pub unsafe fn of_or_raise(obj: *mut PyObject) -> Result<Provider, runtime::PyErrSet> {
        // SAFETY: forwarded; GIL held for the error and the adoption.
        unsafe {
            if let Some(p) = Provider::of(obj) {
                return Ok(p);
            }
            if runtime::find(obj, ID_ACQUIRE).is_null() {
                adopt_on_miss(obj)?;
                if let Some(p) = Provider::of(obj) {
                    return Ok(p);
                }
            }
            let missing = if runtime::find(obj, ID_ACQUIRE).is_null() { KEY_ACQUIRE } else { KEY_RELEASE };
            // Only a type with an acquire and no release slot gets here.
            PyErr_Format(
                PyExc_TypeError,
                c"%R object does not provide \"%s\" (not an array provider)".as_ptr(),
                Py_TYPE(obj).cast::<PyObject>(),
                missing.as_ptr(),
            );
            Err(runtime::PyErrSet)
        }
    }
}

/// What [`Provider::of_or_raise`] calls on a miss to adopt `type(obj)`
/// (docs/spec.md §12.3): `Ok` when the caller should look up again (the
/// type may provide array.v1 now), `Err(PyErrSet)` with an exception set
/// (the consumer's `TypeError`, or what adoption raised).
///
/// # Safety
/// GIL held (an attached thread state); `obj` is live; the caller holds no
/// lock that Python code could need.
#[cfg(feature = "python")]
pub type AdoptFn = unsafe fn(obj: *mut PyObject) -> Result<(), runtime::PyErrSet>;

#[cfg(feature = "python")]
static ADOPT: std::sync::OnceLock<AdoptFn> = std::sync::OnceLock::new();

/// Make `adopt` the adoption [`Provider::of_or_raise`] runs on a miss in
/// this binary (the array.v1 slot set's `register` does, so its own
/// consumers adopt without a module import). The first call wins; later
/// calls change nothing. Without it a miss asks
/// `extensibletype.arrays._adopt(obj)`, as the C header's
/// `ExtType_ArrayGetView` does.
#[cfg(feature = "python")]
pub fn set_adopt_on_miss(adopt: AdoptFn) {
    let _ = ADOPT.set(adopt);
}

/// The adoption of a miss: the installed [`AdoptFn`], else
/// `extensibletype.arrays._adopt(obj)` (`Ok` too when nothing in this
/// process can adopt: the module is not importable or has no `_adopt`).
///
/// # Safety
/// As [`AdoptFn`].
#[cfg(feature = "python")]
unsafe fn adopt_on_miss(obj: *mut PyObject) -> Result<(), runtime::PyErrSet> {
    if let Some(adopt) = ADOPT.get() {
        // SAFETY: forwarded (the caller's contract is AdoptFn's).
        return unsafe { adopt(obj) };
    }
    // SAFETY: GIL held; every new reference is released on every path.
    unsafe {
        let module = PyImport_ImportModule(c"extensibletype.arrays".as_ptr());
        if module.is_null() {
            if PyErr_ExceptionMatches(PyExc_ImportError) == 0 {
                return Err(runtime::PyErrSet);
            }
            PyErr_Clear();
            return Ok(());
        }
        let adopt = PyObject_GetAttrString(module, c"_adopt".as_ptr());
        Py_DECREF(module);
        if adopt.is_null() || adopt == Py_None() {
            Py_XDECREF(adopt);
            PyErr_Clear();
            return Ok(());
        }
        let done = PyObject_CallFunctionObjArgs(adopt, obj, ptr::null_mut::<PyObject>());
        Py_DECREF(adopt);
        if done.is_null() {
            return Err(runtime::PyErrSet);
        }
        Py_DECREF(done);
        Ok(())
    }
}

/// Acquire a view of `obj`, run `f` on it, release it (also on panic).
///
/// `Err(PyErrSet)` (a Python exception is set) when `obj` has no provider
/// (`TypeError` naming the key) or the provider refuses.
///
/// # Safety
/// GIL held; [`runtime::import`] has succeeded; `obj` stays alive throughout.
#[cfg(feature = "python")]
pub unsafe fn with_view<R>(
    obj: *mut PyObject,
    request: c_int,
    f: impl FnOnce(&ArrayView) -> R,
) -> Result<R, runtime::PyErrSet> {
    // SAFETY: forwarded.
    unsafe {
        let provider = Provider::of_or_raise(obj)?;
        let mut view = ArrayView::new();
        acquire_with(provider, obj, request, &mut view)?;
        struct Release<'a>(Provider, *mut PyObject, &'a mut ArrayView);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                // SAFETY: the view was acquired from this provider on this object.
                unsafe { (self.0.release)(self.1, self.2) }
            }
        }
        let guard = Release(provider, obj, &mut view);
        Ok(f(guard.2))
    }
}

/// Call `provider.acquire` on a fresh `view`; turn a failure without an
/// exception (a broken provider) into `SystemError`. `Err(PyErrSet)`: a
/// Python exception is set.
///
/// # Safety
/// GIL held; `provider` belongs to `type(obj)`.
#[cfg(feature = "python")]
pub unsafe fn acquire_with(
    provider: Provider,
    obj: *mut PyObject,
    request: c_int,
    view: &mut ArrayView,
) -> Result<(), runtime::PyErrSet> {
    // SAFETY: the caller's contract.
    unsafe {
        if (provider.acquire)(obj, request, view) != 0 {
            if PyErr_Occurred().is_null() {
                PyErr_Format(
                    PyExc_SystemError,
                    c"the array acquire of %R failed without setting an exception".as_ptr(),
                    Py_TYPE(obj).cast::<PyObject>(),
                );
            }
            return Err(runtime::PyErrSet);
        }
        Ok(())
    }
}

const _: () = {
    assert!(core::mem::size_of::<ArrayView>() == 208);
    assert!(core::mem::offset_of!(ArrayView, data) == 8);
    assert!(core::mem::offset_of!(ArrayView, shape) == 16);
    assert!(core::mem::offset_of!(ArrayView, strides) == 24);
    assert!(core::mem::offset_of!(ArrayView, ndim) == 32);
    assert!(core::mem::offset_of!(ArrayView, flags) == 36);
    assert!(core::mem::offset_of!(ArrayView, dtype) == 40);
    assert!(core::mem::offset_of!(ArrayView, device) == 48);
    assert!(core::mem::offset_of!(ArrayView, owner) == 56);
    assert!(core::mem::offset_of!(ArrayView, internal) == 64);
    assert!(core::mem::offset_of!(ArrayView, scratch) == 80);
    assert!(ID_ACQUIRE == 0x90fb_a73f_de02_ade2);
    assert!(ID_RELEASE == 0xb474_eca7_1232_0062);
};

/// `(field, offset)` of every field of [`ArrayView`], and its size (for
/// the layout test against the header and the ctypes mirror).
pub fn layout() -> (&'static [(&'static str, usize)], usize) {
    use core::mem::offset_of;
    const FIELDS: &[(&str, usize)] = &[
        ("size", offset_of!(ArrayView, size)),
        ("version", offset_of!(ArrayView, version)),
        ("data", offset_of!(ArrayView, data)),
        ("shape", offset_of!(ArrayView, shape)),
        ("strides", offset_of!(ArrayView, strides)),
        ("ndim", offset_of!(ArrayView, ndim)),
        ("flags", offset_of!(ArrayView, flags)),
        ("dtype", offset_of!(ArrayView, dtype)),
        ("reserved", offset_of!(ArrayView, reserved)),
        ("device", offset_of!(ArrayView, device)),
        ("owner", offset_of!(ArrayView, owner)),
        ("internal", offset_of!(ArrayView, internal)),
        ("scratch", offset_of!(ArrayView, scratch)),
    ];
    (FIELDS, core::mem::size_of::<ArrayView>())
}
