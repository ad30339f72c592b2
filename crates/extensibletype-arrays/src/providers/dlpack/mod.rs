//! DLPack 1.3 both ways.
//!
//! **Out of array.v1**: [`export`] turns any array.v1 provider into a
//! DLPack managed tensor (legacy `"dltensor"` or `"dltensor_versioned"`
//! capsule), holding one acquired view, and so the provider's pin on the
//! memory, until the deleter runs. `Array.__dlpack__`, `to_dlpack(obj)` and
//! the exchange table's `managed_tensor_from_py_object_no_sync` all use it.
//! `Array`'s type carries `__dlpack_c_exchange_api__` ([`EXCHANGE_API`]).
//!
//! **Into array.v1**: [`py_register_dlpack_type`] registers, on any type
//! with `__dlpack_c_exchange_api__` (the C path) or `__dlpack__` (the Python
//! path), acquire/release slots that hold one managed tensor per view and
//! call its deleter on release.
//!
//! Every deleter made here takes the GIL itself (it releases an array.v1
//! view and a reference) and does nothing once the interpreter is gone.

use core::ffi::{c_int, c_void, CStr};
use core::ptr;
use std::hint::black_box;
use std::time::Instant;

use pyo3_ffi::*;

use crate::abi::{self, ArrayView, DLDataType, DLDevice, Provider};
use crate::dlpack_abi::*;
use crate::consumers::nd::Nd;
use crate::util::{self, guard, raise, ret, Owned};
use crate::runtime::{self, SlotDef};
use crate::id;

/// Private slot key: the exchange table of a type registered through the
/// C path (the acquire slot finds it in the same table as itself).
pub(crate) const KEY_EXCHANGE_API: &CStr = c"extensibletype.arrays.dlpack:exchange_api";
/// Id of [`KEY_EXCHANGE_API`].
const ID_EXCHANGE_API: u64 = id!("extensibletype.arrays.dlpack:exchange_api");

/// Inline element strides for exports up to this many dimensions.
const INLINE_DIMS: usize = 8;

// ---- export: array.v1 -> DLPack ---------------------------------------------

/// What `__dlpack__` / `to_dlpack` were asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    /// `None`: legacy capsule; `Some`: the consumer's max version.
    pub max_version: Option<(u32, u32)>,
    /// Requested device (`None`: the array's own).
    pub dl_device: Option<DLDevice>,
    /// `Some(true)`: must copy; `Some(false)`: must not; `None`: if needed.
    pub copy: Option<bool>,
    /// The consumer passed a stream other than None.
    pub stream_given: bool,
}

/// One export: the managed tensor (versioned or legacy, one of the two is
/// handed out), the view it describes, and what keeps the memory alive.
struct Export {
    versioned: DLManagedTensorVersioned,
    legacy: DLManagedTensor,
    /// The acquired view (when sharing memory) and its provider.
    view: ArrayView,
    provider: Option<Provider>,
    /// Strong reference to the exporter (when sharing memory).
    obj: *mut PyObject,
    /// Element strides (inline up to [`INLINE_DIMS`]) ...
    strides: [i64; INLINE_DIMS],
    /// ... or on the heap above, with the shape of a copy.
    heap: Vec<i64>,
    /// The copied elements (`copy=True`, or strides that are not whole
    /// elements); u64 words: 8-byte alignment for every dtype.
    copy: Vec<u64>,
}

/// Does the interpreter still run? (Deleters may be called at exit.)
fn interpreter_alive() -> bool {
    // SAFETY: callable at any time, with or without the GIL.
    unsafe { Py_IsInitialized() != 0 }
}

/// Does this thread hold the GIL? (Limited API: unknown, so no: callers
/// then take it with `PyGILState_Ensure`, which nests.)
fn gil_held() -> bool {
    #[cfg(not(Py_LIMITED_API))]
    // SAFETY: callable at any time after initialisation (checked by callers).
    return unsafe { PyGILState_Check() != 0 };
    #[cfg(Py_LIMITED_API)]
    return false;
}

/// Free an [`Export`]: release the view, drop the reference. Takes the GIL.
///
/// # Safety
/// `ctx` came from [`export`] and is freed once.
unsafe fn free_export(ctx: *mut Export) {
    if ctx.is_null() || !interpreter_alive() {
        return;
    }
    // SAFETY: the GIL is held (checked) or taken before any Python API
    // call; ctx is ours.
    unsafe {
        // Most deleters run with the GIL (capsule destructors, array.v1
        // releases): skip the Ensure/Release pair then.
        let held = gil_held();
        let gil = if held { None } else { Some(PyGILState_Ensure()) };
        let mut e = Box::from_raw(ctx);
        if let Some(p) = e.provider.take() {
            (p.release)(e.obj, &mut e.view);
        }
        if !e.obj.is_null() {
            Py_DECREF(e.obj);
        }
        drop(e);
        if let Some(g) = gil {
            PyGILState_Release(g);
        }
    }
}

unsafe extern "C" fn deleter_versioned(mt: *mut DLManagedTensorVersioned) {
    // SAFETY: mt is the `versioned` field of an Export (manager_ctx), as
    // handed out by export(); DLPack calls a deleter once.
    guard((), || unsafe {
        if !mt.is_null() {
            free_export((*mt).manager_ctx.cast());
        }
    })
}

unsafe extern "C" fn deleter_legacy(mt: *mut DLManagedTensor) {
    // SAFETY: as deleter_versioned, for the `legacy` field.
    guard((), || unsafe {
        if !mt.is_null() {
            free_export((*mt).manager_ctx.cast());
        }
    })
}

/// Copy the elements of `src` in C order into `dst` (`nbytes` long).
///
/// # Safety
/// `src` is a live CPU view; `dst` holds `src.size() * itemsize` bytes.
unsafe fn copy_c_order(src: &ArrayView, dst: *mut u8) {
    let itemsize = src.itemsize();
    let nd = Nd::<1>::new([src], false);
    let (len, [s]) = nd.inner();
    let mut out = dst;
    // SAFETY: every run lies inside the view; out advances within dst.
    unsafe {
        for [p] in nd.runs() {
            if s == itemsize as isize {
                ptr::copy_nonoverlapping(p, out, len * itemsize);
                out = out.add(len * itemsize);
            } else {
                for i in 0..len {
                    ptr::copy_nonoverlapping(p.wrapping_offset(i as isize * s), out, itemsize);
                    out = out.add(itemsize);
                }
            }
        }
    }
}

