//! Import: DLPack producer types -> array.v1 (`register_dlpack_type`):
//! acquire/release slots holding one managed tensor per view.

#[allow(unused_imports)]
use super::*;
use super::plan::check_tensor;
use std::sync::atomic::{AtomicPtr, Ordering};

/// `view.internal[0]` holds the managed tensor; bit 0 set: legacy.
pub(super) const LEGACY_TAG: usize = 1;

/// Fill an array.v1 view from a DLTensor; shape/strides (bytes) go into
/// the view's scratch, or into `heap` above 8 dimensions.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn fill_from_tensor(t: &DLTensor, flags: u64, v: &mut ArrayView, heap: &mut Vec<i64>) -> Result<(), PyErrSet> {
    // SAFETY: t is a live tensor (this function's contract).
    if unsafe { fill_small(t, flags, v) } {
        return Ok(());
    }
    let n = match check_tensor(t) {
        Ok(n) => n,
        Err(msg) => return raise(util::buffer_error(), &msg),
    };
    // SAFETY: t is live: its shape (non-NULL for n > 0, checked) and its
    // strides (if not NULL) hold n values.
    let (shape, strides) = unsafe { tensor_dims(t, n) };
    let itemsize = t.dtype.itemsize() as i64;
    // NULL strides (DLPack < 1.2 producers): C-contiguous, computed in
    // place (no allocation on an acquire).
    let c_stride = |k: usize| ((k + 1)..n).fold(1i64, |s, j| s.wrapping_mul(shape[j].max(1)));
    let stride_at = |k: usize| itemsize.wrapping_mul(strides.map_or_else(|| c_stride(k), |s| s[k]));
    v.version = abi::VERSION;
    v.data = (t.data as *mut u8).wrapping_add(t.byte_offset as usize).cast();
    v.ndim = n as i32;
    v.dtype = t.dtype;
    v.reserved = 0;
    v.device = t.device;
    v.owner = ptr::null_mut();
    if n <= abi::SCRATCH / 2 {
        // SAFETY: the caller's view stays put while filled (array.v1);
        // n <= SCRATCH / 2.
        unsafe { v.store_dims_in_scratch(shape.iter().copied(), (0..n).map(stride_at)) };
    } else {
        *heap = shape.iter().copied().chain((0..n).map(stride_at)).collect();
        v.shape = heap.as_mut_ptr();
        v.strides = heap.as_mut_ptr().wrapping_add(n);
    }
    let align = if t.dtype.code == abi::DL_COMPLEX { itemsize / 2 } else { itemsize }.clamp(1, 8);
    let aligned = (v.data as usize as i64) % align == 0
        && v.shape().iter().zip(v.strides()).all(|(&len, &st)| len <= 1 || st % align == 0);
    v.flags = if flags & FLAG_READ_ONLY != 0 { abi::READONLY } else { 0 } | if aligned { abi::ALIGNED } else { 0 };
    v.set_contiguity();
    Ok(())
}

/// A tensor's shape and strides (None: NULL, C-contiguous) as slices.
///
/// # Safety
/// `t` is live with `ndim == n`, its shape non-NULL when `n > 0`.
unsafe fn tensor_dims(t: &DLTensor, n: usize) -> (&[i64], Option<&[i64]>) {
    if n == 0 {
        return (&[], None);
    }
    // SAFETY: the caller's contract.
    let shape = unsafe { core::slice::from_raw_parts(t.shape, n) };
    // SAFETY: as above; strides checked non-NULL.
    let strides = (!t.strides.is_null()).then(|| unsafe { core::slice::from_raw_parts(t.strides, n) });
    (shape, strides)
}

