//! The exchange table of `Array` (`__dlpack_c_exchange_api__`, DLPack 1.3
//! `DLPackExchangeAPI`): C-level export without Python calls.

#[allow(unused_imports)]
use super::*;

/// The Array type, for type checks in the table's functions.
pub(super) fn array_type() -> *mut PyTypeObject {
    crate::providers::array::array_type()
}

/// Set a Python error from a table function (GIL held).
pub(super) fn table_error<T>(exc: *mut PyObject, msg: &str) -> Result<T, PyErrSet> {
    raise(exc, msg)
}

pub(super) unsafe extern "C" fn xapi_from_py(py_object: *mut c_void, out: *mut *mut DLManagedTensorVersioned) -> c_int {
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
                Err(PyErrSet) => -1,
            }
        }
    })
}

pub(super) unsafe extern "C" fn xapi_dltensor_from_py(py_object: *mut c_void, out: *mut DLTensor) -> c_int {
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

pub(super) unsafe extern "C" fn xapi_to_py(tensor: *mut DLManagedTensorVersioned, out_py_object: *mut *mut c_void) -> c_int {
    guard(-1, || {
        // SAFETY: the table's contract: GIL held; we own `tensor` (stolen)
        // and call its deleter exactly once on every path.
        unsafe {
            match to_py_impl(tensor) {
                Ok(o) => {
                    *out_py_object = o.cast();
                    0
                }
                Err(PyErrSet) => -1,
            }
        }
    })
}

/// Call a versioned tensor's deleter (if any), with no exception set
/// ([`run_deleter`]).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
/// The caller owns `mt` and gives it up (its deleter runs once).
pub(super) unsafe fn delete_versioned(mt: *mut DLManagedTensorVersioned) {
    // SAFETY: the caller owns mt.
    unsafe {
        if let Some(d) = (*mt).deleter {
            run_deleter(|| d(mt));
        }
    }
}

/// Run a producer's deleter with no exception set: ours (a `BufferError`
/// on an error path, say) is taken before and put back after, so a deleter
/// that runs Python code (a ctypes callback) neither loses it nor fails
/// with `SystemError`. An exception the deleter itself leaves behind is
/// reported as unraisable (a deleter cannot fail).
///
/// # Safety
/// The GIL is held; `call` calls one deleter on a tensor the caller owns.
pub(super) unsafe fn run_deleter(call: impl FnOnce()) {
    // SAFETY: GIL held (the caller's contract).
    unsafe {
        let pending = (!PyErr_Occurred().is_null()).then(|| crate::runtime::pyutil::PendingError::take());
        call();
        if !PyErr_Occurred().is_null() {
            PyErr_WriteUnraisable(ptr::null_mut());
        }
        if let Some(p) = pending {
            p.restore();
        }
    }
}

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
/// The caller owns `mt`; it is consumed on every path.
pub(super) unsafe fn to_py_impl(mt: *mut DLManagedTensorVersioned) -> Result<*mut PyObject, PyErrSet> {
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
    // SAFETY: a live tensor, ours until `del` runs its deleter (this
    // function's contract); `m` is not used past that.
    let m = unsafe { &*mt };
    if m.version.major != MAJOR {
        return raise(util::buffer_error(), &format!("DLPack major version {} is not supported", m.version.major));
    }
    // SAFETY: GIL held; m live.
    if let Some(o) = unsafe { own_array(m) } {
        drop(del);
        return Ok(o);
    }
    // Anything else: a new Array holding a copy.
    let mut view = ArrayView::new();
    // SAFETY: GIL held; m's tensor is live until `del` drops.
    unsafe { fill_from_tensor(&m.dl_tensor, m.flags, &mut view, &mut Vec::new())? };
    let dtype = match view.dtype {
        DLDataType::F64 => c"float64",
        DLDataType::F32 => c"float32",
        DLDataType::I64 => c"int64",
        other => return raise(util::buffer_error(), &format!("Array cannot hold dtype {}", other.name())),
    };
    if view.device.device_type != KDL_CPU {
        return raise(util::buffer_error(), "Array holds CPU memory only");
    }
    // SAFETY: GIL held; a CPU view of m's memory, live until `del` drops.
    let arr = unsafe { array_copy_of(&view, dtype)? };
    drop(del);
    Ok(arr.into_ptr())
}

/// Our own zero-copy export of an Array: the Array itself (a new
/// reference). Only our exports have this deleter (its body is unique to
/// this module, so no other function is merged with it; a miss just copies).
///
/// # Safety
/// GIL held; `m` is a live tensor.
unsafe fn own_array(m: &DLManagedTensorVersioned) -> Option<*mut PyObject> {
    if !m.deleter.is_some_and(|d| core::ptr::fn_addr_eq(d, deleter_versioned as VersionedDeleter)) {
        return None;
    }
    // SAFETY: export() made this tensor: manager_ctx is its live Export.
    let e = unsafe { &*m.manager_ctx.cast::<Export>() };
    // SAFETY: GIL held; e.obj is NULL or the reference the export holds.
    unsafe { (!e.obj.is_null() && PyObject_TypeCheck(e.obj, array_type()) != 0).then(|| Py_NewRef(e.obj)) }
}

/// A new Array of `dtype` (float64, float32 or int64) holding a C-order
/// copy of `view`.
///
/// # Safety
/// GIL held; `view` a live CPU view of that dtype.
unsafe fn array_copy_of(view: &ArrayView, dtype: &CStr) -> Result<Owned, PyErrSet> {
    // SAFETY: GIL held.
    let shape = Owned::new(unsafe { PyTuple_New(view.ndim as Py_ssize_t) })?;
    for (i, &n) in view.shape().iter().enumerate() {
        // SAFETY: GIL held; i below the new tuple's size; steals the int.
        unsafe { PyTuple_SetItem(shape.0, i as Py_ssize_t, PyLong_FromLongLong(n)) };
    }
    // SAFETY: GIL held; a C string.
    let name = Owned::new(unsafe { PyUnicode_FromString(dtype.as_ptr()) })?;
    let argv = [shape.0, name.0];
    // SAFETY: GIL held; the Array type and 2 live arguments.
    let arr = Owned::new(unsafe { PyObject_Vectorcall(array_type().cast(), argv.as_ptr(), 2, ptr::null_mut()) })?;
    // SAFETY: GIL held; a new Array of view's shape and dtype, so its data
    // holds exactly the view's bytes; the view is live (the contract).
    unsafe { crate::providers::array::with_data(arr.0, |dst| copy_c_order(view, dst)) };
    Ok(arr)
}

/// Keep a Python error (if any) as the allocator's SetError call.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn report_to(error_ctx: *mut c_void, set_error: Option<SetErrorFn>) {
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

pub(super) unsafe extern "C" fn xapi_allocator(
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
        let r = guard(Err(PyErrSet), || alloc_impl(&*prototype));
        let rc = match r {
            Ok(mt) => {
                *out = mt;
                0
            }
            Err(PyErrSet) => {
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
pub(super) unsafe fn alloc_impl(p: &DLTensor) -> Result<*mut DLManagedTensorVersioned, PyErrSet> {
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

pub(super) unsafe extern "C" fn xapi_current_work_stream(device_type: i32, _device_id: i32, out: *mut *mut c_void) -> c_int {
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
pub(crate) unsafe fn install(tp: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: the table is static and never written (the capsule's pointer
    // is *mut by API only).
    unsafe {
        let cap = Owned::new(PyCapsule_New(
            ptr::addr_of!(EXCHANGE_API).cast_mut().cast(),
            NAME_EXCHANGE_API.as_ptr(),
            None,
        ))?;
        if PyObject_SetAttrString(tp, ATTR_EXCHANGE_API.as_ptr(), cap.0) < 0 {
            return Err(PyErrSet);
        }
        Ok(())
    }
}