/// Export `obj` (any array.v1 provider) as a managed tensor. Returns the
/// tensor (`*mut DLManagedTensorVersioned` or `*mut DLManagedTensor`, by
/// `req.max_version`) and whether it is versioned.
///
/// # Safety
/// GIL held; `obj` alive; [`runtime::import`] done.
pub(crate) unsafe fn export(obj: *mut PyObject, req: Request) -> Result<(*mut c_void, bool), ()> {
    // SAFETY: GIL held; the view stays in the boxed Export (fixed address)
    // from acquire to release.
    unsafe {
        let provider = Provider::of_or_raise(obj)?;
        let mut e = Box::new(Export {
            versioned: DLManagedTensorVersioned {
                version: DLPackVersion { major: MAJOR, minor: MINOR },
                manager_ctx: ptr::null_mut(),
                deleter: Some(deleter_versioned),
                flags: 0,
                dl_tensor: DLTensor::zeroed(),
            },
            legacy: DLManagedTensor { dl_tensor: DLTensor::zeroed(), manager_ctx: ptr::null_mut(), deleter: Some(deleter_legacy) },
            view: ArrayView::new(),
            provider: None,
            obj: ptr::null_mut(),
            strides: [0; INLINE_DIMS],
            heap: Vec::new(),
            copy: Vec::new(),
        });
        abi::acquire_with(provider, obj, 0, &mut e.view)?;
        e.provider = Some(provider);
        e.obj = Py_NewRef(obj);
        // From here on, dropping `guard` releases the view and the reference.
        struct Undo(Option<Box<Export>>);
        impl Drop for Undo {
            fn drop(&mut self) {
                if let Some(e) = self.0.take() {
                    // SAFETY: a fully initialised, not yet handed out Export.
                    unsafe { free_export(Box::into_raw(e)) }
                }
            }
        }
        let mut undo = Undo(Some(e));
        let e = undo.0.as_mut().expect("set above");
        let v = &e.view;
        let name = util::type_name(obj);
        if req.stream_given && v.device.device_type == KDL_CPU {
            return raise(util::value_error(), "__dlpack__: stream must be None for CPU arrays");
        }
        if req.stream_given {
            return raise(
                util::buffer_error(),
                &format!("{name}: cannot synchronise streams for DLPack device {}", v.device.device_type),
            );
        }
        if let Some(dev) = req.dl_device {
            if dev != v.device {
                return raise(
                    util::buffer_error(),
                    &format!(
                        "{name}: cannot export to DLPack device ({}, {}); the array is on ({}, {})",
                        dev.device_type, dev.device_id, v.device.device_type, v.device.device_id
                    ),
                );
            }
        }
        if v.flags & abi::BYTESWAPPED != 0 {
            return raise(util::buffer_error(), &format!("{name}: DLPack has no non-native byte order"));
        }
        let itemsize = v.itemsize() as i64;
        if itemsize == 0 || v.dtype.bits % 8 != 0 {
            return raise(util::buffer_error(), &format!("{name}: dtype {} has no whole-byte elements", v.dtype.name()));
        }
        let whole = v.strides().iter().all(|s| s % itemsize == 0);
        let must_copy = match req.copy {
            Some(true) => true,
            Some(false) if !whole => {
                return raise(
                    util::buffer_error(),
                    &format!("{name}: strides are not whole elements; DLPack needs a copy (copy=False)"),
                )
            }
            _ => !whole,
        };
        if must_copy && v.device.device_type != KDL_CPU {
            return raise(util::buffer_error(), &format!("{name}: copies are made of CPU arrays only"));
        }
        let versioned = match req.max_version {
            Some((major, _)) => major >= MAJOR,
            None => false,
        };
        if !versioned && !must_copy && v.flags & abi::READONLY != 0 {
            return raise(
                util::buffer_error(),
                &format!("{name}: a read-only array cannot be exported as a legacy \"dltensor\" (pass max_version)"),
            );
        }
        let n = v.ndim.max(0) as usize;
        let mut t = DLTensor {
            data: v.data,
            device: v.device,
            ndim: n as i32,
            dtype: v.dtype,
            shape: v.shape,
            strides: ptr::null_mut(),
            byte_offset: 0,
        };
        let mut flags = 0;
        if must_copy {
            let size = v.size() as usize;
            let bytes = size * itemsize as usize;
            e.copy = vec![0u64; bytes.div_ceil(8).max(1)];
            copy_c_order(&e.view, e.copy.as_mut_ptr().cast());
            // Shape then C strides (elements), owned by the export.
            e.heap = e.view.shape().to_vec();
            let mut s = 1i64;
            let mut strides = vec![0i64; n];
            for k in (0..n).rev() {
                strides[k] = s;
                s *= e.heap[k].max(1);
            }
            e.heap.extend(strides);
            // The memory is ours now: release the view and the reference.
            if let Some(p) = e.provider.take() {
                (p.release)(e.obj, &mut e.view);
            }
            Py_DECREF(e.obj);
            e.obj = ptr::null_mut();
            t.data = e.copy.as_mut_ptr().cast();
            if n > 0 {
                t.shape = e.heap.as_mut_ptr();
                t.strides = e.heap.as_mut_ptr().add(n);
            } else {
                t.shape = ptr::null_mut();
            }
            flags |= FLAG_IS_COPIED;
        } else {
            if e.view.flags & abi::READONLY != 0 {
                flags |= FLAG_READ_ONLY;
            }
            let strides = e.view.strides().iter().map(|s| s / itemsize);
            if n <= INLINE_DIMS {
                for (slot, s) in e.strides.iter_mut().zip(strides) {
                    *slot = s;
                }
                if n > 0 {
                    t.strides = e.strides.as_mut_ptr();
                }
            } else {
                e.heap = strides.collect();
                t.strides = e.heap.as_mut_ptr();
            }
            if n == 0 {
                t.shape = ptr::null_mut();
            }
        }
        let ctx: *mut Export = &mut **e;
        let out: *mut c_void = if versioned {
            e.versioned.flags = flags;
            e.versioned.dl_tensor = t;
            e.versioned.manager_ctx = ctx.cast();
            ptr::addr_of_mut!(e.versioned).cast()
        } else {
            e.legacy.dl_tensor = t;
            e.legacy.manager_ctx = ctx.cast();
            ptr::addr_of_mut!(e.legacy).cast()
        };
        // Handed out: the deleter frees it from now on.
        let _ = Box::into_raw(undo.0.take().expect("set above"));
        Ok((out, versioned))
    }
}