/// [`fill_from_tensor`] for the common case, in one pass and without
/// allocating: at most 8 dimensions, strides given, whole-byte elements.
/// `false` (nothing promised about `v`): not that case, use the general
/// path (which also reports what is wrong).
///
/// # Safety
/// `t` is a live tensor (shape/strides hold ndim values); `v` stays put.
#[inline(always)]
unsafe fn fill_small(t: &DLTensor, flags: u64, v: &mut ArrayView) -> bool {
    let n = t.ndim;
    if !(0..=(abi::SCRATCH / 2) as i32).contains(&n) || t.dtype.bits % 8 != 0 || t.dtype.lanes == 0 {
        return false;
    }
    let n = n as usize;
    if n > 0 && (t.shape.is_null() || t.strides.is_null()) {
        return false;
    }
    let itemsize = t.dtype.itemsize() as i64;
    let align = if t.dtype.code == abi::DL_COMPLEX { itemsize / 2 } else { itemsize }.clamp(1, 8);
    if align & (align - 1) != 0 {
        return false; // an alignment that is no power of two: the general path
    }
    let data = (t.data as *mut u8).wrapping_add(t.byte_offset as usize);
    // Backwards: copy the dims (strides to bytes), check C order and gather
    // the strides that alignment looks at (axes longer than 1); then
    // forwards for Fortran order (the rules of abi::contiguity).
    let (mut c, mut c_expect, mut empty, mut strides_or) = (true, itemsize, false, 0i64);
    for k in (0..n).rev() {
        // SAFETY: k < ndim (the caller's contract); scratch holds 2 * 8.
        let (len, st) = unsafe { (*t.shape.add(k), itemsize.wrapping_mul(*t.strides.add(k))) };
        if len < 0 {
            return false;
        }
        v.scratch[k] = len;
        v.scratch[n + k] = st;
        if len > 1 {
            strides_or |= st;
            c &= st == c_expect;
            c_expect = c_expect.wrapping_mul(len);
        }
        empty |= len == 0;
    }
    let aligned = (data as usize as i64 | strides_or) & (align - 1) == 0;
    let mut f = c;
    if n > 1 {
        let mut f_expect = itemsize;
        f = true;
        for k in 0..n {
            let len = v.scratch[k];
            if len > 1 {
                f &= v.scratch[n + k] == f_expect;
                f_expect = f_expect.wrapping_mul(len);
            }
        }
    }
    if empty {
        (c, f) = (true, true);
    }
    v.version = abi::VERSION;
    v.data = data.cast();
    v.ndim = n as i32;
    v.dtype = t.dtype;
    v.reserved = 0;
    v.device = t.device;
    v.owner = ptr::null_mut();
    v.shape = v.scratch.as_mut_ptr();
    // SAFETY: n <= 8, inside scratch.
    v.strides = unsafe { v.scratch.as_mut_ptr().add(n) };
    v.flags = if flags & FLAG_READ_ONLY != 0 { abi::READONLY } else { 0 }
        | if aligned { abi::ALIGNED } else { 0 }
        | if c { abi::C_CONTIGUOUS } else { 0 }
        | if f { abi::F_CONTIGUOUS } else { 0 };
    true
}

/// A managed tensor received from a producer (owned until its deleter).
#[derive(Clone, Copy)]
pub(super) enum Managed {
    Versioned(*mut DLManagedTensorVersioned),
    Legacy(*mut DLManagedTensor),
}

impl Managed {
    /// Call the deleter (exactly once: the caller gives up the tensor).
    ///
    /// # Safety
    /// The GIL is held and every pointer argument is live and valid for its type.
    /// The caller owns the tensor and gives it up (its deleter runs once).
    unsafe fn delete(self) {
        // SAFETY: the caller owns the tensor.
        unsafe {
            match self {
                Managed::Versioned(mt) => delete_versioned(mt),
                Managed::Legacy(mt) => {
                    if let Some(d) = (*mt).deleter {
                        run_deleter(|| d(mt));
                    }
                }
            }
        }
    }
}