#[allow(deprecated)] // PyErr_Fetch/Restore: in every supported version's (limited) API
unsafe extern "C" fn capsule_destructor(cap: *mut PyObject) {
    // SAFETY: CPython calls this with the GIL on the capsule's last
    // reference. A consumed capsule has been renamed "used_..." and its
    // tensor belongs to the consumer: nothing to do then.
    guard((), || unsafe {
        let (mut tp, mut val, mut tb) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        PyErr_Fetch(&mut tp, &mut val, &mut tb);
        if PyCapsule_IsValid(cap, NAME_VERSIONED.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_VERSIONED.as_ptr()).cast::<DLManagedTensorVersioned>();
            if let Some(d) = (*mt).deleter {
                d(mt);
            }
        } else if PyCapsule_IsValid(cap, NAME_LEGACY.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_LEGACY.as_ptr()).cast::<DLManagedTensor>();
            if let Some(d) = (*mt).deleter {
                d(mt);
            }
        }
        PyErr_Restore(tp, val, tb);
    })
}

/// [`export`] wrapped in a capsule (`"dltensor"` / `"dltensor_versioned"`).
///
/// # Safety
/// As [`export`].
pub(crate) unsafe fn export_capsule(obj: *mut PyObject, req: Request) -> Result<*mut PyObject, ()> {
    // SAFETY: forwarded; on capsule failure the tensor is deleted here.
    unsafe {
        let (mt, versioned) = export(obj, req)?;
        let name = if versioned { NAME_VERSIONED } else { NAME_LEGACY };
        let cap = PyCapsule_New(mt, name.as_ptr(), Some(capsule_destructor));
        if cap.is_null() {
            if versioned {
                deleter_versioned(mt.cast());
            } else {
                deleter_legacy(mt.cast());
            }
            return Err(());
        }
        Ok(cap)
    }
}

/// Parse `stream=None, max_version=None, dl_device=None, copy=None` from
/// fastcall keywords (`skip` positional arguments are the caller's).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn parse_request(
    func: &str,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<Request, ()> {
    // SAFETY: GIL held; fastcall arguments as CPython passes them.
    unsafe {
        let mut req = Request { max_version: None, dl_device: None, copy: None, stream_given: false };
        if kwnames.is_null() {
            return Ok(req);
        }
        for i in 0..PyTuple_Size(kwnames) {
            let key = util::str_of(PyTuple_GetItem(kwnames, i)).unwrap_or_default();
            let v = *args.offset(nargs + i);
            let none = v == Py_None();
            match key.as_str() {
                "stream" => req.stream_given = !none,
                "max_version" if !none => {
                    let pair = int_pair(v).ok_or(()).or_else(|()| {
                        raise(util::type_error(), &format!("{func}: max_version must be a (major, minor) tuple of ints"))
                    })?;
                    if pair.0 < 0 || pair.1 < 0 {
                        return raise(util::value_error(), &format!("{func}: negative max_version"));
                    }
                    req.max_version = Some((pair.0.min(u32::MAX as i64) as u32, pair.1.min(u32::MAX as i64) as u32));
                }
                "dl_device" if !none => {
                    let pair = int_pair(v).ok_or(()).or_else(|()| {
                        raise(util::type_error(), &format!("{func}: dl_device must be a (device_type, device_id) tuple of ints"))
                    })?;
                    req.dl_device = Some(DLDevice { device_type: pair.0 as i32, device_id: pair.1 as i32 });
                }
                "copy" if !none => {
                    if PyBool_Check(v) == 0 {
                        return raise(util::type_error(), &format!("{func}: copy must be True, False or None"));
                    }
                    req.copy = Some(v == Py_True());
                }
                "max_version" | "dl_device" | "copy" => {}
                _ => return raise(util::type_error(), &format!("{func} got an unexpected keyword argument '{key}'")),
            }
        }
        Ok(req)
    }
}

/// A 2-tuple of ints fitting i32/i64 (None: not one; errors cleared).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn int_pair(v: *mut PyObject) -> Option<(i64, i64)> {
    // SAFETY: GIL held.
    unsafe {
        if PyTuple_Check(v) == 0 || PyTuple_Size(v) != 2 {
            return None;
        }
        let a = PyTuple_GetItem(v, 0);
        let b = PyTuple_GetItem(v, 1);
        if PyLong_Check(a) == 0 || PyLong_Check(b) == 0 {
            return None;
        }
        let (x, y) = (PyLong_AsLongLong(a), PyLong_AsLongLong(b));
        if !PyErr_Occurred().is_null() {
            PyErr_Clear();
            return None;
        }
        Some((x, y))
    }
}

/// `Array.__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None)`.
pub(crate) unsafe extern "C" fn array_dlpack(
    obj: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; fastcall arguments.
        ret(unsafe {
            if nargs != 0 {
                raise(util::type_error(), "__dlpack__() takes no positional arguments")
            } else {
                parse_request("__dlpack__()", args, nargs, kwnames).and_then(|req| export_capsule(obj, req))
            }
        })
    })
}

/// `Array.__dlpack_device__()`: `(kDLCPU, 0)`.
pub(crate) unsafe extern "C" fn array_dlpack_device(_obj: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held.
    guard(ptr::null_mut(), || unsafe { Py_BuildValue(c"(ii)".as_ptr(), KDL_CPU, 0 as c_int) })
}

/// `to_dlpack(obj, *, stream=None, max_version=None, dl_device=None, copy=None)`.
unsafe extern "C" fn py_to_dlpack(
    _m: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; fastcall arguments.
        ret(unsafe {
            if nargs != 1 {
                raise(util::type_error(), &format!("to_dlpack() takes exactly 1 positional argument ({nargs} given)"))
            } else {
                parse_request("to_dlpack()", args, nargs, kwnames).and_then(|req| export_capsule(*args, req))
            }
        })
    })
}

// ---- the exchange table of Array -------------------------------------------------