/// Fill `v` from a managed tensor and take it over (`internal[0]`); on
/// error the tensor's deleter is called. A major-version mismatch calls the
/// deleter and reads nothing else.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
/// The caller owns `m`; it is consumed on every path.
/// `stage` becomes [`Stage::Exported`] once the producer handed over a
/// tensor of our major version (what may fail after that is this object's
/// content, such as a sub-byte dtype, or the request).
pub(super) unsafe fn adopt(m: Managed, request: c_int, v: &mut ArrayView, obj: *mut PyObject, stage: &mut Stage) -> Result<(), PyErrSet> {
    // SAFETY: the caller owns m.
    unsafe {
        let (t, flags) = match m {
            Managed::Versioned(mt) => {
                if (*mt).version.major != MAJOR {
                    let major = (*mt).version.major;
                    m.delete();
                    return raise(
                        util::buffer_error(),
                        &format!("{}: DLPack major version {major} is not supported (this consumer speaks {MAJOR}.x)", who(obj)),
                    );
                }
                (&(*mt).dl_tensor, (*mt).flags)
            }
            Managed::Legacy(mt) => (&(*mt).dl_tensor, 0),
        };
        *stage = Stage::Exported;
        let mut heap = Vec::new();
        let r = fill_from_tensor(t, flags, v, &mut heap).and_then(|()| check_request_of(obj, request, v));
        if r.is_err() {
            m.delete();
            return Err(PyErrSet);
        }
        v.internal[0] = match m {
            Managed::Versioned(mt) => mt.cast(),
            Managed::Legacy(mt) => (mt as usize | LEGACY_TAG) as *mut c_void,
        };
        keep_heap_dims(v, heap);
        Ok(())
    }
}

/// The producer's type name, for error messages only (it allocates).
///
/// # Safety
/// The GIL is held; `obj` is live.
pub(super) unsafe fn who(obj: *mut PyObject) -> String {
    // SAFETY: the caller's contract.
    unsafe { util::type_name(obj) }
}

/// [`abi::check_request`] as a `BufferError` naming `obj`'s type.
///
/// # Safety
/// The GIL is held; `obj` is live.
unsafe fn check_request_of(obj: *mut PyObject, request: c_int, v: &ArrayView) -> Result<(), PyErrSet> {
    abi::check_request(request, v.flags).or_else(|why| {
        // SAFETY: the caller's contract (the name is formatted on failure only).
        let name = unsafe { who(obj) };
        raise(util::buffer_error(), &format!("{name}: {why}"))
    })
}

/// Above 8 dimensions [`fill_from_tensor`] put the dims in `heap`: move
/// them to the view (`internal[1]`, freed by [`dl_release`]).
///
/// # Safety
/// `v` was just filled by [`fill_from_tensor`] with this `heap`.
unsafe fn keep_heap_dims(v: &mut ArrayView, heap: Vec<i64>) {
    v.internal[1] = if heap.is_empty() {
        ptr::null_mut()
    } else {
        let b = Box::into_raw(heap.into_boxed_slice()).cast::<i64>();
        v.shape = b;
        // SAFETY: the block holds 2 * ndim values.
        v.strides = unsafe { b.add(v.ndim as usize) };
        b.cast()
    };
}

pub(super) fn check_view(v: &ArrayView, request: c_int) -> Result<(), PyErrSet> {
    if (v.size as usize) < core::mem::size_of::<ArrayView>() {
        return raise(util::value_error(), "array.v1 acquire: view struct too small (size field not set?)");
    }
    if request & !abi::REQ_ALL != 0 {
        return raise(util::buffer_error(), &format!("unsupported array.v1 request flags {request:#x}"));
    }
    Ok(())
}

/// How far an acquire got, for the first acquire of a type adopted on a
/// miss ([`super::adopt`]): did the producer's export work?
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stage {
    /// Refused before the producer was asked (bad view size or request flags).
    Untried,
    /// The producer was asked and failed (raised, returned no DLPack
    /// capsule, a tensor of another major version).
    Failed,
    /// The producer handed over a tensor of our major version (its content
    /// or the request may still be refused).
    Exported,
}

/// acquire through the type's DLPack C exchange table (found in the type's
/// table next to this slot: for tables beyond the [`POOL`]).
pub(crate) unsafe extern "C" fn dl_c_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    // SAFETY: the array.v1 contract (GIL held, obj alive, view writable);
    // the exchange table is registered with these slots and static.
    unsafe { c_acquire_entry(runtime::find(obj, ID_EXCHANGE_API).cast(), obj, request, view) }
}

/// Exchange tables that have an acquire of their own ([`dl_c_acquire_pooled`]):
/// the acquire then reads its table from a static instead of looking it up
/// in the type's table on every call. A slot, once taken, keeps its table
/// (DLPack: a table lives as long as the process).
const POOL: usize = 16;
static POOL_TABLES: [AtomicPtr<DLPackExchangeAPI>; POOL] = [const { AtomicPtr::new(ptr::null_mut()) }; POOL];