/// The Array type, for type checks in the table's functions.
fn array_type() -> *mut PyTypeObject {
    crate::providers::array::array_type()
}

/// Set a Python error from a table function (GIL held).
fn table_error<T>(exc: *mut PyObject, msg: &str) -> Result<T, ()> {
    raise(exc, msg)
}

unsafe extern "C" fn xapi_from_py(py_object: *mut c_void, out: *mut *mut DLManagedTensorVersioned) -> c_int {
    guard(-1, || {
        // SAFETY: the table's contract: GIL held, py_object an object of the
        // type the table was found on, out writable.
        unsafe {
            let obj = py_object.cast::<PyObject>();
            let req = Request { max_version: Some((MAJOR, MINOR)), dl_device: None, copy: Some(false), stream_given: false };
            match export(obj, req) {
                Ok((mt, _)) => {
                    *out = mt.cast();
                    0
                }
                Err(()) => -1,
            }
        }
    })
}

unsafe extern "C" fn xapi_dltensor_from_py(py_object: *mut c_void, out: *mut DLTensor) -> c_int {
    // No guard: nothing here can panic, and this is the fast path.
    // SAFETY: the table's contract (GIL held, out writable).
    unsafe {
        let obj = py_object.cast::<PyObject>();
        if PyObject_TypeCheck(obj, array_type()) == 0 {
            let _ = table_error::<()>(util::type_error(), "dltensor_from_py_object_no_sync: not an extensibletype Array");
            return -1;
        }
        crate::providers::array::dl_fill(obj, &mut *out);
        0
    }
}

unsafe extern "C" fn xapi_to_py(tensor: *mut DLManagedTensorVersioned, out_py_object: *mut *mut c_void) -> c_int {
    guard(-1, || {
        // SAFETY: the table's contract: GIL held; we own `tensor` (stolen)
        // and call its deleter exactly once on every path.
        unsafe {
            match to_py_impl(tensor) {
                Ok(o) => {
                    *out_py_object = o.cast();
                    0
                }
                Err(()) => -1,
            }
        }
    })
}

/// Call a versioned tensor's deleter (if any).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
/// The caller owns `mt` and gives it up (its deleter runs once).
unsafe fn delete_versioned(mt: *mut DLManagedTensorVersioned) {
    // SAFETY: the caller owns mt.
    unsafe {
        if let Some(d) = (*mt).deleter {
            d(mt);
        }
    }
}

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
/// The caller owns `mt`; it is consumed on every path.
unsafe fn to_py_impl(mt: *mut DLManagedTensorVersioned) -> Result<*mut PyObject, ()> {
    // SAFETY: GIL held; mt is ours until its deleter runs.
    unsafe {
        if mt.is_null() {
            return raise(util::value_error(), "managed_tensor_to_py_object_no_sync: NULL tensor");
        }
        struct Del(*mut DLManagedTensorVersioned);
        impl Drop for Del {
            fn drop(&mut self) {
                // SAFETY: owned by the enclosing call.
                unsafe { delete_versioned(self.0) }
            }
        }
        let del = Del(mt);
        if (*mt).version.major != MAJOR {
            return raise(util::buffer_error(), &format!("DLPack major version {} is not supported", (*mt).version.major));
        }
        // Our own zero-copy export of an Array: the Array itself. (Only our
        // exports have this deleter: its body is unique to this module, so
        // no other function is merged with it; a miss just copies.)
        if (*mt).deleter.is_some_and(|d| core::ptr::fn_addr_eq(d, deleter_versioned as VersionedDeleter)) {
            let e = &*(*mt).manager_ctx.cast::<Export>();
            if !e.obj.is_null() && PyObject_TypeCheck(e.obj, array_type()) != 0 {
                let o = Py_NewRef(e.obj);
                drop(del);
                return Ok(o);
            }
        }
        // Anything else: a new Array holding a copy.
        let t = &(*mt).dl_tensor;
        let mut view = ArrayView::new();
        fill_from_tensor(t, (*mt).flags, &mut view, &mut Vec::new())?;
        let dtype = match view.dtype {
            DLDataType::F64 => c"float64",
            DLDataType::F32 => c"float32",
            DLDataType::I64 => c"int64",
            other => return raise(util::buffer_error(), &format!("Array cannot hold dtype {}", other.name())),
        };
        if view.device.device_type != KDL_CPU {
            return raise(util::buffer_error(), "Array holds CPU memory only");
        }
        let shape = Owned::new(PyTuple_New(view.ndim as Py_ssize_t))?;
        for (i, &n) in view.shape().iter().enumerate() {
            PyTuple_SetItem(shape.0, i as Py_ssize_t, PyLong_FromLongLong(n));
        }
        let name = Owned::new(PyUnicode_FromString(dtype.as_ptr()))?;
        let argv = [shape.0, name.0];
        let arr = Owned::new(PyObject_Vectorcall(array_type().cast(), argv.as_ptr(), 2, ptr::null_mut()))?;
        crate::providers::array::with_data(arr.0, |dst| copy_c_order(&view, dst));
        drop(del);
        Ok(arr.into_ptr())
    }
}

/// Keep a Python error (if any) as the allocator's SetError call.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn report_to(error_ctx: *mut c_void, set_error: Option<SetErrorFn>) {
    // SAFETY: GIL held; an exception is (normally) set.
    unsafe {
        let (mut tp, mut val, mut tb) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        #[allow(deprecated)]
        PyErr_Fetch(&mut tp, &mut val, &mut tb);
        let kind = if tp.is_null() {
            "RuntimeError".to_string()
        } else {
            // The name object must outlive str_of's read of it.
            let name = Owned::new(PyObject_GetAttrString(tp, c"__name__".as_ptr()));
            name.ok().and_then(|n| util::str_of(n.0)).unwrap_or_else(|| "RuntimeError".into())
        };
        PyErr_Clear();
        let msg = if val.is_null() {
            String::from("allocation failed")
        } else {
            Owned::new(PyObject_Str(val)).ok().and_then(|s| util::str_of(s.0)).unwrap_or_default()
        };
        PyErr_Clear();
        for o in [tp, val, tb] {
            if !o.is_null() {
                Py_DECREF(o);
            }
        }
        if let Some(f) = set_error {
            let k = std::ffi::CString::new(kind.replace('\0', "")).unwrap_or_default();
            let m = std::ffi::CString::new(msg.replace('\0', "")).unwrap_or_default();
            f(error_ctx, k.as_ptr(), m.as_ptr());
        }
    }
}

unsafe extern "C" fn xapi_allocator(
    prototype: *mut DLTensor,
    out: *mut *mut DLManagedTensorVersioned,
    error_ctx: *mut c_void,
    set_error: Option<SetErrorFn>,
) -> c_int {
    if !interpreter_alive() {
        return -1;
    }
    // SAFETY: the GIL is taken for the Python calls; prototype is readable.
    unsafe {
        let gil = PyGILState_Ensure();
        let r = guard(Err(()), || alloc_impl(&*prototype));
        let rc = match r {
            Ok(mt) => {
                *out = mt;
                0
            }
            Err(()) => {
                report_to(error_ctx, set_error);
                -1
            }
        };
        PyGILState_Release(gil);
        rc
    }
}

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn alloc_impl(p: &DLTensor) -> Result<*mut DLManagedTensorVersioned, ()> {
    // SAFETY: GIL held; p's shape holds ndim values.
    unsafe {
        if p.device.device_type != KDL_CPU {
            return raise(util::buffer_error(), "Array allocates CPU memory only");
        }
        let dtype = match p.dtype {
            DLDataType::F64 => c"float64",
            DLDataType::F32 => c"float32",
            DLDataType::I64 => c"int64",
            other => return raise(util::type_error(), &format!("Array cannot hold dtype {}", other.name())),
        };
        if p.ndim < 0 || p.ndim > 64 || (p.ndim > 0 && p.shape.is_null()) {
            return raise(util::value_error(), "managed_tensor_allocator: bad prototype ndim/shape");
        }
        let shape = Owned::new(PyTuple_New(p.ndim as Py_ssize_t))?;
        for i in 0..p.ndim as usize {
            PyTuple_SetItem(shape.0, i as Py_ssize_t, PyLong_FromLongLong(*p.shape.add(i)));
        }
        let name = Owned::new(PyUnicode_FromString(dtype.as_ptr()))?;
        let argv = [shape.0, name.0];
        let arr = Owned::new(PyObject_Vectorcall(array_type().cast(), argv.as_ptr(), 2, ptr::null_mut()))?;
        let req = Request { max_version: Some((MAJOR, MINOR)), dl_device: None, copy: Some(false), stream_given: false };
        export(arr.0, req).map(|(mt, _)| mt.cast())
    }
}

unsafe extern "C" fn xapi_current_work_stream(device_type: i32, _device_id: i32, out: *mut *mut c_void) -> c_int {
    // Array lives in host memory, which has no streams.
    let _ = device_type;
    // SAFETY: out is writable (the table's contract).
    unsafe {
        if !out.is_null() {
            *out = ptr::null_mut();
        }
    }
    0
}

/// `Array`'s exchange table (static, for the life of the process).
pub(crate) static EXCHANGE_API: DLPackExchangeAPI = DLPackExchangeAPI {
    header: DLPackExchangeAPIHeader { version: DLPackVersion { major: MAJOR, minor: MINOR }, prev_api: ptr::null_mut() },
    managed_tensor_allocator: Some(xapi_allocator),
    managed_tensor_from_py_object_no_sync: Some(xapi_from_py),
    managed_tensor_to_py_object_no_sync: Some(xapi_to_py),
    dltensor_from_py_object_no_sync: Some(xapi_dltensor_from_py),
    current_work_stream: Some(xapi_current_work_stream),
};

/// Set `__dlpack_c_exchange_api__` on the Array type `tp`.
///
/// # Safety
/// GIL held; `tp` is the Array type.
pub(crate) unsafe fn install(tp: *mut PyObject) -> Result<(), ()> {
    // SAFETY: the table is static and never written (the capsule's pointer
    // is *mut by API only).
    unsafe {
        let cap = Owned::new(PyCapsule_New(
            ptr::addr_of!(EXCHANGE_API).cast_mut().cast(),
            NAME_EXCHANGE_API.as_ptr(),
            None,
        ))?;
        if PyObject_SetAttrString(tp, ATTR_EXCHANGE_API.as_ptr(), cap.0) < 0 {
            return Err(());
        }
        Ok(())
    }
}

// ---- import: DLPack -> array.v1 ----------------------------------------------------

/// `view.internal[0]` holds the managed tensor; bit 0 set: legacy.
const LEGACY_TAG: usize = 1;

/// Fill an array.v1 view from a DLTensor; shape/strides (bytes) go into
/// the view's scratch, or into `heap` above 8 dimensions.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn fill_from_tensor(t: &DLTensor, flags: u64, v: &mut ArrayView, heap: &mut Vec<i64>) -> Result<(), ()> {
    // SAFETY: t is a live tensor (shape/strides hold ndim values).
    unsafe {
        if t.ndim < 0 || t.ndim as usize > crate::consumers::nd::MAX {
            return raise(util::buffer_error(), &format!("DLPack tensor with {} dimensions", t.ndim));
        }
        if t.dtype.bits % 8 != 0 || t.dtype.lanes == 0 {
            return raise(util::buffer_error(), &format!("DLPack dtype {} is not whole bytes", t.dtype.name()));
        }
        let n = t.ndim as usize;
        if n > 0 && t.shape.is_null() {
            return raise(util::buffer_error(), "DLPack tensor with ndim > 0 and no shape");
        }
        let itemsize = t.dtype.itemsize() as i64;
        let shape_at = |k: usize| *t.shape.add(k);
        // NULL strides (DLPack < 1.2 producers): C-contiguous.
        let mut c = vec![0i64; n];
        let mut s = 1i64;
        for k in (0..n).rev() {
            c[k] = s;
            s *= shape_at(k).max(1);
        }
        let stride_at = |k: usize| itemsize * if t.strides.is_null() { c[k] } else { *t.strides.add(k) };
        v.version = abi::VERSION;
        v.data = (t.data as *mut u8).wrapping_add(t.byte_offset as usize).cast();
        v.ndim = n as i32;
        v.dtype = t.dtype;
        v.reserved = 0;
        v.device = t.device;
        v.owner = ptr::null_mut();
        if n <= abi::SCRATCH / 2 {
            v.store_dims_in_scratch((0..n).map(shape_at), (0..n).map(stride_at));
        } else {
            *heap = (0..n).map(shape_at).chain((0..n).map(stride_at)).collect();
            v.shape = heap.as_mut_ptr();
            v.strides = heap.as_mut_ptr().add(n);
        }
        let align = if t.dtype.code == abi::DL_COMPLEX { itemsize / 2 } else { itemsize }.clamp(1, 8);
        let aligned = (v.data as usize as i64) % align == 0
            && v.shape().iter().zip(v.strides()).all(|(&len, &st)| len <= 1 || st % align == 0);
        v.flags = if flags & FLAG_READ_ONLY != 0 { abi::READONLY } else { 0 } | if aligned { abi::ALIGNED } else { 0 };
        v.set_contiguity();
        Ok(())
    }
}