/// acquire through the exchange table in `POOL_TABLES[K]`.
unsafe extern "C" fn dl_c_acquire_pooled<const K: usize>(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    // SAFETY: the array.v1 contract; slot K was set (never reset) before
    // this function was registered on any type.
    unsafe { c_acquire_entry(POOL_TABLES[K].load(Ordering::Acquire), obj, request, view) }
}

const POOLED: [abi::AcquireFn; POOL] = [
    dl_c_acquire_pooled::<0>,
    dl_c_acquire_pooled::<1>,
    dl_c_acquire_pooled::<2>,
    dl_c_acquire_pooled::<3>,
    dl_c_acquire_pooled::<4>,
    dl_c_acquire_pooled::<5>,
    dl_c_acquire_pooled::<6>,
    dl_c_acquire_pooled::<7>,
    dl_c_acquire_pooled::<8>,
    dl_c_acquire_pooled::<9>,
    dl_c_acquire_pooled::<10>,
    dl_c_acquire_pooled::<11>,
    dl_c_acquire_pooled::<12>,
    dl_c_acquire_pooled::<13>,
    dl_c_acquire_pooled::<14>,
    dl_c_acquire_pooled::<15>,
];

/// The ordinary acquire for a type exporting through `api`: its pooled
/// acquire (a free slot is taken on first use), else [`dl_c_acquire`].
pub(crate) fn acquire_for(api: *const DLPackExchangeAPI) -> abi::AcquireFn {
    let api = api.cast_mut();
    for (slot, f) in POOL_TABLES.iter().zip(POOLED) {
        match slot.compare_exchange(ptr::null_mut(), api, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return f,
            Err(cur) if cur == api => return f,
            Err(_) => {}
        }
    }
    dl_c_acquire
}

/// The exchange-table acquire. Its hot path (a managed tensor of our major
/// version, at most 8 dimensions with strides given, the request met)
/// allocates nothing and runs nothing that can panic; everything else goes
/// to [`c_acquire_with`] or [`adopt`] under a panic guard.
///
/// Every view holds the producer's managed tensor until release: see
/// [`c_acquire_with`] for why the non-owning `dltensor_from_py_object_no_sync`
/// is not used.
///
/// # Safety
/// The array.v1 contract; `api` is NULL or the type's (static) table.
#[inline(always)]
unsafe fn c_acquire_entry(api: *const DLPackExchangeAPI, obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        let from_py = match api.as_ref().and_then(|a| a.managed_tensor_from_py_object_no_sync) {
            Some(from_py) if (*view).size as usize >= core::mem::size_of::<ArrayView>() && request & !abi::REQ_ALL == 0 => from_py,
            _ => return guard(-1, || c_acquire_with(api, obj, request, &mut *view, &mut Stage::Untried).map_or(-1, |()| 0)),
        };
        let mut mt: *mut DLManagedTensorVersioned = ptr::null_mut();
        if from_py(obj.cast(), &mut mt) != 0 || mt.is_null() {
            return managed_failed(obj);
        }
        let v = &mut *view;
        if (*mt).version.major != MAJOR || !fill_small(&(*mt).dl_tensor, (*mt).flags, v) || abi::check_request(request, v.flags).is_err() {
            return adopt_slow(mt, obj, request, v);
        }
        v.internal = [mt.cast(), ptr::null_mut()];
        0
    }
}

/// The producer's `managed_tensor_from_py_object_no_sync` failed: keep its
/// exception (or say it set none). Returns -1.
///
/// # Safety
/// The GIL is held; `obj` is live.
#[cold]
#[inline(never)]
unsafe fn managed_failed(obj: *mut PyObject) -> c_int {
    guard(-1, || {
        // SAFETY: GIL held (the array.v1 contract).
        unsafe {
            if PyErr_Occurred().is_null() {
                let _ = raise::<()>(
                    util::buffer_error(),
                    &format!("{}: managed_tensor_from_py_object_no_sync failed without an exception", who(obj)),
                );
            }
        }
        -1
    })
}

/// A managed tensor the hot path of [`c_acquire_entry`] does not take:
/// [`adopt`] (another major version, the general conversion or its error,
/// the request's refusal).
///
/// # Safety
/// As [`c_acquire_entry`]; the caller owns `mt` (consumed on every path).
#[cold]
#[inline(never)]
unsafe fn adopt_slow(mt: *mut DLManagedTensorVersioned, obj: *mut PyObject, request: c_int, v: &mut ArrayView) -> c_int {
    // SAFETY: the caller's contract.
    guard(-1, || unsafe { adopt(Managed::Versioned(mt), request, v, obj, &mut Stage::Untried).map_or(-1, |()| 0) })
}

/// The body of [`dl_c_acquire`]; `stage` says how far it got.
///
/// # Safety
/// The array.v1 contract: GIL held, `obj` alive, `v` writable; the type's
/// table holds the exchange table next to this acquire.
pub(crate) unsafe fn c_acquire(obj: *mut PyObject, request: c_int, v: &mut ArrayView, stage: &mut Stage) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract; the exchange table was registered with
    // these slots and is static.
    unsafe { c_acquire_with(runtime::find(obj, ID_EXCHANGE_API).cast(), obj, request, v, stage) }
}

/// [`c_acquire`] with the type's exchange table (NULL: missing) at hand.
///
/// The view always owns what it points at: the producer's managed tensor
/// (`managed_tensor_from_py_object_no_sync`, its `READ_ONLY` flag honoured),
/// held until release. The table's non-owning `dltensor_from_py_object_no_sync`
/// is not used: DLPack 1.3 vouches for its fill only "until control is
/// returned", while an array.v1 view stays valid until release, without the
/// GIL (another thread may resize the object meanwhile) — docs/arrays.md.
///
/// # Safety
/// As [`c_acquire`]; `api` is NULL or the type's (static) table.
unsafe fn c_acquire_with(
    api: *const DLPackExchangeAPI,
    obj: *mut PyObject,
    request: c_int,
    v: &mut ArrayView,
    stage: &mut Stage,
) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract.
    unsafe {
        check_view(v, request)?;
        let Some(from_py) = api.as_ref().and_then(|a| a.managed_tensor_from_py_object_no_sync) else {
            return raise(util::type_error(), "DLPack exchange table missing");
        };
        *stage = Stage::Failed;
        let mut mt: *mut DLManagedTensorVersioned = ptr::null_mut();
        if from_py(obj.cast(), &mut mt) != 0 || mt.is_null() {
            managed_failed(obj);
            return Err(PyErrSet);
        }
        adopt(Managed::Versioned(mt), request, v, obj, stage)
    }
}

/// Take the tensor out of a `__dlpack__` capsule, renaming it "used_...".
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn consume_capsule(cap: *mut PyObject, obj: *mut PyObject) -> Result<Managed, PyErrSet> {
    // SAFETY: GIL held; cap alive.
    unsafe {
        if PyCapsule_CheckExact(cap) == 0 {
            return raise(util::type_error(), &format!("{}.__dlpack__() returned {}, not a capsule", who(obj), util::type_name(cap)));
        }
        if PyCapsule_IsValid(cap, NAME_VERSIONED.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_VERSIONED.as_ptr()).cast::<DLManagedTensorVersioned>();
            if PyCapsule_SetName(cap, NAME_USED_VERSIONED.as_ptr()) < 0 {
                return Err(PyErrSet);
            }
            return Ok(Managed::Versioned(mt));
        }
        if PyCapsule_IsValid(cap, NAME_LEGACY.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_LEGACY.as_ptr()).cast::<DLManagedTensor>();
            if PyCapsule_SetName(cap, NAME_USED_LEGACY.as_ptr()) < 0 {
                return Err(PyErrSet);
            }
            return Ok(Managed::Legacy(mt));
        }
        let name = PyCapsule_GetName(cap);
        let name = if name.is_null() { String::from("NULL") } else { CStr::from_ptr(name).to_string_lossy().into_owned() };
        PyErr_Clear();
        if name.starts_with("used_") {
            return raise(util::value_error(), &format!("{}: the DLPack capsule {name:?} was already consumed", who(obj)));
        }
        raise(
            util::value_error(),
            &format!("{}: a DLPack capsule must be named \"dltensor_versioned\" or \"dltensor\", not {name:?}", who(obj)),
        )
    }
}

/// Interned names and the `max_version` keyword call of the Python path.
pub(super) struct PyNames {
    dlpack: *mut PyObject,
    kwnames: *mut PyObject,
    version: *mut PyObject,
}