/// A managed tensor received from a producer (owned until its deleter).
#[derive(Clone, Copy)]
enum Managed {
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
                        d(mt);
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
unsafe fn adopt(m: Managed, request: c_int, v: &mut ArrayView, who: &str) -> Result<(), ()> {
    // SAFETY: the caller owns m.
    unsafe {
        let (t, flags) = match m {
            Managed::Versioned(mt) => {
                if (*mt).version.major != MAJOR {
                    let major = (*mt).version.major;
                    m.delete();
                    return raise(
                        util::buffer_error(),
                        &format!("{who}: DLPack major version {major} is not supported (this consumer speaks {MAJOR}.x)"),
                    );
                }
                (&(*mt).dl_tensor, (*mt).flags)
            }
            Managed::Legacy(mt) => (&(*mt).dl_tensor, 0),
        };
        let mut heap = Vec::new();
        let r = fill_from_tensor(t, flags, v, &mut heap).and_then(|()| {
            abi::check_request(request, v.flags).or_else(|why| raise(util::buffer_error(), &format!("{who}: {why}")))
        });
        if r.is_err() {
            m.delete();
            return Err(());
        }
        v.internal[0] = match m {
            Managed::Versioned(mt) => mt.cast(),
            Managed::Legacy(mt) => (mt as usize | LEGACY_TAG) as *mut c_void,
        };
        v.internal[1] = if heap.is_empty() {
            ptr::null_mut()
        } else {
            let b = Box::into_raw(heap.into_boxed_slice()).cast::<i64>();
            v.shape = b;
            v.strides = b.add(v.ndim as usize);
            b.cast()
        };
        Ok(())
    }
}

fn check_view(v: &ArrayView, request: c_int) -> Result<(), ()> {
    if (v.size as usize) < core::mem::size_of::<ArrayView>() {
        return raise(util::value_error(), "array.v1 acquire: view struct too small (size field not set?)");
    }
    if request & !abi::REQ_ALL != 0 {
        return raise(util::buffer_error(), &format!("unsupported array.v1 request flags {request:#x}"));
    }
    Ok(())
}

/// acquire through the type's DLPack C exchange table.
pub(crate) unsafe extern "C" fn dl_c_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: the array.v1 contract (GIL held, obj alive, view
        // writable); the table was registered with these slots and is static.
        unsafe {
            let v = &mut *view;
            if check_view(v, request).is_err() {
                return -1;
            }
            let api = runtime::find(obj, ID_EXCHANGE_API).cast::<DLPackExchangeAPI>();
            let Some(from_py) = api.as_ref().and_then(|a| a.managed_tensor_from_py_object_no_sync) else {
                return raise(util::type_error(), "DLPack exchange table missing").unwrap_or(-1);
            };
            let mut mt: *mut DLManagedTensorVersioned = ptr::null_mut();
            if from_py(obj.cast(), &mut mt) != 0 || mt.is_null() {
                if PyErr_Occurred().is_null() {
                    let _ = raise::<()>(util::buffer_error(), "managed_tensor_from_py_object_no_sync failed without an error");
                }
                return -1;
            }
            let who = util::type_name(obj);
            match adopt(Managed::Versioned(mt), request, v, &who) {
                Ok(()) => 0,
                Err(()) => -1,
            }
        }
    })
}

/// Take the tensor out of a `__dlpack__` capsule, renaming it "used_...".
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn consume_capsule(cap: *mut PyObject, who: &str) -> Result<Managed, ()> {
    // SAFETY: GIL held; cap alive.
    unsafe {
        if PyCapsule_CheckExact(cap) == 0 {
            return raise(util::type_error(), &format!("{who}.__dlpack__() returned {}, not a capsule", util::type_name(cap)));
        }
        if PyCapsule_IsValid(cap, NAME_VERSIONED.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_VERSIONED.as_ptr()).cast::<DLManagedTensorVersioned>();
            if PyCapsule_SetName(cap, NAME_USED_VERSIONED.as_ptr()) < 0 {
                return Err(());
            }
            return Ok(Managed::Versioned(mt));
        }
        if PyCapsule_IsValid(cap, NAME_LEGACY.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_LEGACY.as_ptr()).cast::<DLManagedTensor>();
            if PyCapsule_SetName(cap, NAME_USED_LEGACY.as_ptr()) < 0 {
                return Err(());
            }
            return Ok(Managed::Legacy(mt));
        }
        let name = PyCapsule_GetName(cap);
        let name = if name.is_null() { String::from("NULL") } else { CStr::from_ptr(name).to_string_lossy().into_owned() };
        PyErr_Clear();
        if name.starts_with("used_") {
            return raise(util::value_error(), &format!("{who}: the DLPack capsule {name:?} was already consumed"));
        }
        raise(
            util::value_error(),
            &format!("{who}: a DLPack capsule must be named \"dltensor_versioned\" or \"dltensor\", not {name:?}"),
        )
    }
}

/// Interned names and the `max_version` keyword call of the Python path.
struct PyNames {
    dlpack: *mut PyObject,
    kwnames: *mut PyObject,
    version: *mut PyObject,
}

// SAFETY: immortal-by-leak objects created once with the GIL, only read
// (with the GIL) afterwards.
unsafe impl Send for PyNames {}
unsafe impl Sync for PyNames {}

static PY_NAMES: std::sync::OnceLock<PyNames> = std::sync::OnceLock::new();

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn py_names() -> Result<&'static PyNames, ()> {
    if let Some(n) = PY_NAMES.get() {
        return Ok(n);
    }
    // SAFETY: GIL held; the objects are leaked (live for the process).
    unsafe {
        let dlpack = PyUnicode_InternFromString(c"__dlpack__".as_ptr());
        let kwnames = Py_BuildValue(c"(s)".as_ptr(), c"max_version".as_ptr());
        let version = Py_BuildValue(c"(II)".as_ptr(), MAJOR, MINOR);
        if dlpack.is_null() || kwnames.is_null() || version.is_null() {
            return Err(());
        }
        Ok(PY_NAMES.get_or_init(|| PyNames { dlpack, kwnames, version }))
    }
}

/// `obj.__dlpack__(max_version=(1, 3))`, or `obj.__dlpack__()` when that
/// raises TypeError (a pre-2023 producer).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn call_dunder(obj: *mut PyObject) -> Result<Owned, ()> {
    // SAFETY: GIL held.
    unsafe {
        let names = py_names()?;
        let argv = [obj, names.version];
        let cap = PyObject_VectorcallMethod(names.dlpack, argv.as_ptr(), 1, names.kwnames);
        if !cap.is_null() {
            return Ok(Owned(cap));
        }
        if PyErr_ExceptionMatches(PyExc_TypeError) == 0 {
            return Err(());
        }
        PyErr_Clear();
        Owned::new(PyObject_VectorcallMethod(names.dlpack, argv.as_ptr(), 1, ptr::null_mut()))
    }
}

/// acquire through `obj.__dlpack__()`.
pub(crate) unsafe extern "C" fn dl_py_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: the array.v1 contract.
        unsafe {
            let v = &mut *view;
            if check_view(v, request).is_err() {
                return -1;
            }
            let who = util::type_name(obj);
            let r = call_dunder(obj).and_then(|cap| consume_capsule(cap.0, &who)).and_then(|m| adopt(m, request, v, &who));
            match r {
                Ok(()) => 0,
                Err(()) => -1,
            }
        }
    })
}

/// release of both paths: the tensor's deleter, the heap dims.
pub(crate) unsafe extern "C" fn dl_release(_obj: *mut PyObject, view: *mut ArrayView) {
    guard((), || {
        // SAFETY: paired with a successful dl_*_acquire on this view.
        unsafe {
            let v = &mut *view;
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

/// The exchange table on `tp` (a type), if it has a usable one: `Ok(None)`
/// when the attribute is absent; `Err` for a wrong capsule name.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn exchange_api_of(tp: *mut PyObject) -> Result<Option<*const DLPackExchangeAPI>, ()> {
    // SAFETY: GIL held.
    unsafe {
        let attr = PyObject_GetAttrString(tp, ATTR_EXCHANGE_API.as_ptr());
        if attr.is_null() {
            if PyErr_ExceptionMatches(PyExc_AttributeError) != 0 {
                PyErr_Clear();
                return Ok(None);
            }
            return Err(());
        }
        let attr = Owned(attr);
        if PyCapsule_CheckExact(attr.0) == 0 {
            return raise(
                util::type_error(),
                &format!("{ATTR_EXCHANGE_API:?} must be a PyCapsule named \"dlpack_exchange_api\""),
            );
        }
        let api = PyCapsule_GetPointer(attr.0, NAME_EXCHANGE_API.as_ptr()).cast::<DLPackExchangeAPI>();
        if api.is_null() {
            return Err(()); // ValueError from PyCapsule_GetPointer: wrong name
        }
        Ok(Some(api))
    }
}

/// `register_dlpack_type(tp) -> str`: "c" (exchange table) or "python".
unsafe extern "C" fn py_register_dlpack_type(_m: *mut PyObject, tp: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; runtime imported at module init.
        ret(unsafe { register_impl(tp) })
    })
}

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn register_impl(tp: *mut PyObject) -> Result<*mut PyObject, ()> {
    // SAFETY: GIL held.
    unsafe {
        if PyType_Check(tp) == 0 {
            let name = util::type_name(tp);
            return raise(util::type_error(), &format!("register_dlpack_type() argument must be a type, not {name}"));
        }
        let api = exchange_api_of(tp)?;
        let usable = api.filter(|&a| {
            let a = &*a;
            a.header.version.major == MAJOR && a.managed_tensor_from_py_object_no_sync.is_some()
        });
        let mode = if let Some(a) = usable {
            let defs = [
                SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: dl_c_acquire as *const c_void },
                SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: dl_release as *const c_void },
                SlotDef { key: KEY_EXCHANGE_API.as_ptr(), id: 0, ptr: a.cast() },
            ];
            runtime::set_slots(tp, &defs)?;
            c"c"
        } else if PyObject_HasAttrString(tp, c"__dlpack__".as_ptr()) != 0 {
            let defs = [
                SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: dl_py_acquire as *const c_void },
                SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: dl_release as *const c_void },
            ];
            runtime::set_slots(tp, &defs)?;
            c"python"
        } else if let Some(a) = api {
            let v = (*a).header.version;
            return raise(
                util::type_error(),
                &format!(
                    "register_dlpack_type(): {} has a DLPack {}.{} exchange table this consumer cannot use and no __dlpack__",
                    util::type_name(tp),
                    v.major,
                    v.minor
                ),
            );
        } else {
            return raise(
                util::type_error(),
                "register_dlpack_type(): the type has neither __dlpack_c_exchange_api__ nor __dlpack__",
            );
        };
        Owned::new(PyUnicode_FromString(mode.as_ptr())).map(Owned::into_ptr)
    }
}

// ---- bench -------------------------------------------------------------------------

/// What a consumer reads from a tensor (folded, so the loop keeps reads).
#[inline(always)]
fn fold(t: &DLTensor) -> u64 {
    // SAFETY: a filled tensor with ndim >= 1 (the bench uses 1-d arrays).
    let (s0, st0) = unsafe { (*t.shape, if t.strides.is_null() { 1 } else { *t.strides }) };
    (t.data as u64 + t.byte_offset) ^ (t.ndim as u64).rotate_left(8) ^ (s0 as u64).rotate_left(16) ^ (st0 as u64).rotate_left(24)
        ^ t.dtype.code as u64
}