// SAFETY: immortal-by-leak objects created once with the GIL, only read
// (with the GIL) afterwards.
unsafe impl Send for PyNames {}
// SAFETY: as for Send: never written after creation.
unsafe impl Sync for PyNames {}

pub(super) static PY_NAMES: std::sync::OnceLock<PyNames> = std::sync::OnceLock::new();

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn py_names() -> Result<&'static PyNames, PyErrSet> {
    if let Some(n) = PY_NAMES.get() {
        return Ok(n);
    }
    // SAFETY: GIL held; the objects are leaked (live for the process).
    unsafe {
        let dlpack = PyUnicode_InternFromString(c"__dlpack__".as_ptr());
        let kwnames = Py_BuildValue(c"(s)".as_ptr(), c"max_version".as_ptr());
        let version = Py_BuildValue(c"(II)".as_ptr(), MAJOR, MINOR);
        if dlpack.is_null() || kwnames.is_null() || version.is_null() {
            return Err(PyErrSet);
        }
        Ok(PY_NAMES.get_or_init(|| PyNames { dlpack, kwnames, version }))
    }
}

/// `obj.__dlpack__(max_version=(1, 3))`, or `obj.__dlpack__()` when that
/// raises TypeError (a pre-2023 producer).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn call_dunder(obj: *mut PyObject) -> Result<Owned, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        let names = py_names()?;
        let argv = [obj, names.version];
        let cap = PyObject_VectorcallMethod(names.dlpack, argv.as_ptr(), 1, names.kwnames);
        if !cap.is_null() {
            return Ok(Owned(cap));
        }
        if PyErr_ExceptionMatches(PyExc_TypeError) == 0 {
            return Err(PyErrSet);
        }
        // Kept: if the retry fails too, its exception gets this one as
        // __context__ (as a Python `except TypeError:` retry would).
        let first = util::take_exception();
        let cap = PyObject_VectorcallMethod(names.dlpack, argv.as_ptr(), 1, ptr::null_mut());
        if cap.is_null() {
            match (first, util::take_exception()) {
                (Some(first), Some(second)) => {
                    PyException_SetContext(second.0, first.into_ptr()); // steals
                    util::restore_exception(second);
                }
                (first, second) => {
                    if let Some(e) = second.or(first) {
                        util::restore_exception(e);
                    }
                }
            }
            return Err(PyErrSet);
        }
        Ok(Owned(cap))
    }
}

/// acquire through `obj.__dlpack__()`.
pub(crate) unsafe extern "C" fn dl_py_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: the array.v1 contract.
        unsafe { py_acquire(obj, request, &mut *view, &mut Stage::Untried).map_or(-1, |()| 0) }
    })
}

/// The body of [`dl_py_acquire`]; `stage` says how far it got.
///
/// # Safety
/// The array.v1 contract: GIL held, `obj` alive, `v` writable.
pub(crate) unsafe fn py_acquire(obj: *mut PyObject, request: c_int, v: &mut ArrayView, stage: &mut Stage) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract.
    unsafe {
        check_view(v, request)?;
        *stage = Stage::Failed;
        call_dunder(obj).and_then(|cap| consume_capsule(cap.0, obj)).and_then(|m| adopt(m, request, v, obj, stage))
    }
}

/// release of both paths: the tensor's deleter, the heap dims.
pub(crate) unsafe extern "C" fn dl_release(_obj: *mut PyObject, view: *mut ArrayView) {
    // SAFETY: paired with a successful dl_*_acquire on this view.
    unsafe {
        let v = &mut *view;
        let tagged = v.internal[0] as usize;
        if tagged & LEGACY_TAG != 0 || !v.internal[1].is_null() {
            return release_other(v);
        }
        // The common case: a versioned tensor, the dims in the scratch.
        v.internal[0] = ptr::null_mut();
        if tagged != 0 {
            delete_versioned(tagged as *mut DLManagedTensorVersioned);
        }
    }
}

/// The rest of [`dl_release`]: a legacy tensor's deleter, heap dims.
///
/// # Safety
/// `v` was filled by a successful acquire of this module and not released.
#[cold]
#[inline(never)]
unsafe fn release_other(v: &mut ArrayView) {
    guard((), || {
        // SAFETY: paired with a successful dl_*_acquire on this view.
        unsafe {
            let tagged = v.internal[0] as usize;
            v.internal[0] = ptr::null_mut();
            if tagged != 0 {
                if tagged & LEGACY_TAG != 0 {
                    Managed::Legacy((tagged & !LEGACY_TAG) as *mut DLManagedTensor).delete();
                } else {
                    Managed::Versioned(tagged as *mut DLManagedTensorVersioned).delete();
                }
            }
            let b = v.internal[1].cast::<i64>();
            if !b.is_null() {
                drop(Box::from_raw(ptr::slice_from_raw_parts_mut(b, 2 * v.ndim as usize)));
                v.internal[1] = ptr::null_mut();
            }
        }
    })
}

/// The exchange table on `tp` (a type), if it has one: DLPack 1.3's
/// `__dlpack_c_exchange_api__` (a `"dlpack_exchange_api"` capsule), else
/// the older `__c_dlpack_exchange_api__` of pre-1.3 producers (the same
/// capsule, or the table's address as an int). `Ok(None)` when neither
/// attribute exists; `Err` for an attribute of the wrong kind or a capsule
/// of another name.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn exchange_api_of(tp: *mut PyObject) -> Result<Option<*const DLPackExchangeAPI>, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        for (name, int_ok) in [(ATTR_EXCHANGE_API, false), (ATTR_EXCHANGE_API_OLD, true)] {
            let attr = PyObject_GetAttrString(tp, name.as_ptr());
            if attr.is_null() {
                if PyErr_ExceptionMatches(PyExc_AttributeError) != 0 {
                    PyErr_Clear();
                    continue;
                }
                return Err(PyErrSet);
            }
            let attr = Owned(attr);
            if int_ok && PyLong_Check(attr.0) != 0 {
                let api = PyLong_AsVoidPtr(attr.0).cast::<DLPackExchangeAPI>();
                if api.is_null() {
                    if PyErr_Occurred().is_null() {
                        return raise(util::value_error(), &format!("{name:?} is a NULL address"));
                    }
                    return Err(PyErrSet);
                }
                return Ok(Some(api));
            }
            if PyCapsule_CheckExact(attr.0) == 0 {
                return raise(
                    util::type_error(),
                    &format!("{name:?} must be a PyCapsule named \"dlpack_exchange_api\""),
                );
            }
            let api = PyCapsule_GetPointer(attr.0, NAME_EXCHANGE_API.as_ptr()).cast::<DLPackExchangeAPI>();
            if api.is_null() {
                return Err(PyErrSet); // ValueError from PyCapsule_GetPointer: wrong name
            }
            return Ok(Some(api));
        }
        Ok(None)
    }
}

/// `register_dlpack_type(tp) -> str`: "c" (exchange table), "python", or
/// "subclasses" (an abstract base: its DLPack subclasses are adopted).
pub(crate) unsafe extern "C" fn py_register_dlpack_type(_m: *mut PyObject, tp: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; runtime imported at module init.
        ret(unsafe { register_impl(tp) })
    })
}

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn register_impl(tp: *mut PyObject) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        if PyType_Check(tp) == 0 {
            let name = util::type_name(tp);
            return raise(util::type_error(), &format!("register_dlpack_type() argument must be a type, not {name}"));
        }
        let mode = match super::adopt::probe(tp)? {
            Ok(export) => {
                super::adopt::publish(tp, export, false)?;
                match export {
                    super::adopt::Export::C(_) => c"c",
                    super::adopt::Export::Python => c"python",
                }
            }
            Err(why) => {
                if super::adopt::add_base(tp)? {
                    c"subclasses"
                } else if why.no_dlpack {
                    return raise(
                        util::type_error(),
                        "register_dlpack_type(): the type has neither __dlpack_c_exchange_api__ (nor the older \
                         __c_dlpack_exchange_api__) nor __dlpack__, and is not an abstract base",
                    );
                } else {
                    return raise(util::type_error(), &format!("register_dlpack_type(): {}", why.text));
                }
            }
        };
        Ok(Owned::new(PyUnicode_FromString(mode.as_ptr()))?.into_ptr())
    }
}