/// `_bench_dlpack_cost(obj, method, iterations) -> float` (ns per call).
unsafe extern "C" fn py_bench(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; fastcall arguments.
        ret(unsafe { bench_impl(args, nargs) })
    })
}

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn bench_impl(args: *mut *mut PyObject, nargs: Py_ssize_t) -> Result<*mut PyObject, ()> {
    // SAFETY: GIL held.
    unsafe {
        if nargs != 3 {
            return raise(util::type_error(), "_bench_dlpack_cost(obj, method, iterations)");
        }
        let (obj, method, iters) = (*args, *args.add(1), *args.add(2));
        let n = PyLong_AsLongLong(iters);
        if n == -1 && !PyErr_Occurred().is_null() {
            return Err(());
        }
        let n = n.max(1) as u64;
        let method = util::str_of(method).unwrap_or_default();
        let tp = Py_TYPE(obj).cast::<PyObject>();
        let Some(api) = exchange_api_of(tp)? else {
            return raise(util::type_error(), "_bench_dlpack_cost(): the type has no __dlpack_c_exchange_api__");
        };
        let api = &*api;
        let attr = Owned::new(PyUnicode_InternFromString(ATTR_EXCHANGE_API.as_ptr()))?;
        let one = |kind: &str| -> Result<u64, ()> {
            match kind {
                // Table cached per type (as the spec allows): the fill alone.
                "fill" => {
                    let mut t = DLTensor::zeroed();
                    if (api.dltensor_from_py_object_no_sync.expect("set"))(black_box(obj).cast(), &mut t) != 0 {
                        return Err(());
                    }
                    Ok(fold(&t))
                }
                // Type attribute + capsule pointer + fill on every call.
                "fill_lookup" => {
                    let cap = Owned::new(PyObject_GetAttr(Py_TYPE(black_box(obj)).cast(), attr.0))?;
                    let a = PyCapsule_GetPointer(cap.0, NAME_EXCHANGE_API.as_ptr()).cast::<DLPackExchangeAPI>();
                    if a.is_null() {
                        return Err(());
                    }
                    let mut t = DLTensor::zeroed();
                    if ((*a).dltensor_from_py_object_no_sync.expect("set"))(obj.cast(), &mut t) != 0 {
                        return Err(());
                    }
                    Ok(fold(&t))
                }
                "managed" => {
                    let mut mt = ptr::null_mut();
                    if (api.managed_tensor_from_py_object_no_sync.expect("set"))(black_box(obj).cast(), &mut mt) != 0 {
                        return Err(());
                    }
                    let f = fold(&(*mt).dl_tensor);
                    delete_versioned(mt);
                    Ok(f)
                }
                "dunder" => {
                    let cap = call_dunder(black_box(obj))?;
                    let mt = PyCapsule_GetPointer(cap.0, NAME_VERSIONED.as_ptr()).cast::<DLManagedTensorVersioned>();
                    if mt.is_null() {
                        return Err(());
                    }
                    Ok(fold(&(*mt).dl_tensor)) // the capsule's destructor deletes
                }
                _ => raise(util::value_error(), "method must be 'fill', 'fill_lookup', 'managed' or 'dunder'"),
            }
        };
        let mut check = one(&method)?;
        let t0 = Instant::now();
        for _ in 0..n {
            check = check.wrapping_add(one(&method)?);
        }
        let ns = t0.elapsed().as_nanos() as f64 / n as f64;
        black_box(check);
        Owned::new(PyFloat_FromDouble(ns)).map(Owned::into_ptr)
    }
}

/// Constants the tests read.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn constants(m: *mut PyObject) -> Result<(), ()> {
    // SAFETY: GIL held.
    unsafe {
        for (name, v) in [
            (c"DLPACK_MAJOR", MAJOR as i64),
            (c"DLPACK_MINOR", MINOR as i64),
            (c"DLPACK_FLAG_READ_ONLY", FLAG_READ_ONLY as i64),
            (c"DLPACK_FLAG_IS_COPIED", FLAG_IS_COPIED as i64),
        ] {
            util::add(m, name, PyLong_FromLongLong(v))?;
        }
        util::add(m, c"_DLPACK_API_ADDRESS", PyLong_FromVoidPtr(ptr::addr_of!(EXCHANGE_API).cast_mut().cast()))
    }
}

/// Add `to_dlpack`, `register_dlpack_type`, `_bench_dlpack_cost` and the
/// constants to the `_arrays` module, and the exchange table to `Array`.
pub(crate) fn add_to_module(m: *mut PyObject) -> Result<(), ()> {
    let methods: &'static mut [PyMethodDef] = Box::leak(Box::new([
        crate::runtime::pyutil::py_method!(c"to_dlpack", PyCFunctionFastWithKeywords, py_to_dlpack, METH_FASTCALL | METH_KEYWORDS,
            c"to_dlpack(obj, *, stream=None, max_version=None, dl_device=None, copy=None)\n--\n\n\
              A DLPack capsule of any array.v1 provider (the __dlpack__ protocol: \"dltensor\" without max_version,\n\
              \"dltensor_versioned\" with it). The export holds a view (and so the provider's pin) until its deleter runs."),
        crate::runtime::pyutil::py_method!(c"register_dlpack_type", PyCFunction, py_register_dlpack_type, METH_O,
            c"register_dlpack_type(tp) -> str\n--\n\n\
              Make a DLPack exporter type an array.v1 provider: through its __dlpack_c_exchange_api__ table\n\
              (returns 'c') or its __dlpack__ method (returns 'python')."),
        crate::runtime::pyutil::py_method!(c"_bench_dlpack_cost", PyCFunctionFast, py_bench, METH_FASTCALL,
            c"_bench_dlpack_cost(obj, method, iterations) -> float\n--\n\nNanoseconds per DLPack call from C:\n\
              'fill', 'fill_lookup', 'managed' (export + deleter), 'dunder' (__dlpack__(max_version=(1, 3)))."),
        PyMethodDef::zeroed(),
    ]));
    // SAFETY: GIL held (module init); the table is leaked.
    unsafe {
        for def in methods.iter_mut() {
            if def.ml_name.is_null() {
                break;
            }
            let f = Owned::new(PyCFunction_NewEx(def, ptr::null_mut(), ptr::null_mut()))?;
            if PyModule_AddObjectRef(m, def.ml_name, f.0) < 0 {
                return Err(());
            }
        }
        constants(m)?;
        let tp = Owned::new(PyObject_GetAttrString(m, c"Array".as_ptr()))?;
        install(tp.0)
    }
}
